"""The REST API (FastAPI), composed of thin routers: they authenticate, check the tenant, and call
the database; scheduling stays in the core (the control loop)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wanka.core import Cluster
from wanka.models.errors import describe, inner_model
from wanka.server import (
    accounts_api,
    acct_api,
    attach_api,
    auth,
    cluster_api,
    console,
    jobs_api,
    quota_api,
    services_api,
    usage_api,
)
from wanka.server.auth import Principal
from wanka.server.console.pages import SignedOut, signed_out
from wanka.server.gateway import listener
from wanka.server.gateway.board import Board
from wanka.server.gateway.proxy import Gateway
from wanka.server.limits import Limits, RequestGuard
from wanka.server.trees import TreeCache
from wanka.server.whatif import WhatIfRuns

if TYPE_CHECKING:
    from wanka.server.loop import ControlLoop


@dataclass
class AppState:
    sessions: sessionmaker
    cluster: Cluster
    loop: ControlLoop
    trees: TreeCache
    limits: Limits = field(default_factory=Limits)
    whatifs: WhatIfRuns | None = None  # the console's twin reports (None: this app keeps none)
    board: Board | None = None  # services' replicas and their readiness (the gateway's)
    gateway: Gateway | None = None
    gateway_socket: socket.socket | None = None  # where the gateway listens (None: no gateway)
    gateway_url: str = ""  # http://host:port of the gateway, as services' URLs show it
    max_connections: int = 1024

    def tree_changed(self) -> None:
        """A new quota tree is in force: drop the cached one and wake the control loop."""
        self.trees.invalidate()
        self.loop.notify("tree", 0)


def create_app(state: AppState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state.loop.start()
        listening = None
        if state.gateway is not None and state.gateway_socket is not None:
            listening = await listener.start(state.gateway, state.gateway_socket, state.max_connections)
        try:
            yield
        finally:
            if listening is not None:
                await listener.stop(listening, state.gateway_socket)
            state.loop.stop()
            if state.whatifs is not None:
                state.whatifs.stop()

    # the schema at /openapi.json; no /docs or /redoc: FastAPI's load scripts from a CDN, on the
    # console's origin, where a script acts as whoever is signed in (hostile review)
    app = FastAPI(
        title="wanka",
        version="0.1.0",
        description="The wanka control plane.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.wanka = state
    app.add_middleware(RequestGuard, max_body_bytes=state.limits.max_body_bytes)
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Every problem with the field it concerns and what would be accepted (an unknown field
        of the body: the fields accepted there)."""
        body = getattr(request.scope.get("route"), "body_field", None)
        model = inner_model(getattr(getattr(body, "field_info", None), "annotation", None))
        problems = describe(list(exc.errors()), skip=("body", "query", "path", "header"), model=model)
        return JSONResponse({"detail": [{"field": f, "message": m} for f, m in problems]}, status_code=422)

    # Dependencies and the hottest endpoints are coroutines: they run on the event loop, with no
    # hop to a worker thread (a submit is ~0.5 ms of database work; the hops cost more than that)
    async def db() -> AsyncIterator[Session]:
        with state.sessions() as session:
            yield session

    async def principal(
        creds: HTTPAuthorizationCredentials | None = Depends(bearer), session: Session = Depends(db)
    ) -> Principal:
        who = auth.authenticate(session, creds.credentials) if creds else None
        if who is None:
            why = auth.refusal(session, creds.credentials) if creds else "missing, unknown or revoked token"
            raise HTTPException(401, why, {"WWW-Authenticate": "Bearer"})
        return who

    async def admin(who: Principal = Depends(principal)) -> Principal:
        if not who.is_admin:
            raise HTTPException(403, "admins only")
        return who

    @app.get("/healthz")
    def healthz(session: Session = Depends(db)) -> dict:
        session.execute(select(1))
        loop = state.loop
        return {
            # degraded: the control loop's ticks fail, or the quota tree in force cannot be used
            "status": "degraded" if loop.tick_error or loop.tree_error else "ok",
            **({"error": loop.tick_error or loop.tree_error} if loop.tick_error or loop.tree_error else {}),
            "role": loop.role,  # leader: this server schedules; standby: another does
            "scheduler": {
                "cycles": loop.cycle_count,
                "decisions": loop.decision_count,
                "waiting": len(loop.pending),
                "active": len(loop.active),
            },
        }

    app.include_router(jobs_api.router(state, db, principal))
    app.include_router(attach_api.router(state))
    app.include_router(accounts_api.router(db, principal, admin, state.tree_changed, state.loop.notify))
    app.include_router(
        cluster_api.router(
            state.cluster,
            db,
            principal,
            admin,
            state.loop,
            state.gateway.metrics.registry if state.gateway else None,
        )
    )
    app.include_router(services_api.router(state, db, principal))
    app.include_router(usage_api.router(db, principal, admin))
    app.include_router(acct_api.router(db, principal))
    app.include_router(
        quota_api.router(
            state.cluster,
            db,
            principal,
            admin,
            state.trees.get,
            state.tree_changed,
            lambda: state.loop.notify("queues", 0),
            lambda: state.loop.usage,
        )
    )
    app.include_router(console.router(state, db))  # the web console, at /
    app.add_exception_handler(SignedOut, signed_out)
    return app
