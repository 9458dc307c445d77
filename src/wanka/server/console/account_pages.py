"""The console's accounts page: tenants, users and tokens (admins; a member sees its own tokens),
the price table in force and every one applied before. Revoking a token goes through
``accounts_api.revoke``, with the API's rules (a member only its own; never the last admin token)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.server import tables
from wanka.server.accounts_api import revoke
from wanka.server.console import session as console_session
from wanka.server.console.forms import form_fields
from wanka.server.usage_api import current_prices

MAX_ROWS = 500  # of each list


def add(pages: APIRouter, db: Callable, signed: Callable, page: Callable) -> None:
    """Add ``/accounts`` and token revocation to ``pages``."""

    @pages.get("/accounts")
    def accounts(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        tokens = select(tables.Token, tables.User.name).join(
            tables.User, tables.User.id == tables.Token.user_id
        )
        if not who.is_admin:
            tokens = tokens.where(tables.Token.user_id == who.user_id)
        context = {
            "tokens": session.execute(tokens.order_by(tables.Token.id.desc()).limit(MAX_ROWS)).all(),
            "prices": current_prices(session),
            "price_history": session.execute(
                select(tables.PriceDocument, tables.User.name)
                .join(tables.User, tables.User.id == tables.PriceDocument.applied_by)
                .order_by(tables.PriceDocument.id.desc())
                .limit(50)
            ).all(),
            "tenants": [],
            "users": [],
        }
        if who.is_admin:
            members = (
                select(tables.User.tenant_id, func.count())
                .where(tables.User.tenant_id.is_not(None))
                .group_by(tables.User.tenant_id)
            )
            counts = dict(session.execute(members).all())
            rows = session.scalars(select(tables.Tenant).order_by(tables.Tenant.id).limit(MAX_ROWS))
            context["tenants"] = [(t, counts.get(t.id, 0)) for t in rows]
            context["users"] = session.execute(
                select(tables.User, tables.Tenant.name)
                .outerjoin(tables.Tenant, tables.Tenant.id == tables.User.tenant_id)
                .order_by(tables.User.id)
                .limit(MAX_ROWS)
            ).all()
        return page("accounts.html", who, token, session_token=console_session.digest_of(token), **context)

    @pages.post("/tokens/{token_id}/revoke")
    async def revoke_token(token_id: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        if not 1 <= token_id <= 2**63 - 1:
            raise HTTPException(404, f"no token {token_id}")
        revoke(session, who, token_id)
        return RedirectResponse("/accounts", status_code=303)
