"""API tokens: 256-bit random, shown once, stored as SHA-256; who a request acts for."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.server.tables import Token, User

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

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue(db: Session, user: User, label: str = "") -> tuple[Token, str]:
    """A new token for ``user``: the row and the token itself, which is never stored."""
    token = new_token()
    row = Token(user_id=user.id, digest=digest(token), prefix=token[:10], label=label, created_at=time.time())
    db.add(row)
    db.flush()
    return row, token


def authenticate(db: Session, token: str) -> Principal | None:
    """The principal of a live token; revoked or unknown tokens give None (checked on every request,
    so a revocation takes effect at once)."""
    row = db.execute(
        select(Token, User).join(User, Token.user_id == User.id).where(Token.digest == digest(token))
    ).first()
    if row is None or row.Token.revoked_at is not None:
        return None
    return Principal(row.User.id, row.User.name, row.User.role, row.User.tenant_id)
