"""API tokens: 256-bit random, shown once, stored as SHA-256; who a request acts for."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from wanka.server.tables import Tenant, Token, User

PREFIX = "wk_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    user_id: int
    name: str
    role: str  # admin | member
    tenant_id: int | None
    tenant_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue(db: Session, user: User, label: str = "", expires_in_s: float | None = None) -> tuple[Token, str]:
    """A new token for ``user``: the row and the token itself, which is never stored. With
    ``expires_in_s`` it stops working that many seconds from now."""
    token = new_token()
    now = time.time()
    row = Token(
        user_id=user.id,
        digest=digest(token),
        prefix=token[:10],
        label=label,
        created_at=now,
        expires_at=None if expires_in_s is None else now + expires_in_s,
    )
    db.add(row)
    db.flush()
    return row, token


# built once: this runs on every request (columns on the connection, no ORM, no statement rebuild)
LOOKUP = (
    select(
        User.id,
        User.name,
        User.role,
        User.tenant_id,
        Tenant.name.label("tenant"),
        Token.revoked_at,
        Token.expires_at,
        User.disabled_at,
        Tenant.disabled_at.label("tenant_disabled_at"),
    )
    .join(User, Token.user_id == User.id)
    .outerjoin(Tenant, User.tenant_id == Tenant.id)
    .where(Token.digest == bindparam("digest"))
)


def authenticate(db: Session, token: str) -> Principal | None:
    """The principal of a live token: not revoked, not expired, its user and tenant not disabled.
    Anything else gives None (checked on every request, so a revocation takes effect at once)."""
    row = db.connection().execute(LOOKUP, {"digest": digest(token)}).first()
    if row is None or row.revoked_at is not None or row.disabled_at is not None:
        return None
    if row.tenant_disabled_at is not None or (row.expires_at is not None and row.expires_at <= time.time()):
        return None
    return Principal(row.id, row.name, row.role, row.tenant_id, row.tenant)


def refusal(db: Session, token: str) -> str:
    """Why ``token`` does not let its holder in (asked only after authenticate refused it; only the
    holder of a real token learns more than that it is unknown)."""
    row = db.connection().execute(LOOKUP, {"digest": digest(token)}).first()
    if row is None or row.revoked_at is not None:
        return "missing, unknown or revoked token"
    if row.expires_at is not None and row.expires_at <= time.time():
        return "this token has expired; ask for a new one"
    if row.disabled_at is not None:
        return f"user {row.name} is disabled"
    if row.tenant_disabled_at is not None:
        return f"tenant {row.tenant} is disabled"
    return "missing, unknown or revoked token"


def live_admin_tokens(db: Session, now: float | None = None) -> int:
    """Tokens that would let an admin in now: the operator must always keep one."""
    now = time.time() if now is None else now
    return db.scalar(
        select(func.count(Token.id))
        .join(User, Token.user_id == User.id)
        .where(
            User.role == "admin",
            User.disabled_at.is_(None),
            Token.revoked_at.is_(None),
            or_(Token.expires_at.is_(None), Token.expires_at > now),
        )
    )
