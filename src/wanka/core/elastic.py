"""Taking back an elastic job's surplus: the tasks it runs above its minimum are lent, not owned.

A waiting job whose minimum would fit once running elastic jobs shrink toward their own minimums
gets that room before anything whole is stopped (Volcano's elastic/gang rule: tasks above
``minAvailable`` are the first preemption candidates). Reclaim and preempt try this first; the
cycle emits a :class:`Resize` to the smaller placement, which a backend carries out in place or as
a checkpointed restart at the smaller size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wanka.core.decisions import Fit
from wanka.core.jobs import Job
from wanka.core.placement import FreeArrays
from wanka.core.quota import add_usage, available
from wanka.core.running import Running
from wanka.core.session import Session
from wanka.core.state import GroupPlacement, Placement
from wanka.core.whatif import shortest_prefix


def elastic_running(s: Session, flavor: int) -> list[Running]:
    """Running elastic jobs on ``flavor`` with tasks above their minimum, as they stand now."""
    out = []
    for job_id in [*(e.job.id for e in s.initial_elastic), *sorted(s.started)]:
        entry = s.running.get(job_id)
        if entry is None or entry.flavor != flavor or not entry.job.elastic or not entry.job.preemptible:
            continue
        if any(
            len(g.nodes) > spec.gang_min
            for spec, g in zip(entry.job.groups, entry.placement.groups, strict=True)
        ):
            out.append(entry)
    return out


def shrink_for(s: Session, job: Job, flavor: int, donors: list[Running]) -> bool:
    """Shrink ``donors`` (cheapest first) toward their minimums just enough for ``job`` to start on
    ``flavor``, and start it. True if it started; nothing changes otherwise.

    Each surplus task is one unit (a job's newest tasks go first); fitting is monotone in how many
    units are given back, so a binary search over what-if states finds the fewest."""
    if not donors:
        return False
    units = []  # (donor, group index, task position)
    for d, entry in enumerate(donors):
        for gi, (spec, g) in enumerate(zip(entry.job.groups, entry.placement.groups, strict=True)):
            units.extend((d, gi, pos) for pos in range(len(g.nodes) - 1, spec.gang_min - 1, -1))
    node = np.array([donors[d].placement.groups[gi].nodes[pos] for d, gi, pos in units], dtype=np.int64)
    group = [donors[d].placement.groups[gi] for d, gi, _ in units]
    cards = np.array([g.cards_per_task for g in group], dtype=np.int64)
    cpus = np.array([g.cpus for g in group], dtype=np.int64)
    mem = np.array([g.memory_gib for g in group], dtype=np.int64)
    queue_of = np.array([donors[d].queue for d, _, _ in units], dtype=np.int64)
    tf = s.tree_flavor[flavor]
    q = s.queue_index(job)
    n = len(s.free.cards)

    def fits_giving(k: int):
        quota = s.quota.copy()
        released = np.bincount(queue_of[:k], cards[:k], minlength=len(s.tree.names))
        for qq in np.flatnonzero(released):
            add_usage(quota, int(qq), tf, -int(released[qq]))
        if available(quota, q, tf) < job.min_cards:
            return None
        free = FreeArrays(
            s.free.cards + np.bincount(node[:k], cards[:k], minlength=n).astype(np.int32),
            s.free.cpus + np.bincount(node[:k], cpus[:k], minlength=n).astype(np.int32),
            s.free.memory + np.bincount(node[:k], mem[:k], minlength=n).astype(np.int32),
            None,
        )
        return s.fits_hypothetically(job, flavor, free, s.usable[flavor])

    if fits_giving(len(units)) is None:
        return False
    k, _ = shortest_prefix(fits_giving, 1, len(units))
    cp = s.stmt.checkpoint()
    drop: dict[int, dict[int, set[int]]] = {}
    for d, gi, pos in units[:k]:
        drop.setdefault(d, {}).setdefault(gi, set()).add(pos)
    for d, by_group in drop.items():
        entry = donors[d]
        groups = []
        for gi, g in enumerate(entry.placement.groups):
            gone = by_group.get(gi, set())
            keep = [i for i in range(len(g.nodes)) if i not in gone]
            groups.append(
                GroupPlacement(
                    g.role,
                    tuple(g.nodes[i] for i in keep),
                    tuple(g.masks[i] for i in keep),
                    g.cards_per_task,
                    g.cpus,
                    g.memory_gib,
                )
            )
        s.stmt.resize(entry, Placement(entry.placement.model, tuple(groups)))
        s.shrunk.add(entry.job.id)
    if s.try_start(job, (flavor,)) is Fit.FIT:
        s.preemptions += 1
        return True
    s.stmt.rollback(cp)
    for d in drop:
        s.shrunk.discard(donors[d].job.id)
    return False


def donors_where(s: Session, flavor: int, eligible: Callable[[Running], bool]) -> list[Running]:
    """:func:`elastic_running` jobs that ``eligible`` admits, cheapest first: lowest rank, most
    recently started, then job id."""
    found = [e for e in elastic_running(s, flavor) if eligible(e)]
    found.sort(key=lambda e: (s.ordering.rank(e.job), -(e.job.start_time or s.now), e.job.id))
    return found
