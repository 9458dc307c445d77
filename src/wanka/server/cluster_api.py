"""Nodes (list, drain, undrain), cluster status and Prometheus metrics.

The node table holds what operators decide about nodes (drained, and why); the cluster model in
memory carries the same state for the control loop, so a drain takes effect at the next cycle and
survives a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wanka.core import Cluster, JobState, NodeState
from wanka.models.bounds import LabelText
from wanka.server import tables
from wanka.server.auth import Principal

#: Job states that hold cards.
HOLDING = (JobState.ADMITTED.value, JobState.RUNNING.value)


class NodeOut(BaseModel):
    name: str
    model: str
    cards: int
    cpus: int = Field(description="CPU cores the node offers to tasks")
    memory_gib: int = Field(description="memory the node offers to tasks, GiB")
    domain: list[str] = Field(description="the node's network domains, innermost first")
    state: str = Field(description="up, draining or down")
    reason: str
    changed_at: float


class DrainIn(BaseModel):
    reason: LabelText = Field(default="", max_length=500)


class ClusterOut(BaseModel):
    name: str
    cards: int
    cards_by_state: dict[str, int] = Field(description="cards on up, draining and down nodes")
    allocated: int = Field(description="cards held by admitted and running jobs (of the tenants you see)")
    allocated_by_tenant: dict[str, int]
    pending_jobs: int = Field(description="waiting jobs (of the tenants you see)")


def sync_nodes(sessions: sessionmaker, cluster: Cluster, down_reason: str = "") -> None:
    """Rows for nodes new to the database (``down_reason`` for those that start down); the states
    recorded for known ones onto the cluster."""
    with sessions() as session:
        known = {n.name: n for n in session.scalars(select(tables.Node))}
        now = time.time()
        for i, name in enumerate(cluster.node_names):
            row = known.get(name)
            if row is None:
                state = NodeState(int(cluster.node_state[i])).name.lower()
                reason = down_reason if state == "down" else ""
                session.add(tables.Node(name=name, state=state, reason=reason, changed_at=now))
            else:
                cluster.node_state[i] = int(NodeState[row.state.upper()])
        session.commit()


def cards_held(session: Session, tenant_id: int | None = None) -> dict[tuple[str, str], int]:
    """Cards held now (runs not yet over: from admission until the processes are gone), per
    (tenant name, accelerator model); only ``tenant_id``'s when given."""
    q = (
        select(tables.Tenant.name, tables.JobRun.model, func.sum(tables.JobRun.cards))
        .join(tables.Tenant)
        .where(tables.JobRun.end.is_(None))
        .group_by(tables.Tenant.name, tables.JobRun.model)
    )
    if tenant_id is not None:
        q = q.where(tables.JobRun.tenant_id == tenant_id)
    return {(name, model): int(n or 0) for name, model, n in session.execute(q)}


def node_out(cluster: Cluster, row: tables.Node) -> NodeOut:
    i = cluster.node_index[row.name]
    record = cluster.nodes[i]
    return NodeOut(
        name=row.name,
        model=record.accelerator.id,
        cards=record.cards,
        cpus=record.cpus,
        memory_gib=record.memory_gib,
        domain=list(record.domains),
        state=row.state,
        reason=row.reason,
        changed_at=row.changed_at,
    )


def record_node_event(session: Session, row: tables.Node, by: str) -> None:
    """The audit stream's record of ``row``'s new state (the caller commits)."""
    session.add(
        tables.NodeEvent(
            node=row.name, time=row.changed_at, state=row.state, reason=row.reason[:500], by=by[:64]
        )
    )


def set_node_state(
    session: Session, cluster: Cluster, loop, name: str, target: NodeState, reason: str, by: str
) -> NodeOut:
    """Drain (``DRAINING``) or undrain (``UP``) node ``name``: recorded, then seen by the next cycle
    and told to the backend. 404 for a node the cluster does not have; 409 to bring a down node up
    (it comes back when it reports healthy)."""
    row = session.scalar(select(tables.Node).where(tables.Node.name == name))
    if row is None or name not in cluster.node_index:
        raise HTTPException(404, f"no node named {name!r}; `GET /v1/nodes` lists them")
    current = NodeState[row.state.upper()]
    if current is NodeState.DOWN and target is NodeState.UP:
        raise HTTPException(409, f"node {name!r} is down; it comes back up when it reports healthy")
    row.state, row.reason, row.changed_at = target.name.lower(), reason, time.time()
    record_node_event(session, row, by)
    session.commit()
    cluster.node_state[cluster.node_index[name]] = int(target)  # the next cycle sees it
    if loop is not None:
        loop.backend.set_node_state(name, target.name.lower(), reason)
        loop.notify("nodes", 0)
    return node_out(cluster, row)


def router(
    cluster: Cluster,
    db: Callable,
    principal: Callable,
    admin: Callable,
    loop=None,
    gateway: CollectorRegistry | None = None,
) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/nodes", response_model=list[NodeOut])
    def list_nodes(_: Principal = Depends(principal), session: Session = Depends(db)):
        rows = session.scalars(select(tables.Node).order_by(tables.Node.id))
        return [node_out(cluster, r) for r in rows if r.name in cluster.node_index]

    @api.post("/v1/nodes/{name}/drain", response_model=NodeOut)
    def drain(name: str, body: DrainIn, who: Principal = Depends(admin), session: Session = Depends(db)):
        """Running jobs keep running; nothing new is placed on the node."""
        return set_node_state(
            session,
            cluster,
            loop,
            name,
            NodeState.DRAINING,
            body.reason or f"drained by {who.name}",
            who.name,
        )

    @api.post("/v1/nodes/{name}/undrain", response_model=NodeOut)
    def undrain(name: str, who: Principal = Depends(admin), session: Session = Depends(db)):
        return set_node_state(session, cluster, loop, name, NodeState.UP, "", who.name)

    @api.get("/v1/cluster", response_model=ClusterOut)
    def status(who: Principal = Depends(principal), session: Session = Depends(db)):
        by_state = {s.name.lower(): 0 for s in NodeState}
        for state, cards in zip(cluster.node_state.tolist(), cluster.node_cards.tolist(), strict=True):
            by_state[NodeState(state).name.lower()] += cards
        pending = select(func.count()).select_from(tables.Job).where(tables.Job.state == "pending")
        tenant = None if who.is_admin else who.tenant_id  # a member sees only its own tenant's usage
        if tenant is not None:
            pending = pending.where(tables.Job.tenant_id == tenant)
        by_tenant: dict[str, int] = {}
        for (name, _), n in cards_held(session, tenant).items():
            by_tenant[name] = by_tenant.get(name, 0) + n
        return ClusterOut(
            name=cluster.name,
            cards=int(cluster.total_cards),
            cards_by_state=by_state,
            allocated=sum(by_tenant.values()),
            allocated_by_tenant=by_tenant,
            pending_jobs=int(session.scalar(pending) or 0),
        )

    @api.get("/metrics", include_in_schema=False)
    def metrics(_: Principal = Depends(admin), session: Session = Depends(db)) -> Response:
        """Prometheus text format; scrape with an admin token (``authorization`` in the scrape
        config): the figures name every tenant."""
        registry = CollectorRegistry()
        registry.register(_Figures(cluster, session))
        if loop is not None:  # the control loop's own figures: cycle latency, decisions
            for collector in (loop.cycle_seconds, loop.decisions, loop.cycles, loop.per_cycle, loop.held):
                registry.register(collector)
        if gateway is not None:  # requests, latency and requests in flight per service
            registry.register(_Merged(gateway))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api


class _Merged:
    """Another registry's metrics, collected into this one."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


class _Figures:
    """Read from the database at scrape time: nothing to keep in step."""

    def __init__(self, cluster: Cluster, session: Session):
        self.cluster, self.session = cluster, session

    def collect(self):
        cards = GaugeMetricFamily(
            "wanka_cards_allocated", "Cards held by admitted and running jobs", labels=["tenant", "model"]
        )
        for (tenant, model), n in cards_held(self.session).items():
            cards.add_metric([tenant, model], float(n))
        yield cards
        pending = GaugeMetricFamily("wanka_jobs_pending", "Waiting jobs", labels=["queue"])
        waiting = (
            select(tables.Job.queue, func.count())
            .where(tables.Job.state == JobState.PENDING.value)
            .group_by(tables.Job.queue)
        )
        for queue, n in self.session.execute(waiting):
            pending.add_metric([queue], float(n))
        yield pending
        nodes = GaugeMetricFamily("wanka_cards", "Cards by node state and model", labels=["state", "model"])
        c = self.cluster
        for state in NodeState:
            for f, model in enumerate(c.models):
                on = (c.node_state == int(state)) & (c.node_model == f)
                nodes.add_metric([state.name.lower(), model.id], float(c.node_cards[on].sum()))
        yield nodes
