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
from wanka.core.whatif import MAX_REPRIEVE_TRIALS, shortest_prefix


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


#: Which surplus tasks may be given back: (donors, each task's donor, each task's cards) -> a bool
#: mask over the tasks (in order: cheapest donor first, a donor's newest tasks first).
UnitFilter = Callable[[list[Running], np.ndarray, np.ndarray], np.ndarray]


def surplus_units(donors: list[Running], allowed: UnitFilter | None = None) -> list[tuple[int, int, int]]:
    """The surplus tasks of ``donors`` that ``allowed`` lets go, as (donor, group, task position), in
    the order they are given back: cheapest donor first, a donor's newest tasks first."""
    units = []
    for d, entry in enumerate(donors):
        for gi, (spec, g) in enumerate(zip(entry.job.groups, entry.placement.groups, strict=True)):
            units.extend((d, gi, pos) for pos in range(len(g.nodes) - 1, spec.gang_min - 1, -1))
    if allowed is not None and units:
        each = np.array([donors[d].placement.groups[gi].cards_per_task for d, gi, _ in units], dtype=np.int64)
        ok = allowed(donors, np.array([d for d, _, _ in units], dtype=np.int64), each)
        units = [units[i] for i in np.flatnonzero(ok).tolist()]
    return units


def give_back(s: Session, donors: list[Running], units: list[tuple[int, int, int]]) -> list[str]:
    """Shrink ``donors`` by ``units`` (from :func:`surplus_units`) through the statement; the ids of
    the jobs shrunk (each also marked in ``Session.shrunk``)."""
    drop: dict[int, dict[int, set[int]]] = {}
    for d, gi, pos in units:
        drop.setdefault(d, {}).setdefault(gi, set()).add(pos)
    shrunk = []
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
        if entry.job.id not in s.shrunk:
            s.shrunk.add(entry.job.id)
            shrunk.append(entry.job.id)
    return shrunk


def shrink_for(
    s: Session, job: Job, flavor: int, donors: list[Running], allowed: UnitFilter | None = None
) -> bool:
    """Shrink ``donors`` (cheapest first) toward their minimums just enough for ``job`` to start on
    ``flavor``, and start it. True if it started; nothing changes otherwise. ``allowed`` narrows
    the surplus tasks that may go (e.g. no more from a queue's side than it borrows).

    Each surplus task is one unit (a job's newest tasks go first); fitting is monotone in how many
    units are given back, so a binary search over what-if states finds the fewest. Then the
    reprieve: a donor whose tasks the job does not need after all (its surplus was on nodes the
    job cannot use) is not shrunk."""
    units = surplus_units(donors, allowed)
    if not units:
        return False
    group = [donors[d].placement.groups[gi] for d, gi, _ in units]
    cards = np.array([g.cards_per_task for g in group], dtype=np.int64)
    node = np.array([donors[d].placement.groups[gi].nodes[pos] for d, gi, pos in units], dtype=np.int64)
    cpus = np.array([g.cpus for g in group], dtype=np.int64)
    mem = np.array([g.memory_gib for g in group], dtype=np.int64)
    queue_of = np.array([donors[d].queue for d, _, _ in units], dtype=np.int64)
    donor_of = np.array([d for d, _, _ in units], dtype=np.int64)
    tf = s.tree_flavor[flavor]
    q = s.queue_index(job)
    n = len(s.free.cards)

    def quota_allows(gone: np.ndarray) -> bool:
        """Whether the job's quota would let it start with the units where ``gone`` holds given back."""
        quota = s.quota.copy()
        released = np.bincount(queue_of[gone], cards[gone], minlength=len(s.tree.names))
        for qq in np.flatnonzero(released):
            add_usage(quota, int(qq), tf, -int(released[qq]))
        return available(quota, q, tf) >= job.min_cards

    def fits_giving(gone: np.ndarray):
        """Where the job would go with the units where ``gone`` holds given back (None: nowhere)."""
        if not quota_allows(gone):
            return None
        at = node[gone]
        free = FreeArrays(
            s.free.cards + np.bincount(at, cards[gone], minlength=n).astype(np.int32),
            s.free.cpus + np.bincount(at, cpus[gone], minlength=n).astype(np.int32),
            s.free.memory + np.bincount(at, mem[gone], minlength=n).astype(np.int32),
            None,
        )
        return s.fits_hypothetically(job, flavor, free, s.usable[flavor])

    position = np.arange(len(units))
    if fits_giving(position >= 0) is None:
        return False
    k, _ = shortest_prefix(lambda k: fits_giving(position < k), 1, len(units))
    # the reprieve, as for whole victims (actions._preempt_for): a donor of that prefix, most
    # valuable first, keeps its tasks if the job still fits without them
    gone = position < k
    for d in np.unique(donor_of[gone])[::-1][:MAX_REPRIEVE_TRIALS].tolist():
        kept = gone & (donor_of != d)
        if kept.any() and fits_giving(kept) is not None:
            gone = kept
    # of those, only the tasks on the nodes the job will use, plus more in order while its quota is
    # short (as for whole victims): a task given back elsewhere would only sit idle
    target = fits_giving(gone)
    needed = gone & np.isin(node, np.fromiter(target.node_set(), np.int64))
    for i in np.flatnonzero(gone & ~needed).tolist():
        if quota_allows(needed):
            break
        needed[i] = True
    if needed.any() and fits_giving(needed) is not None:
        gone = needed
    # and task by task, most valuable first: the what-if may have put the job's minimum on a task
    # given back where room already free would do (its placement saw every unit gone)
    if gone.sum() > 1:
        for i in np.flatnonzero(gone)[::-1][:MAX_REPRIEVE_TRIALS].tolist():
            kept = gone.copy()
            kept[i] = False
            if fits_giving(kept) is not None:
                gone = kept
    cp = s.stmt.checkpoint()
    shrunk = give_back(s, donors, [units[i] for i in np.flatnonzero(gone).tolist()])
    if s.try_start(job, (flavor,)) is Fit.FIT:
        s.preemptions += 1
        return True
    s.stmt.rollback(cp)
    s.shrunk.difference_update(shrunk)
    return False


def surplus_then_whole(
    s: Session,
    job: Job,
    flavor: int,
    donors: list[Running],
    allowed: UnitFilter | None,
    evict: Callable[[], bool | None],
) -> bool | None:
    """Start ``job`` by evicting whole victims (``evict``: a victim search that starts the job, as
    :func:`wanka.core.actions._preempt_for`) only for what the donors' whole surplus leaves short,
    then shrinking them just enough: "surplus before anything whole" when the surplus alone is not
    enough (Volcano: tasks above ``minAvailable`` go first). ``evict``'s outcome; with no surplus to
    give, plain ``evict``.

    The search runs with every allowed surplus task given back, so it picks the fewest whole
    victims; those are then evicted from the state as it was, and :func:`shrink_for` takes only the
    surplus still needed (reprieve included). Where that cannot start the job after all (the victim
    search may take a reservation's nodes; a shrink does not), the search's own result stands.
    Where no victims start it with the surplus given back, the plain search decides: a side that
    gives back surplus the job cannot use borrows less, and must not lose its whole victims for
    that."""
    units = surplus_units(donors, allowed)
    if not units:
        return evict()
    cp, counted, broken = s.stmt.checkpoint(), s.preemptions, set(s.broken)

    def undo(shrunk: list[str]) -> None:
        s.stmt.rollback(cp)
        s.shrunk.difference_update(shrunk)
        s.preemptions = counted
        s.broken.intersection_update(broken)  # reservations a start undone here broke hold again

    shrunk = give_back(s, donors, units)
    outcome = evict()
    if not outcome:
        # the surplus given back made its sides borrow less, and so took whole victims out of
        # scope that the job needs where that surplus is no use to it (on nodes it cannot use):
        # the search again, on the state as it was, but stopping no donor whole (its minimum may
        # be all the job would need of it: "surplus before anything whole")
        undo(shrunk)  # the state as it was at cp again
        again = evict()
        whole = {d.job.id for d in donors}
        if again and any(entry.job.id in whole for entry, _ in s.stmt.evictions_since(cp)):
            undo([])
            again = None
        return again if again or again is False else outcome
    victims = s.stmt.evictions_since(cp)
    undo(shrunk)
    for entry, reason in victims:
        s.stmt.evict(s.running[entry.job.id], reason)
    if s.try_start(job, (flavor,)) is Fit.FIT:  # those victims were enough without any surplus
        s.preemptions += 1
        return True
    if shrink_for(s, job, flavor, [d for d in donors if s.running.get(d.job.id) is d], allowed):
        return True
    undo([])
    shrunk = give_back(s, donors, units)
    outcome = evict()
    if not outcome:
        undo(shrunk)
    else:  # every allowed surplus was given: take back at once what the job did not use (of
        # every donor, one an earlier job shrank included: only cards that stayed free come back)
        s.stmt.keep_idle_shrinks(d.job.id for d in donors)
    return outcome


def _started(job: Job, now: float) -> float:
    """When ``job`` started; ``now`` when unknown (a start at t=0 is a start)."""
    return now if job.start_time is None else job.start_time


def donors_where(s: Session, flavor: int, eligible: Callable[[Running], bool]) -> list[Running]:
    """:func:`elastic_running` jobs that ``eligible`` admits, cheapest first: lowest rank, most
    recently started, then job id."""
    found = [e for e in elastic_running(s, flavor) if eligible(e)]
    found.sort(key=lambda e: (s.ordering.rank(e.job), -_started(e.job, s.now), e.job.id))
    return found
