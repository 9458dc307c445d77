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
SESSION_PREFIX = "wks_"  # a console session's token: good for the console only, never for /v1


def new_token(prefix: str = PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


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


def issue(
    db: Session,
    user: User,
    label: str = "",
    expires_in_s: float | None = None,
    parent: Token | None = None,
) -> tuple[Token, str]:
    """A new token for ``user``: the row and the token itself, which is never stored. With
    ``expires_in_s`` it stops working that many seconds from now. With ``parent``, a console
    session's (prefix :data:`SESSION_PREFIX`) signed in with that API token."""
    token = new_token(SESSION_PREFIX if parent is not None else PREFIX)
    now = time.time()
    row = Token(
        user_id=user.id,
        digest=digest(token),
        prefix=token[:10],
        label=label,
        created_at=now,
        expires_at=None if expires_in_s is None else now + expires_in_s,
        parent_id=parent.id if parent is not None else None,
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


def authenticate(db: Session, token: str, console: bool = False) -> Principal | None:
    """The principal of a live token: not revoked, not expired, its user and tenant not disabled.
    Anything else gives None (checked on every request, so a revocation takes effect at once).
    An API token is good for the API only, a console session's (``console``) for the console
    only: a browser sends its cookie to every port of the console's host, and whoever catches it
    there must not get an API token out of it."""
    if token.startswith(SESSION_PREFIX) != console:
        return None
    row = db.connection().execute(LOOKUP, {"digest": digest(token)}).first()
    if row is None or row.revoked_at is not None or row.disabled_at is not None:
        return None
    if row.tenant_disabled_at is not None or (row.expires_at is not None and row.expires_at <= time.time()):
        return None
    return Principal(row.id, row.name, row.role, row.tenant_id, row.tenant)


def refusal(db: Session, token: str) -> str:
    """Why ``token`` does not let its holder in (asked only after authenticate refused it; only the
    holder of a real token learns more than that it is unknown)."""
    if token.startswith(SESSION_PREFIX):
        return "a console session is not an API token; use an API token (wanka tokens create)"
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


ADMIN_TOKEN_MARGIN_S = 86400.0  # an admin token expiring sooner does not count as the one kept


def live_admin_tokens(db: Session, now: float | None = None) -> int:
    """API tokens that let an admin in now and for at least another day: the operator must always
    keep one (a console session, which ends within hours and opens no /v1, does not count, nor does
    a token about to expire: disabling the last real one behind it would lock the operator out
    moments later)."""
    now = time.time() if now is None else now
    return db.scalar(
        select(func.count(Token.id))
        .join(User, Token.user_id == User.id)
        .where(
            Token.parent_id.is_(None),
            User.role == "admin",
            User.disabled_at.is_(None),
            Token.revoked_at.is_(None),
            or_(Token.expires_at.is_(None), Token.expires_at > now + ADMIN_TOKEN_MARGIN_S),
        )
    )
