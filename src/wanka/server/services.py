"""What the API does to services: apply (create or change), list, show, delete (docs/services.md).

A service's replicas are jobs the control loop's service keeper (``server/service_keeper.py``)
submits and cancels; this module only records what the tenant asked for, after the same checks a
job passes (its queue, its priority class, that a replica could ever run here).
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.core.autoscale import guaranteed_replicas, nominal_cards
from wanka.core.jobs import TERMINAL_STATES
from wanka.models.service import NOTEBOOK_COMMAND, ServiceSpec
from wanka.server import tables
from wanka.server.auth import Principal
from wanka.server.trees import default_queue

# a change of these replaces the replicas (a new generation, rolled over); the others (scaling,
# auth, sharing, timeouts, probe) take effect on the running ones
REPLICA_FIELDS = (
    "command",
    "env",
    "workdir",
    "cards",
    "accelerators",
    "cpus",
    "memory_gib",
    "queue",
    "priority_class",
)
LIVE = [s.value for s in JobState if s not in TERMINAL_STATES]
EVENTS_SHOWN = 50
MAX_SERVICES_PER_TENANT = 100  # services and notebooks: each costs the gateway and the loop a little


@dataclass(frozen=True)
class Applied:
    row: tables.Service
    tenant: str
    created: bool
    changed: bool


def held_guaranteed(session: Session, queue: str, service_id: int | None) -> int:
    """Cards the queue's other services' never-preempted replicas hold or wait for."""
    rows = session.execute(
        select(tables.Job.cards, tables.Job.spec).where(
            tables.Job.service_id.is_not(None),
            tables.Job.queue == queue,
            tables.Job.state.in_(LIVE),
            tables.Job.cancel_requested.is_(False),
            *([tables.Job.service_id != service_id] if service_id is not None else []),
        )
    ).all()
    return sum(cards for cards, spec in rows if spec.get("preemptible") is False)


def apply(state, session: Session, who: Principal, spec: ServiceSpec) -> Applied:
    """Create the service, or change it: a change of what replicas run starts a new generation
    that replaces them one by one (rolling); any other change applies at once. 422/403 as a job's
    submission for the replica it describes; 409 while a service of that name is being deleted."""
    from wanka.server.jobs_api import _acting_tenant, admit_spec

    tenant_id, tenant = _acting_tenant(session, who, spec.tenant)
    tree = state.trees.get(session)
    queue = default_queue(tree, tenant) if spec.queue == "default" else spec.queue
    spec = spec.model_copy(update={"tenant": tenant, "queue": queue})
    if spec.kind == "notebook":
        spec = notebook_defaults(spec, tenant)
    admit_spec(state, session, who, spec.replica_job(True, 1), tenant_id)  # queue, class, fits here
    now = time.time()
    row = session.scalar(
        select(tables.Service)
        .where(tables.Service.tenant_id == tenant_id, tables.Service.name == spec.name)
        .with_for_update()
    )
    if row is not None and row.deleted_at is not None:
        raise HTTPException(409, f"service {spec.name} is being deleted; apply it again once it is gone")
    if row is not None and spec.kind == "notebook" and "JUPYTER_TOKEN" in row.spec.get("env", {}):
        env = {**spec.env, "JUPYTER_TOKEN": row.spec["env"]["JUPYTER_TOKEN"]}
        spec = spec.model_copy(update={"env": env})
    body = spec.model_dump(mode="json")
    unknown = sorted(
        set(spec.shared_with)
        - set(session.scalars(select(tables.Tenant.name).where(tables.Tenant.name.in_(spec.shared_with))))
    )
    if unknown:
        raise HTTPException(422, [{"field": "shared_with", "message": f"no tenant {', '.join(unknown)}"}])
    nominal = nominal_cards(tree, queue, spec.accelerators)
    held = held_guaranteed(session, queue, row.id if row is not None else None)
    sure = guaranteed_replicas(spec.replicas.min, spec.cards, nominal, held)
    note = (
        f"; {sure} of min {spec.replicas.min} replica(s) within {queue}'s nominal quota "
        f"({nominal} cards): never preempted"
        if spec.replicas.min
        else ""
    )
    if row is None:
        count = session.scalar(
            select(func.count()).select_from(tables.Service).where(tables.Service.tenant_id == tenant_id)
        )
        if count >= MAX_SERVICES_PER_TENANT:
            raise HTTPException(
                429, f"{tenant} has {count} services, the most a tenant may have; delete some first"
            )
        first = spec.policy().min if spec.scaling else max(spec.replicas.min, 1)
        row = tables.Service(
            tenant_id=tenant_id,
            user_id=who.user_id,
            name=spec.name,
            spec=body,
            generation=1,
            desired=first,
            reason=f"created with {first} replica(s)",
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        event(session, row.id, f"applied by {who.name}: generation 1, {first} replica(s){note}", now)
        return Applied(row, tenant, True, True)
    if row.spec == body:
        return Applied(row, tenant, False, False)
    rollout = any(row.spec.get(f) != body.get(f) for f in REPLICA_FIELDS)
    changed = sorted(k for k in body if row.spec.get(k) != body.get(k))
    row.spec, row.user_id, row.updated_at = body, who.user_id, now
    if rollout:
        row.generation += 1
    what = f"generation {row.generation}: rolling update" if rollout else "no new replicas needed"
    event(session, row.id, f"applied by {who.name}: {', '.join(changed)} changed; {what}{note}", now)
    return Applied(row, tenant, False, True)


def notebook_defaults(spec: ServiceSpec, tenant: str) -> ServiceSpec:
    """A notebook's replica: Jupyter on the gateway's base URL, probed at its unauthenticated
    ``api`` route, with a Jupyter token of its own (kept over a re-apply: open tabs stay in)."""
    env = dict(spec.env)
    env.setdefault("JUPYTER_TOKEN", secrets.token_urlsafe(24))
    probe = spec.readiness.model_copy(update={"path": f"/services/{tenant}/{spec.name}/api"})
    command = [sys.executable, *NOTEBOOK_COMMAND[1:]]  # Jupyter and nothing else: its pages are not sandboxed
    return spec.model_copy(update={"env": env, "readiness": probe, "command": command})


def event(session: Session, service_id: int, message: str, now: float | None = None) -> None:
    session.add(tables.ServiceEvent(service_id=service_id, time=now or time.time(), message=message[:1000]))


def _scoped(who: Principal, tenant: str | None):
    """Services (with their tenant's name) the caller may see: a member its own tenant's (403 for
    naming another), an admin everyone's or the ``tenant`` named."""
    q = select(tables.Service, tables.Tenant.name).join(
        tables.Tenant, tables.Tenant.id == tables.Service.tenant_id
    )
    if not who.is_admin:
        if tenant and tenant != who.tenant_name:
            raise HTTPException(403, f"tenant: you act for {who.tenant_name}; only admins name another")
        return q.where(tables.Service.tenant_id == who.tenant_id)
    return q.where(tables.Tenant.name == tenant) if tenant else q


def visible(session: Session, who: Principal, name: str, tenant: str | None):
    """The service named ``name`` of the caller's tenant (an admin names one) and its tenant's
    name, or 404 (also for another tenant's: names reveal nothing)."""
    rows = session.execute(_scoped(who, tenant).where(tables.Service.name == name)).all()
    if not rows:
        raise HTTPException(404, f"no service {name}" + (f" of tenant {tenant}" if tenant else ""))
    if len(rows) > 1:
        raise HTTPException(422, f"services named {name} in several tenants; name one (tenant)")
    return rows[0]


def listing(session: Session, who: Principal, tenant: str | None):
    return session.execute(_scoped(who, tenant).order_by(tables.Service.id)).all()


def replicas(session: Session, service_ids: list[int]) -> dict[int, list]:
    """The live replica jobs of each service (id, state, generation, endpoint, spec, start)."""
    out: dict[int, list] = {i: [] for i in service_ids}
    if not service_ids:
        return out
    rows = session.execute(
        select(
            tables.Job.id,
            tables.Job.service_id,
            tables.Job.state,
            tables.Job.service_generation,
            tables.Job.spec,
            tables.Job.cancel_requested,
            tables.Job.start_time,
        )
        .where(tables.Job.service_id.in_(service_ids), tables.Job.state.in_(LIVE))
        .order_by(tables.Job.id)
    ).all()
    for r in rows:
        out[r.service_id].append(r)
    return out


def events(session: Session, service_id: int) -> list:
    rows = session.execute(
        select(tables.ServiceEvent.time, tables.ServiceEvent.message)
        .where(tables.ServiceEvent.service_id == service_id)
        .order_by(tables.ServiceEvent.id.desc())
        .limit(EVENTS_SHOWN)
    ).all()
    return list(reversed(rows))


def delete(session: Session, who: Principal, row: tables.Service) -> None:
    """Mark it deleted: the keeper stops its replicas and removes it once they are gone."""
    if row.deleted_at is None:
        row.deleted_at = time.time()
        event(session, row.id, f"deleted by {who.name}: stopping its replicas", row.deleted_at)


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(tables.Service)) or 0)
