"""The console's services page: a tenant's services and notebooks (an admin's: everyone's), their
replicas and latest decisions, and an Open button that sends the browser to the gateway with a
one-time link (``services_api``'s, the same as ``wanka notebook open``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from wanka.models.service import SERVICE_NAME
from wanka.server import services
from wanka.server.console import session as console_session
from wanka.server.console.forms import form_fields
from wanka.server.services_api import link_url, out

if TYPE_CHECKING:
    from wanka.server.app import AppState

NAME_OR_TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def add(pages: APIRouter, state: AppState, db: Callable, signed: Callable, page: Callable) -> None:
    """Add ``/services`` and its Open buttons to ``pages``."""

    @pages.get("/services")
    def services_page(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        rows = services.listing(session, who, None)
        reps = services.replicas(session, [r[0].id for r in rows])
        shown = [out(state, session, row, tenant, reps[row.id], detail=True) for row, tenant in rows]
        response = page("services.html", who, token, services=shown, gateway=state.gateway_url)
        if state.gateway_url:  # Open posts here, then goes on to the gateway's origin
            from wanka.server.console.pages import HEADERS  # (pages imports this module)

            policy = HEADERS["Content-Security-Policy"]
            response.headers["Content-Security-Policy"] = policy.replace(
                "form-action 'self'", f"form-action 'self' {state.gateway_url}"
            )
        return response

    @pages.post("/services/{tenant}/{name}/open")
    async def open_service(tenant: str, name: str, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        if not re.match(SERVICE_NAME, name) or not re.match(NAME_OR_TENANT, tenant):
            raise HTTPException(404, f"no service {name}")
        row, tenant_name = services.visible(session, who, name, tenant if who.is_admin else None)
        if tenant_name != tenant:
            raise HTTPException(404, f"no service {name}")
        return RedirectResponse(link_url(state, who, row, tenant_name), status_code=303)
