"""The quota tree over the API: admins apply a document (the queues YAML of ``models.quota``, as
JSON); everyone reads the queues they may use."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from wanka.core import TERMINAL_STATES, Cluster, JobState, QueueTree
from wanka.core.fairshare import QueueUsage, slurm_fairshare_factor
from wanka.core.quota import UNLIMITED
from wanka.models.bounds import LabelText
from wanka.models.errors import SpecError
from wanka.models.quota import QueueTreeSpec, build_queue_tree
from wanka.server import tables
from wanka.server.auth import Principal


class QuotaOut(BaseModel):
    nominal: int
    borrowing_limit: int | None = Field(description="null: may borrow without limit")
    lending_limit: int | None = Field(description="null: lends everything unused")


class FairShareOut(BaseModel):
    """Where a queue stands in fair share (Slurm's classic fair share: its share of the weights
    against its share of the cluster's recent use, compute normalised by rated PFLOPS, decayed with
    a one-week half-life; slurm.schedmd.com/classic_fair_share.html)."""

    share: float = Field(description="normalised share: weight / siblings' weights, down the path (0..1)")
    usage: float = Field(description="its (and its sub-queues') share of the cluster's decayed use (0..1)")
    factor: float = Field(description="2^(-usage/share): 1 unused, 0.5 at its share, toward 0 beyond")


class QueueOut(BaseModel):
    name: str
    parent: str | None
    leaf: bool = Field(description="jobs are submitted to leaf queues")
    weight: float
    quota: dict[str, QuotaOut] = Field(description="per accelerator model")
    in_use: dict[str, int] = Field(
        default={}, description="cards held now by its jobs and its sub-queues' (per model)"
    )
    pending_jobs: int
    held: str | None = Field(
        default=None, description="why an admin holds it (its jobs wait however much is free); null: not held"
    )
    fair_share: FairShareOut | None = Field(default=None, description="null: the scheduler keeps no usage")


class HoldIn(BaseModel):
    reason: LabelText = Field(default="", max_length=500)


class AppliedOut(BaseModel):
    document: int
    applied_at: float
    queues: int


def subtree(tree: QueueTree, root: str) -> list[int]:
    """Indices of ``root`` and every queue below it (empty when there is no such queue)."""
    if root not in tree.index:
        return []
    out, todo = [], [tree.index[root]]
    while todo:
        i = todo.pop()
        out.append(i)
        todo += tree.children[i]
    return sorted(out)


def check_quotas(session: Session, cluster: Cluster, spec: QueueTreeSpec) -> QueueTree:
    """The tree of a quota document, if it may replace the one in force: every tenant keeps an
    organisation named like it, and every queue holding waiting or running jobs stays a leaf.
    Raises SpecError (fields of the document) or HTTPException 422; stores nothing."""
    tree = build_queue_tree(spec, cluster, "body")
    tenants = list(session.scalars(select(tables.Tenant.name).order_by(tables.Tenant.name)))
    # a tenant's organisation is a top-level one: members see and submit to its subtree, so a
    # tenant whose name were a queue inside another organisation would get that one's queues
    top = {o.name for o in spec.organisations}
    orphaned = [t for t in tenants if t not in top]
    if orphaned:
        raise HTTPException(
            422,
            [
                {
                    "field": "organisations",
                    "message": f"no top-level organisation for tenant(s) {', '.join(orphaned)}; every "
                    "tenant needs one named like it",
                }
            ],
        )
    live = [s.value for s in JobState if s not in TERMINAL_STATES]
    in_use = session.scalars(
        select(tables.Job.queue).where(tables.Job.state.in_(live)).group_by(tables.Job.queue)
    )
    dropped = sorted(q for q in in_use if q not in tree.index or not tree.is_leaf(q))
    if dropped:
        raise HTTPException(
            422,
            [
                {
                    "field": "organisations",
                    "message": f"queue(s) {', '.join(dropped)} hold waiting or running jobs and must "
                    "stay leaf queues; let those jobs end (or cancel them) first",
                }
            ],
        )
    return tree


def apply_quotas(session: Session, cluster: Cluster, who: Principal, spec: QueueTreeSpec) -> AppliedOut:
    """Store ``spec`` as the quota tree in force after :func:`check_quotas` (same errors); the
    caller then tells the control loop (``AppState.tree_changed``)."""
    tree = check_quotas(session, cluster, spec)
    doc = tables.QuotaDocument(
        body=spec.model_dump(mode="json"), applied_at=time.time(), applied_by=who.user_id
    )
    session.add(doc)
    session.commit()
    return AppliedOut(document=doc.id, applied_at=doc.applied_at, queues=len(tree.names) - 1)


def router(
    cluster: Cluster,
    db: Callable,
    principal: Callable,
    admin: Callable,
    current_tree: Callable,
    changed: Callable[[], None],
    changed_queues: Callable[[], None] = lambda: None,
    usage: Callable[[], Mapping[str, QueueUsage]] | None = None,
):
    """``usage``: the scheduler's decayed use per leaf queue (for fair-share standing)."""
    api = APIRouter()

    @api.put("/v1/quotas", response_model=AppliedOut)
    def apply(spec: QueueTreeSpec, who: Principal = Depends(admin), session: Session = Depends(db)):
        """Replace the quota tree. Every tenant keeps an organisation named like it, or the
        document is refused: a tenant without one could no longer submit."""
        try:
            applied = apply_quotas(session, cluster, who, spec)
        except SpecError as exc:
            return JSONResponse(
                {"detail": [{"field": f, "message": m} for f, m in exc.problems]}, status_code=422
            )
        changed()
        return applied

    @api.get("/v1/queues", response_model=list[QueueOut])
    def queues(who: Principal = Depends(principal), session: Session = Depends(db)):
        """Every queue (admins), or the tenant's own organisation and its queues (members)."""
        return queue_rows(session, current_tree(session), who, dict(usage()) if usage else None)

    @api.post("/v1/queues/{name}/hold", response_model=QueueOut)
    def hold(name: str, body: HoldIn, who: Principal = Depends(admin), session: Session = Depends(db)):
        """Its jobs wait however much is free; running ones run on (Kueue's stopPolicy Hold)."""
        tree = current_tree(session)
        if name not in tree.index or not tree.is_leaf(name):
            raise HTTPException(404, f"no leaf queue {name!r}")
        if session.get(tables.QueueHold, name) is None:
            session.add(
                tables.QueueHold(queue=name, held_at=time.time(), held_by=who.user_id, reason=body.reason)
            )
            session.execute(
                update(tables.Job)
                .where(tables.Job.queue == name, tables.Job.state == JobState.PENDING.value)
                .values(reason=_held_text_of(name, who.name, body.reason))
            )
            session.commit()
            changed_queues()
        return _one(session, who, name)

    @api.post("/v1/queues/{name}/release", response_model=QueueOut)
    def release(name: str, who: Principal = Depends(admin), session: Session = Depends(db)):
        row = session.get(tables.QueueHold, name)
        if row is None:
            raise HTTPException(409, f"queue {name!r} is not held")
        session.delete(row)
        session.execute(
            update(tables.Job)
            .where(
                tables.Job.queue == name,
                tables.Job.state == JobState.PENDING.value,
                tables.Job.reason.like(f"queue {name} held%"),
            )
            .values(reason="")
        )
        session.commit()
        changed_queues()
        return _one(session, who, name)

    def _one(session: Session, who: Principal, name: str) -> QueueOut:
        return next(q for q in queues(who, session) if q.name == name)

    return api


def queue_rows(
    session: Session, tree: QueueTree, who: Principal, usage: Mapping[str, QueueUsage] | None = None
) -> list[QueueOut]:
    """Every queue of ``tree`` but the root (admins), or the member's organisation and its queues:
    quota per model, cards in use, waiting jobs, holds and (given the scheduler's decayed ``usage``
    per leaf queue) fair-share standing."""
    if who.is_admin:
        shown = list(range(1, len(tree.names)))  # all but the root
    else:
        tenant = session.get(tables.Tenant, who.tenant_id)
        shown = subtree(tree, tenant.name)
    names = [tree.names[i] for i in shown]
    waiting = dict(
        session.execute(
            select(tables.Job.queue, func.count())
            .where(tables.Job.state == JobState.PENDING.value, tables.Job.queue.in_(names))
            .group_by(tables.Job.queue)
        ).all()
    )
    in_use = _in_use(session, tree)
    holds = {h.queue: h for h in session.scalars(select(tables.QueueHold))}
    standing = fair_share(tree, usage) if usage is not None else {}
    out = []
    for i in shown:
        parent = tree.parent[i]
        quota = {}
        for k, model in enumerate(tree.flavors):
            nominal = int(tree.nominal[i][k])
            borrow, lend = tree.borrowing_limit[i][k], tree.lending_limit[i][k]
            quota[model] = QuotaOut(
                nominal=nominal,
                borrowing_limit=None if borrow >= UNLIMITED else int(borrow),
                lending_limit=lend,
            )
        out.append(
            QueueOut(
                name=tree.names[i],
                parent=tree.names[parent] if parent > 0 else None,
                leaf=not tree.children[i],
                weight=float(tree.weight[i]),
                quota=quota,
                in_use=in_use.get(i, {}),
                pending_jobs=int(waiting.get(tree.names[i], 0)),
                held=_held_text(holds.get(tree.names[i])),
                fair_share=standing.get(i),
            )
        )
    return out


def fair_share(tree: QueueTree, usage: Mapping[str, QueueUsage]) -> dict[int, FairShareOut]:
    """Each queue's standing (index -> :class:`FairShareOut`) from the decayed compute use of the
    leaf queues (a parent's use is its leaves'), as the core's multifactor order weighs it."""
    used = [0.0] * len(tree.names)
    for leaf in tree.leaves:
        u = usage.get(tree.names[leaf])
        i = leaf
        while u is not None and i >= 0:
            used[i] += u.compute
            i = tree.parent[i]
    total = sum(used[leaf] for leaf in tree.leaves)
    out = {}
    for i in range(1, len(tree.names)):
        fraction = used[i] / total if total > 0 else 0.0
        share = float(tree.norm_share[i])
        out[i] = FairShareOut(share=share, usage=fraction, factor=slurm_fairshare_factor(fraction, share))
    return out


def _held_text_of(queue: str, by: str, reason: str) -> str:
    return f"queue {queue} held by {by}" + (f": {reason}" if reason else "")


def _held_text(hold) -> str | None:
    if hold is None:
        return None
    return hold.reason or "held"


def _in_use(session: Session, tree: QueueTree) -> dict[int, dict[str, int]]:
    """Cards held by running jobs, by queue index and model: a queue's own and its sub-queues'."""
    out: dict[int, dict[str, int]] = {}
    held = (
        select(tables.JobRun.queue, tables.JobRun.model, func.sum(tables.JobRun.cards))
        .where(tables.JobRun.end.is_(None))
        .group_by(tables.JobRun.queue, tables.JobRun.model)
    )
    for queue, model, cards in session.execute(held):
        i = tree.index.get(queue)
        while i is not None and i > 0:  # up to (not including) the root
            row = out.setdefault(i, {})
            row[model] = row.get(model, 0) + int(cards)
            i = tree.parent[i]
    return out
