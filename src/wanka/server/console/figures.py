"""What the console's charts and bars show, read from the tables the server already keeps: usage by
day (metering's own split, ``usage_api.usage``), cards held by each user now, cards allocated over
the last day, and the control loop's recent cycle latencies. Shapes are plain lists and dicts, ready
for ECharts (``static/console.js`` draws them)."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from wanka.core import NodeState
from wanka.server import tables
from wanka.server.cluster_api import HOLDING
from wanka.server.usage_api import month_bounds, usage

DAY_S = 86400.0
BUCKETS = 48  # half-hours of the last day


def usage_chart(session: Session, tenant_id: int | None, now: float | None = None) -> dict:
    """This month's card-hours per UTC day and accelerator model, and the cost per day:
    ``{"days": [YYYY-MM-DD…], "series": {model: [card-hours per day]}, "cost": [per day], "currency",
    "card_hours", "bill"}``. ``tenant_id`` None: every tenant's (admins)."""
    now = time.time() if now is None else now
    out = usage(session, month_bounds(time.strftime("%Y-%m", time.gmtime(now))), tenant_id, now)
    days = sorted({r.day for r in out.rows})
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[float]] = {}
    cost = [0.0] * len(days)
    for r in out.rows:
        series.setdefault(r.model, [0.0] * len(days))[index[r.day]] += round(r.card_hours, 3)
        cost[index[r.day]] += r.cost or 0.0
    return {
        "days": days,
        "series": series,
        "cost": [round(c, 2) for c in cost],
        "currency": out.currency,
        "card_hours": round(sum(b.card_hours for b in out.bills), 2),
        "bill": round(sum(b.cost for b in out.bills), 2),
        "month": out.month,
    }


def holders_now(session: Session, tenant_id: int | None) -> list[tuple[str, int, int]]:
    """(user, or tenant for admins; cards held; jobs) by jobs admitted or running, most cards first."""
    who = tables.User.name if tenant_id is not None else tables.Tenant.name
    q = (
        select(who, func.sum(tables.Job.cards), func.count())
        .join(tables.User, tables.User.id == tables.Job.user_id)
        .join(tables.Tenant, tables.Tenant.id == tables.Job.tenant_id)
        .where(tables.Job.state.in_(HOLDING))
        .group_by(who)
    )
    if tenant_id is not None:
        q = q.where(tables.Job.tenant_id == tenant_id)
    return sorted(((n, int(c or 0), int(j)) for n, c, j in session.execute(q)), key=lambda r: -r[1])


BAD_ENDS = ("failed", "timeout", "preempted", "node_fail", "lost")  # a run's work not kept (loop.task_state)


def allocation_chart(session: Session, total_cards: int, now: float | None = None) -> dict:
    """Cards held over the last day, in half-hour buckets, as a share of the cluster, and the
    goodput of that card time: ``{"times": [epoch s, bucket ends], "allocated": [fraction 0-1],
    "goodput": [fraction 0-1, or None where no card was held]}`` (from metering's runs). Goodput
    here is the share of held card time in runs that still run or ended well: a run any of whose
    tasks failed, timed out, was preempted or lost its node counts as lost whole (the control plane
    does not know a job's checkpoints, so this is the lower bound)."""
    now = time.time() if now is None else now
    lo = now - DAY_S
    edges = np.linspace(lo, now, BUCKETS + 1)
    held, lost = np.zeros(BUCKETS), np.zeros(BUCKETS)
    run = tables.JobRun
    bad = (
        select(tables.TaskRun.job_id, tables.TaskRun.run)
        .where(tables.TaskRun.state.in_(BAD_ENDS), tables.TaskRun.end > lo)
        .distinct()
    )
    lost_runs = set(session.execute(bad).all())
    q = select(run.job_id, run.run, run.start, run.end, run.cards).where(
        run.start < now, or_(run.end.is_(None), run.end > lo)
    )
    rows = session.execute(q).all()
    if rows:
        runs = np.array([(start, now if end is None else end, cards) for _, _, start, end, cards in rows])
        lost_mask = np.array([(job_id, number) in lost_runs for job_id, number, *_ in rows])
        a = np.maximum(runs[:, 0], lo)[:, None]
        b = np.minimum(runs[:, 1], now)[:, None]
        # card-seconds of each run in each bucket: one (runs x buckets) array, no Python loop
        # over runs (a tenant controls how many there are)
        overlap = np.clip(np.minimum(edges[None, 1:], b) - np.maximum(edges[None, :-1], a), 0.0, None)
        overlap *= runs[:, 2][:, None]
        held = overlap.sum(axis=0)
        lost = overlap[lost_mask].sum(axis=0)
    width = (now - lo) / BUCKETS
    share = held / (width * total_cards) if total_cards else held
    goodput = [None if h <= 0 else round(float((h - x) / h), 4) for h, x in zip(held, lost, strict=True)]
    return {
        "times": [round(t) for t in edges[1:].tolist()],
        "allocated": np.round(share, 4).tolist(),
        "goodput": goodput,
    }


def cards_by_state(cluster) -> dict[str, dict[str, int]]:
    """Cards per node state (up, draining, down) and accelerator model."""
    out: dict[str, dict[str, int]] = {}
    for state in NodeState:
        for f, model in enumerate(cluster.models):
            on = (cluster.node_state == int(state)) & (cluster.node_model == f)
            n = int(cluster.node_cards[on].sum())
            if n:
                out.setdefault(state.name.lower(), {})[model.id] = n
    return out


def job_counts(session: Session) -> dict[str, int]:
    q = select(tables.Job.state, func.count()).group_by(tables.Job.state)
    return {state: int(n) for state, n in session.execute(q)}


def cycle_chart(recent) -> dict:
    """The control loop's last cycles: ``{"times": [epoch s], "ms": [latency]}``."""
    return {"times": [round(t, 1) for t, _ in recent], "ms": [round(s * 1000, 2) for _, s in recent]}


def _by_domain(cells) -> list[dict]:
    """``(outer, inner, cell)`` triples grouped as the network is: ``[{"name": outer, "leaves":
    [{"name": inner, "nodes": [cell…]}]}]``, in the order first seen."""
    groups: dict[str, dict[str, list]] = {}
    for outer, inner, cell in cells:
        groups.setdefault(outer, {}).setdefault(inner, []).append(cell)
    return [
        {"name": outer, "leaves": [{"name": inner, "nodes": ns} for inner, ns in leaves.items()]}
        for outer, leaves in groups.items()
    ]


def _domains(domains, pool: str) -> tuple[str, str]:
    """(outermost, innermost) network domain of a node, its pool's model when it has none."""
    return (domains[-1], domains[0]) if domains else (pool, pool)


def node_map(cluster, nodes, used) -> list[dict]:
    """Nodes grouped as the network is (outermost domain, then leaf; the model where a node has
    no domains), in the cluster's node order; each ``{"name", "state", "load": 0-4, "title"}``.
    ``load``: the quarter of its cards held (0 idle … 4 full)."""

    def cell(n):
        i = cluster.node_index[n.name]
        cards, held = int(cluster.node_cards[i]), int(used[i])
        load = 0 if not held else min(4, 1 + (4 * held - 1) // max(cards, 1))
        title = f"{n.name}: {n.state}, {held}/{cards} cards held" + (f" ({n.reason})" if n.reason else "")
        return {"name": n.name, "state": n.state, "load": load, "title": title}

    return _by_domain((*_domains(n.domain, n.model), cell(n)) for n in nodes)


def placement_map(cluster, nodes: set[str]) -> list[dict]:
    """A job's placement drawn on the network: the leaf domains holding any of ``nodes``, every
    node of them (``mine``: one of the job's), grouped as :func:`node_map` groups them."""
    leaves = {cluster.nodes[cluster.node_index[n]].domains[:1] for n in nodes if n in cluster.node_index}
    return _by_domain(
        (*_domains(r.domains, r.accelerator.id), {"name": r.name, "mine": r.name in nodes})
        for r in cluster.nodes
        if r.domains[:1] in leaves
    )
