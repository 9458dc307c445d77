"""The console's accounts page: tenants, users and tokens (admins; a member sees its own tokens),
the price table in force and every one applied before. Its forms (create or disable a tenant or a
user, issue or revoke a token, apply prices) go through the service functions of ``accounts_api``
and ``usage_api`` with the API's own rules and bounds: a member issues and revokes only its own
tokens, nobody disables or revokes the last working admin token, a new token is shown once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.models.bounds import MAX_SECONDS
from wanka.models.errors import describe
from wanka.server import auth, tables
from wanka.server.accounts_api import (
    TenantIn,
    TokenIn,
    UserIn,
    create_tenant,
    create_user,
    issue_token,
    revoke,
    set_tenant_disabled,
    set_user_disabled,
)
from wanka.server.console import session as console_session
from wanka.server.console.forms import admin_form, form_fields, problems_of
from wanka.server.console.session import MAX_TOKEN_CHARS
from wanka.server.usage_api import PriceTable, apply_prices, current_prices

if TYPE_CHECKING:
    from wanka.server.app import AppState

MAX_ROWS = 500  # of each list
DAY = 86400.0
MAX_PRICE_LINES = 256  # as PriceTable takes


class FormProblem(Exception):
    def __init__(self, problems: list[tuple[str, str]], status: int = 422):
        super().__init__(problems)
        self.problems, self.status = problems, status


def _model(model: type[BaseModel], data: dict):
    """``data`` as ``model`` checks it; FormProblem naming each field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FormProblem(describe(list(exc.errors()), model=model)) from None


def _prices(fields: dict) -> PriceTable:
    """The price form (currency; one "model price" per line) as a price table in force from now."""
    card_hour: dict[str, str] = {}
    lines = [ln.strip() for ln in fields.get("card_hour", "").splitlines() if ln.strip()]
    if len(lines) > MAX_PRICE_LINES:
        raise FormProblem([("card_hour", f"at most {MAX_PRICE_LINES} models")])
    for n, line in enumerate(lines, 1):
        model, _, price = line.replace("=", " ").replace(":", " ").rpartition(" ")
        if not model.strip():
            raise FormProblem([("card_hour", f"line {n}: 'MODEL PRICE', e.g. ascend-910b2 12.5")])
        card_hour[model.strip()] = price
    return _model(PriceTable, {"currency": fields.get("currency", "").strip(), "card_hour": card_hour})


def _expiry(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    most = int(MAX_SECONDS // DAY)  # the API's bound, said in the form's unit
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not 0 < days <= most:  # NaN too
        problem = f"a number of days above 0, at most {most:,}, or empty for never; got {text[:20]!r}"
        raise FormProblem([("expires_in_days", problem)])
    return days * DAY


def add(pages: APIRouter, state: AppState, db: Callable, signed: Callable, page: Callable) -> None:
    """Add ``/accounts``, its forms and token revocation to ``pages``."""

    def accounts_page(session: Session, who, token: str, status: int = 200, **shown):
        shown.setdefault("problems", [])
        shown.setdefault("new_token", None)
        shown.setdefault("fields", {})
        shown.setdefault("failed", "")  # the form whose problems are shown, as typed
        return page("accounts.html", who, token, status, **accounts_context(session, who, token), **shown)

    @pages.get("/accounts")
    def accounts(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        return accounts_page(session, who, token)

    def accounts_context(session: Session, who, token: str) -> dict:
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
        return {"session_token": console_session.digest_of(token), **context}

    async def act(request: Request, session: Session, action: Callable, form: str, admin_only: bool = True):
        """Run a form's ``action(who, fields)``; back to the page (or, when it returns a dict, the
        page with that shown once), or the page again with the problems (nothing stored) and the
        form as typed."""
        if admin_only:
            who, token, fields = await admin_form(request, session, signed)
        else:
            who, token = signed(request, session)
            fields = await form_fields(request)
            console_session.check_form(request, token, fields.get("csrf", ""))
        try:
            result = action(who, fields)
        except (FormProblem, HTTPException) as exc:
            session.rollback()
            if isinstance(exc, FormProblem):
                problems, status = exc.problems, exc.status
            else:
                problems, status = problems_of(exc.detail), exc.status_code
            typed = {k: v for k, v in fields.items() if k not in ("csrf", "confirm_token")}
            return accounts_page(session, who, token, status, problems=problems, fields=typed, failed=form)
        if isinstance(result, dict):  # something to show once (a new token)
            return accounts_page(session, who, token, 201, **result)
        return RedirectResponse("/accounts", status_code=303)

    @pages.post("/accounts/tenants")
    async def new_tenant(request: Request, session: Session = Depends(db)):
        def action(who, fields):
            body = _model(TenantIn, {"name": fields.get("name", "").strip()})
            create_tenant(session, who, body, state.tree_changed)

        return await act(request, session, action, "tenant")

    @pages.post("/accounts/tenants/{name}/{change}")
    async def tenant_state(name: str, change: str, request: Request, session: Session = Depends(db)):
        if change not in ("disable", "enable"):
            raise HTTPException(404, f"no action {change[:40]!r}; disable or enable")
        return await act(
            request,
            session,
            lambda who, _: set_tenant_disabled(session, who, name, change == "disable", state.loop.notify),
            "tenants",
        )

    @pages.post("/accounts/users")
    async def new_user(request: Request, session: Session = Depends(db)):
        def action(_, fields):
            data = {k: fields.get(k, "").strip() for k in ("name", "role", "tenant")}
            create_user(session, _model(UserIn, {**data, "tenant": data["tenant"] or None}))

        return await act(request, session, action, "user")

    @pages.post("/accounts/users/{name}/{change}")
    async def user_state(name: str, change: str, request: Request, session: Session = Depends(db)):
        if change not in ("disable", "enable"):
            raise HTTPException(404, f"no action {change[:40]!r}; disable or enable")
        return await act(
            request, session, lambda _, __: set_user_disabled(session, name, change == "disable"), "users"
        )

    @pages.post("/accounts/tokens")
    async def new_token(request: Request, session: Session = Depends(db)):
        """A token for oneself (a member) or any user (an admin), shown once on the page it returns."""

        def action(who, fields):
            # a session cannot mint an API token by itself: its cookie reaches every port of the
            # console's host, and whoever caught it would keep the token after the session ends
            # (hostile review). An API token of the same user, typed in, vouches; it is not kept.
            confirmed = auth.authenticate(session, fields.get("confirm_token", "").strip()[:MAX_TOKEN_CHARS])
            if confirmed is None or confirmed.user_id != who.user_id:
                raise FormProblem(
                    [
                        (
                            "confirm_token",
                            "type an API token of yours (wk_…): a console session alone cannot make one",
                        )
                    ],
                    403,
                )
            user = fields.get("user", "").strip() or who.name
            body = _model(
                TokenIn,
                {
                    "label": fields.get("label", ""),
                    "expires_in_s": _expiry(fields.get("expires_in_days", "")),
                },
            )
            return {"new_token": issue_token(session, who, user, body)}

        return await act(request, session, action, "token", admin_only=False)

    @pages.post("/accounts/prices")
    async def new_prices(request: Request, session: Session = Depends(db)):
        return await act(
            request, session, lambda who, fields: apply_prices(session, who, _prices(fields)), "prices"
        )

    @pages.post("/tokens/{token_id}/revoke")
    async def revoke_token(token_id: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        if not 1 <= token_id <= 2**63 - 1:
            raise HTTPException(404, f"no token {token_id}")
        revoke(session, who, token_id)
        return RedirectResponse("/accounts", status_code=303)
