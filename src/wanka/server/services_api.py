"""``/v1/services``: apply, list, show and delete services (thin over ``server.services``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy.orm import Session

from wanka.models.service import ReplicaOut, ServiceEventOut, ServiceLink, ServiceOut, ServiceSpec
from wanka.server import services
from wanka.server.auth import Principal
from wanka.server.gateway.board import LINK_TTL_S

TENANT = Query(None, max_length=64, description="admins: the tenant whose service it is")


def router(state, db, principal) -> APIRouter:
    api = APIRouter()

    @api.put("/v1/services", response_model=ServiceOut)
    def apply(
        spec: ServiceSpec,
        response: Response,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Create the service (201) or change it (200): a change of what its replicas run rolls
        them over to a new generation."""
        done = services.apply(state, session, who, spec)
        session.commit()
        state.loop.notify("services", 0)
        if state.board is not None:
            state.board.poke()
        response.status_code = 201 if done.created else 200
        return out(state, session, done.row, done.tenant, detail=True)

    @api.get("/v1/services", response_model=list[ServiceOut])
    def list_services(
        tenant: str | None = TENANT, who: Principal = Depends(principal), session: Session = Depends(db)
    ):
        rows = services.listing(session, who, tenant)
        reps = services.replicas(session, [r[0].id for r in rows])
        return [out(state, session, row, name, reps[row.id]) for row, name in rows]

    @api.get("/v1/services/{name}", response_model=ServiceOut)
    def show(
        name: str,
        tenant: str | None = TENANT,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        row, tenant_name = services.visible(session, who, name, tenant)
        return out(state, session, row, tenant_name, detail=True)

    @api.post("/v1/services/{name}/link", response_model=ServiceLink)
    def link(
        name: str,
        tenant: str | None = TENANT,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """A one-time link (2 minutes) that opens the service in a browser: the gateway trades it
        for a session cookie of that service's path. A notebook's link logs into Jupyter too."""
        row, tenant_name = services.visible(session, who, name, tenant)
        return ServiceLink(url=link_url(state, who, row, tenant_name), expires_in_s=LINK_TTL_S)

    @api.delete("/v1/services/{name}", response_model=ServiceOut)
    def delete(
        name: str,
        tenant: str | None = TENANT,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Stop its replicas; the service is gone once they have stopped."""
        row, tenant_name = services.visible(session, who, name, tenant)
        services.delete(session, who, row)
        session.commit()
        state.loop.notify("services", 0)
        return out(state, session, row, tenant_name, detail=True)

    return api


def link_url(state, who: Principal, row, tenant: str) -> str:
    """A one-time link to the service at the gateway (a notebook's logs into Jupyter too); 409
    without a gateway, 429 when too many links wait."""
    if state.board is None or not state.gateway_url:
        raise HTTPException(409, "this server runs no gateway (--gateway-port 0)")
    try:
        code = state.board.link(who, row.id)
    except OverflowError as exc:
        raise HTTPException(429, str(exc)) from None
    url = f"{state.gateway_url}/services/{tenant}/{row.name}/"
    if row.spec.get("kind") == "notebook":
        return url + f"lab?token={row.spec['env']['JUPYTER_TOKEN']}&wanka_link={code}"
    return url + f"?wanka_link={code}"


def out(state, session: Session, row, tenant: str, reps=None, detail: bool = False) -> ServiceOut:
    if reps is None:
        reps = services.replicas(session, [row.id])[row.id]
    ready = state.board.ready_ids(row.id) if state.board is not None else set()
    return ServiceOut(
        name=row.name,
        tenant=tenant,
        url=f"{state.gateway_url}/services/{tenant}/{row.name}/",
        generation=row.generation,
        desired=row.desired,
        ready=sum(1 for r in reps if r.id in ready),
        reason=row.reason,
        deleting=row.deleted_at is not None,
        spec=row.spec,
        replicas=[
            ReplicaOut(
                job=r.id,
                state=r.state,
                generation=r.service_generation or 0,
                ready=r.id in ready,
                preemptible=r.spec.get("preemptible") is not False,
                stopping=r.cancel_requested,
            )
            for r in reps
        ],
        events=[ServiceEventOut(time=t, message=m) for t, m in services.events(session, row.id)]
        if detail
        else [],
    )
