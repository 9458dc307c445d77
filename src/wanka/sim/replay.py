"""Turning a trace into the twin's input: core jobs, and one queue per tenant."""

from __future__ import annotations

import math

from wanka.core import Cluster, Job, QueueTree, TaskGroup
from wanka.core.eligibility import parse_array, parse_dependencies
from wanka.sim.traces import MAX_ARRAY_ELEMENTS, Trace


def trace_jobs(
    trace: Trace, cluster: Cluster, checkpoint_interval_s: float | None = 3600.0
) -> list[tuple[Job, float]]:
    """(job, duration) per trace row. A request larger than a node becomes ceil(cards / node) tasks of
    equal size (12 cards on 8-card nodes: 2 tasks of 6; 9 cards: 2 tasks of 5, one card spare).
    Traces carry no time limits; jobs get none. A blocked head job still gets a reservation (its
    start unknown): the cards freed on its nodes wait for it, and backfill keeps off them. A row
    with an ``array`` becomes one job per index (``ID_INDEX``); ``dependency`` carries over."""
    node = int(cluster.node_cards.max())
    out = []
    for t in trace.jobs:
        tasks = max(1, math.ceil(t.cards / node))
        per_task = math.ceil(t.cards / tasks)
        deps = parse_dependencies(t.dependency) if t.dependency else ()
        array = parse_array(t.array, MAX_ARRAY_ELEMENTS) if t.array else None
        # an array row is one job per index, named ID_INDEX; the array keeps the row's id
        for job_id, array_id in [(f"{t.id}_{i}", t.id) for i in array.indices] if array else [(t.id, None)]:
            job = Job(
                id=job_id,
                tenant=t.tenant,
                queue=t.queue,
                groups=(TaskGroup("worker", tasks, per_task),),
                name=job_id,
                submit_time=t.submit_s,
                checkpoint_interval_s=checkpoint_interval_s,
                dependencies=deps,
                array_id=array_id,
                array_max_running=array.max_running if array else None,
            )
            out.append((job, t.duration_s))
    return out


def tenant_queues(cluster: Cluster, tenants: list[str]) -> QueueTree:
    """The root holds every card; each tenant is a queue with no quota of its own and equal weight,
    so all share by fair share (traces say nothing of quotas)."""
    flavors = [m.id for m in cluster.models]
    capacity = dict(zip(flavors, (int(c) for c in cluster.cards_by_model(states=(0, 1, 2))), strict=True))
    return QueueTree.flat(flavors, capacity, sorted(set(tenants)))
