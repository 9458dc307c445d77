"""Console sign-in: an API token in, a session cookie out; CSRF tokens for every form.

Signing in with an API token issues a **session token** for the same user (prefix ``wks_``, label
``console``), stored hashed like any token, and sets it as the ``wanka_session`` cookie: HttpOnly
(no script reads it), SameSite=Strict (no other site's page sends it), path ``/``. It opens the
console only, never ``/v1`` (``auth.authenticate``), lives ``SESSION_S`` at most and never past the
API token it was signed in with, and ends when that token is revoked or expires, when its user or
tenant is disabled, or at sign-out (revoked: a copied cookie dies with the session). The token
typed in is never kept.

A browser sends the cookie to every port of the console's host: serve the console on a host name
of its own, where no tenant's process listens (docs/console.md).

Every form carries ``csrf``, the SHA-256 of a fixed label and the session's token: a page of
another origin can neither read the cookie nor compute it. A form whose ``Origin`` header names
another origin is refused as well (sign-in included: no login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.server import auth, tables
from wanka.server.auth import Principal

COOKIE = "wanka_session"
SESSION_S = 12 * 3600.0  # a working day; then sign in again
MAX_TOKEN_CHARS = 200  # far above a token's 46 characters


def sign_in(db: Session, token: str) -> tuple[Principal, str] | None:
    """The principal of the API token ``token`` and a new session token for the same user, or
    None when ``token`` is not a live token (nothing is stored then)."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    who = auth.authenticate(db, token)
    if who is None:
        return None
    parent = db.scalar(select(tables.Token).where(tables.Token.digest == auth.digest(token)))
    user = db.get(tables.User, who.user_id)
    lifetime = SESSION_S
    if parent.expires_at is not None:
        lifetime = min(lifetime, parent.expires_at - time.time())
    _, session_token = auth.issue(db, user, "console", lifetime, parent=parent)
    db.commit()
    return who, session_token


def signed_in(db: Session, request: Request) -> tuple[Principal, str] | None:
    """The principal and session token of the request's cookie, while that token lives."""
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    who = auth.authenticate(db, token, console=True)
    if who is None:
        return None
    session_row = db.scalar(select(tables.Token).where(tables.Token.digest == auth.digest(token)))
    parent = db.get(tables.Token, session_row.parent_id) if session_row.parent_id else None
    now = time.time()
    if parent is None or parent.revoked_at is not None or (parent.expires_at or now + 1) <= now:
        return None  # the API token it was signed in with is gone: so is the session
    return who, token


def sign_out(db: Session, token: str) -> None:
    """Revoke the session's token (a console session's only: never an API token)."""
    row = db.scalar(select(tables.Token).where(tables.Token.digest == auth.digest(token)))
    if row is not None and row.parent_id is not None and row.revoked_at is None:
        row.revoked_at = time.time()
        db.commit()


def digest_of(session_token: str) -> str:
    """The stored digest of the session's token (to mark it in a list of tokens)."""
    return auth.digest(session_token)


def csrf_token(session_token: str) -> str:
    return hashlib.sha256(b"wanka-console-csrf\0" + session_token.encode()).hexdigest()


def same_origin(request: Request) -> bool:
    """No ``Origin`` (not a browser's cross-site form), or this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def check_form(request: Request, session_token: str, sent: str) -> None:
    """403 unless the form came from this origin with this session's CSRF token."""
    if not same_origin(request):
        raise HTTPException(403, "csrf: the form came from another origin")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        raise HTTPException(403, "csrf: missing or wrong form token; reload the page and try again")
