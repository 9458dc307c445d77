"""Tenants, users and tokens over the API: who may act, for which tenant, until when.

Admins create tenants and users and may disable either (a disabled account's tokens stop at once; a
disabled tenant's jobs are cancelled and its history kept for billing). Everyone manages their own
tokens. The last working admin token can never be revoked, nor its admin disabled: the operator is
never locked out (and ``wanka db admin-token`` issues one with local access to the database).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.core import TERMINAL_STATES
from wanka.models.bounds import MAX_SECONDS, LabelText, NameText
from wanka.models.quota import ROOT_QUEUE, sub_queue_names
from wanka.server import auth, tables
from wanka.server.auth import Principal
from wanka.server.job_service import request_cancel
from wanka.server.params import ID, NAME


class TenantIn(BaseModel):
    name: str = NAME


class TenantOut(BaseModel):
    id: int
    name: str
    disabled: bool = False


class UserIn(BaseModel):
    name: str = NAME
    role: str = Field(pattern=r"^(admin|member)$", description="admin or member")
    tenant: NameText | None = Field(default=None, description="the tenant of a member")


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    tenant: str | None
    disabled: bool = False


class TokenIn(BaseModel):
    label: LabelText = Field(default="", max_length=200)
    expires_in_s: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="seconds until it stops working; null: never"
    )


class TokenOut(BaseModel):
    id: int
    user: str
    prefix: str
    label: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None


class NewToken(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


def router(
    db: Callable, principal: Callable, admin: Callable, changed_tree: Callable[[], None], notify: Callable
) -> APIRouter:
    """``changed_tree``: a new tenant gets a default queue; ``notify(kind, job_id)``: the control loop."""
    api = APIRouter()

    @api.get("/v1/whoami", response_model=UserOut)
    def whoami(who: Principal = Depends(principal), session: Session = Depends(db)) -> UserOut:
        return _user_out(session, session.get(tables.User, who.user_id))

    # --- tenants, users, tokens ---------------------------------------------------------------

    @api.post("/v1/tenants", response_model=TenantOut, status_code=201)
    def post_tenant(body: TenantIn, who: Principal = Depends(admin), session: Session = Depends(db)):
        return create_tenant(session, who, body, changed_tree)

    @api.get("/v1/tenants", response_model=list[TenantOut])
    def list_tenants(_: Principal = Depends(admin), session: Session = Depends(db)):
        return [_tenant_out(t) for t in session.scalars(select(tables.Tenant).order_by("id"))]

    @api.post("/v1/tenants/{name}/disable", response_model=TenantOut)
    def disable_tenant(name: str, who: Principal = Depends(admin), session: Session = Depends(db)):
        """Its members' tokens stop working and its jobs are cancelled; its history and bills stay."""
        return set_tenant_disabled(session, who, name, True, notify)

    @api.post("/v1/tenants/{name}/enable", response_model=TenantOut)
    def enable_tenant(name: str, who: Principal = Depends(admin), session: Session = Depends(db)):
        return set_tenant_disabled(session, who, name, False, notify)

    @api.post("/v1/users/{name}/disable", response_model=UserOut)
    def disable_user(name: str, _: Principal = Depends(admin), session: Session = Depends(db)):
        """Its tokens stop working at once (its jobs run on: they are its tenant's)."""
        return set_user_disabled(session, name, True)

    @api.get("/v1/users/{name}", response_model=UserOut)
    def get_user(name: str, _: Principal = Depends(admin), session: Session = Depends(db)):
        return _user_out(session, _named(session, tables.User, name, "user"))

    @api.post("/v1/users/{name}/enable", response_model=UserOut)
    def enable_user(name: str, _: Principal = Depends(admin), session: Session = Depends(db)):
        return set_user_disabled(session, name, False)

    @api.post("/v1/users", response_model=UserOut, status_code=201)
    def post_user(body: UserIn, _: Principal = Depends(admin), session: Session = Depends(db)):
        return create_user(session, body)

    @api.post("/v1/users/{name}/tokens", response_model=NewToken, status_code=201)
    def create_token(
        name: str, body: TokenIn, who: Principal = Depends(principal), session: Session = Depends(db)
    ):
        return issue_token(session, who, name, body)

    @api.get("/v1/tokens", response_model=list[TokenOut])
    def list_tokens(who: Principal = Depends(principal), session: Session = Depends(db)):
        q = select(tables.Token, tables.User.name).join(tables.User).order_by(tables.Token.id)
        if not who.is_admin:
            q = q.where(tables.Token.user_id == who.user_id)
        return [_token_out(t, n) for t, n in session.execute(q)]

    @api.delete("/v1/tokens/{token_id}", response_model=TokenOut)
    def revoke_token(token_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        return revoke(session, who, token_id)

    return api


# --- service functions: the API routes and the console's forms share them ----------------------


def create_tenant(
    session: Session, who: Principal, body: TenantIn, changed_tree: Callable[[], None]
) -> TenantOut:
    """A new tenant (409 when the name is taken; 422 when a queue of the tree has it). With a quota
    document in force, its organisation joins it (no quota of its own) as a new version."""
    if session.scalar(select(tables.Tenant).where(tables.Tenant.name == body.name)):
        raise HTTPException(409, f"tenant {body.name!r} exists")
    doc = session.scalar(select(tables.QuotaDocument).order_by(tables.QuotaDocument.id.desc()).limit(1))
    # every tenant has a top-level organisation named like it, and queue names are unique: a
    # tenant named like the root or like another organisation's queue would break the tree in
    # force, or be handed that queue (hostile review)
    if body.name == ROOT_QUEUE or (doc is not None and body.name in sub_queue_names(doc.body)):
        raise HTTPException(
            422,
            [
                {
                    "field": "name",
                    "message": f"{body.name!r} is the root of the quota tree or a queue of an "
                    "organisation; a tenant needs a name no queue has",
                }
            ],
        )
    t = tables.Tenant(name=body.name, created_at=time.time())
    session.add(t)
    # with a quota document in force, the new tenant's organisation joins it (no quota of its
    # own: it borrows what is free) as a new version of the document
    if doc is not None and all(o.get("name") != body.name for o in doc.body.get("organisations", [])):
        grown = {**doc.body, "organisations": [*doc.body.get("organisations", []), {"name": body.name}]}
        session.add(tables.QuotaDocument(body=grown, applied_at=time.time(), applied_by=who.user_id))
    session.commit()
    changed_tree()  # before any quota document, each tenant has a default queue
    return _tenant_out(t)


def set_tenant_disabled(
    session: Session, who: Principal, name: str, disabled: bool, notify: Callable
) -> TenantOut:
    """Disable (its members' tokens stop working, its jobs are cancelled; history and bills stay)
    or enable a tenant; 404 for no such tenant."""
    t = _named(session, tables.Tenant, name, "tenant")
    if not disabled:
        t.disabled_at = None
        session.commit()
    elif t.disabled_at is None:
        t.disabled_at = time.time()
        jobs = session.scalars(
            select(tables.Job.id).where(
                tables.Job.tenant_id == t.id,
                tables.Job.state.not_in([s.value for s in TERMINAL_STATES]),
            )
        ).all()
        for job_id in jobs:
            request_cancel(session, job_id, f"cancelled: tenant {name} disabled by {who.name}")
        session.commit()
        for job_id in jobs:
            notify("cancelled", job_id)
    return _tenant_out(t)


def set_user_disabled(session: Session, name: str, disabled: bool) -> UserOut:
    """Disable (its tokens stop working at once; its jobs run on: they are its tenant's) or enable
    a user; 404 for no such user, 409 for the holder of the last working admin token."""
    u = _named(session, tables.User, name, "user")
    if not disabled:
        u.disabled_at = None
        session.commit()
    elif u.disabled_at is None:
        u.disabled_at = time.time()
        session.flush()
        if u.role == "admin" and not auth.live_admin_tokens(session):
            session.rollback()
            raise HTTPException(409, f"{name} holds the last working admin token; keep one admin")
        session.commit()
    return _user_out(session, u)


def create_user(session: Session, body: UserIn) -> UserOut:
    """A new user: a member of a tenant, or an admin of none (422 naming ``tenant`` otherwise; 409
    when the name is taken)."""
    tenant_id = None
    if body.role == "member":
        if not body.tenant:
            raise HTTPException(422, "tenant: a member belongs to a tenant; give its name")
        tenant = session.scalar(select(tables.Tenant).where(tables.Tenant.name == body.tenant))
        if tenant is None:
            raise HTTPException(422, f"tenant: no tenant {body.tenant!r}")
        tenant_id = tenant.id
    elif body.tenant:
        raise HTTPException(422, "tenant: an admin belongs to no tenant; leave it out")
    if session.scalar(select(tables.User).where(tables.User.name == body.name)):
        raise HTTPException(409, f"user {body.name!r} exists")
    u = tables.User(name=body.name, role=body.role, tenant_id=tenant_id, created_at=time.time())
    session.add(u)
    session.commit()
    return _user_out(session, u)


def issue_token(session: Session, who: Principal, name: str, body: TokenIn) -> NewToken:
    """A new API token of user ``name`` (an admin: anyone's; a member: its own; 404 otherwise),
    shown once: only its hash is stored."""
    user = session.scalar(select(tables.User).where(tables.User.name == name))
    if user is None or (not who.is_admin and user.id != who.user_id):
        raise HTTPException(404, f"no user {name!r}")
    row, token = auth.issue(session, user, body.label, body.expires_in_s)
    session.commit()
    return NewToken(**_token_out(row, user.name).model_dump(), token=token)


def revoke(session: Session, who: Principal, token_id: int) -> TokenOut:
    """Revoke token ``token_id`` (a member: only its own). 404 for one it may not see; 409 for the
    operator's last working admin token."""
    row = session.get(tables.Token, token_id)
    if row is None or (not who.is_admin and row.user_id != who.user_id):
        raise HTTPException(404, f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = time.time()
        session.flush()
        if not auth.live_admin_tokens(session):
            session.rollback()
            raise HTTPException(
                409,
                f"token {token_id} is the last working admin token; create another first "
                "(or, with local access to the database, `wanka db admin-token`)",
            )
        session.commit()
    return _token_out(row, session.get(tables.User, row.user_id).name)


def _named(session: Session, table, name: str, what: str):
    row = session.scalar(select(table).where(table.name == name))
    if row is None:
        raise HTTPException(404, f"no {what} {name!r}")
    return row


def _tenant_out(t: tables.Tenant) -> TenantOut:
    return TenantOut(id=t.id, name=t.name, disabled=t.disabled_at is not None)


def _user_out(session: Session, u: tables.User) -> UserOut:
    tenant = session.get(tables.Tenant, u.tenant_id) if u.tenant_id else None
    return UserOut(
        id=u.id,
        name=u.name,
        role=u.role,
        tenant=tenant.name if tenant else None,
        disabled=u.disabled_at is not None,
    )


def _token_out(t: tables.Token, user: str) -> TokenOut:
    return TokenOut(
        id=t.id,
        user=user,
        prefix=t.prefix,
        label=t.label,
        created_at=t.created_at,
        revoked_at=t.revoked_at,
        expires_at=t.expires_at,
    )
