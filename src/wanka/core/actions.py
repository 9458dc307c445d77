"""The phases of a cycle. Each takes the session and changes it only through its statement."""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial

import numpy as np

from wanka.core.cluster import NodeState
from wanka.core.config import LAS_ORDERS, Action, PreemptScope, QueueOrder
from wanka.core.decisions import Fit, StopReason
from wanka.core.elastic import donors_where, shrink_for, surplus_then_whole
from wanka.core.jobs import Job, JobKind, lost_work_at, lost_work_s
from wanka.core.placement import GroupRequest, domains_around, place_group
from wanka.core.quota import (
    QuotaUsage,
    add_usage,
    available,
    borrowed,
    cohort_side,
    path_up,
    taken_on_paths,
)
from wanka.core.running import Running, write_growing
from wanka.core.session import Session
from wanka.core.state import GroupPlacement, Placement, take_cards
from wanka.core.whatif import MAX_REPRIEVE_TRIALS, TaskTable, shortest_prefix


def recover(s: Session) -> None:
    """Stop (and requeue) every job with a task on a DOWN node: its gang is broken."""
    down = s.cluster.node_state == int(NodeState.DOWN)
    if not down.any():
        return
    for entry in list(s.initial_running):
        if entry.job.id in s.running and any(down[n] for n in entry.placement.node_set()):
            s.stmt.evict(entry, StopReason.NODE_FAILURE)


def admit(s: Session) -> None:
    """Set aside jobs that can never run as submitted, with the reason a person can act on. The
    pending index judged each job once, when it was added."""
    s.admitted = True
    s.unschedulable.update(s.pending_index.rejected)
    s.smallest_need = s.pending_index.smallest_need()


def _fair_share_order(s: Session) -> Iterator[Job]:
    """Interleave queues: always the next job of the queue with the lowest weighted share."""
    queues = s.waiting_by_queue()
    heads: dict[int, Job] = {}
    heap = []
    for q, jobs in queues.items():
        head = next(jobs, None)
        if head is not None:
            heads[q] = head
            heap.append((s.ordering.queue_share(q), s.tree.names[q], q))
    heapq.heapify(heap)
    while heap:
        _, name, q = heapq.heappop(heap)
        yield heads[q]
        head = next(queues[q], None)
        if head is not None:
            heads[q] = head
            heapq.heappush(heap, (s.ordering.queue_share(q), name, q))  # share may have grown


def allocate(s: Session) -> None:
    """Start jobs in policy order. A blocking policy stops at the first job with no room (after
    reserving for it); a non-blocking one skips it and goes on."""
    order = _fair_share_order(s) if s.config.queue_order is QueueOrder.FAIR_SHARE else s.waiting()
    for job in order:
        if max(s.free_by_flavor) < s.smallest_need and len(s.reservations) >= s.config.reserve_depth:
            return  # every job left would be refused for room, and no reservation is left to make
        outcome = s.try_start(job)
        if outcome >= Fit.NO_FIT and outcome is not Fit.FIT:
            if len(s.reservations) < s.config.reserve_depth:
                s.reserve(job)
            if s.config.blocking:
                return


def backfill(s: Session) -> None:
    """EASY backfill: any later job may start now if it does not delay a reserved job — it ends
    (by its time limit) before the reserved start, or it keeps off the reserved nodes."""
    reserved = s.reserved_jobs()
    # Room and quota only shrink during backfill, so a job that could not start rules out every
    # later job that asks for the same thing: a long queue of alike jobs costs one attempt each.
    failed: set[tuple] = set()
    for job in s.waiting_within(max(s.free_by_flavor)):  # jobs needing more are never looked at
        if max(s.free_by_flavor) < s.smallest_need:
            return  # the cluster is full for every job left
        if job.min_cards > max(s.free_by_flavor) or job.id in reserved:
            continue  # the room shrank as earlier jobs started
        key = s.start_key(job)
        if key not in failed and s.try_start(job, backfilled=True) is not Fit.FIT:
            failed.add(key)


class VictimPool:
    """Preemptible jobs that run now, in victim order, cheapest first: lowest rank, borrowed quota
    before nominal, least work lost since the last checkpoint (card-seconds), most recently started,
    then job id. Jobs this cycle started are victims too, from whichever phase started them: they
    lose nothing, they are simply not started, so no job is started in a cycle only to be evicted
    next cycle by a job that was already waiting in it. (Under preemption a later preemptor ranks no
    higher, so only reclaim can take them in practice: a job another reclaim started on its
    organisation's nominal may be borrowing at its queue's level, and a sibling queue is owed it.)
    ``entries[:n_initial]`` are ``Session.initial_running``; later entries are jobs this cycle
    started, added by :meth:`sync`. Arrays are indexed like ``entries``. Built once per cycle."""

    def __init__(self, s: Session):
        self.n_initial = len(s.initial_running)
        self.entries: list[Running] = []
        self.on_loan_to = None
        self._known: set[int] = set()  # id() of the entries added after the initial ones
        self._columns: dict[str, np.ndarray] = {}  # each key column with room to grow
        self._tasks: dict[str, np.ndarray] = {}
        self.table = TaskTable.__new__(TaskTable)
        self._append(s, s.initial_running, s.initial_table, initial=True)
        self.sync(s)

    def sync(self, s: Session) -> None:
        """Add the preemptible jobs this cycle started (or shrank) since the last call, each at its
        place in victim order."""
        new = [s.running[j] for j in sorted(s.started)]
        new = [e for e in new if e.job.preemptible and id(e) not in self._known]
        if new:
            self._known.update(id(e) for e in new)
            self._append(s, new, TaskTable(new), initial=False)

    def _append(self, s: Session, entries: list[Running], table: TaskTable, initial: bool) -> None:
        first, n = len(self.entries), len(entries)
        self.entries += entries
        if initial:  # the running index keeps these as columns
            c = s.initial_columns
            keys = {"flavor": c.flavor, "queue": c.queue, "cards": c.cards, "ids": c.ids}
            keys["preemptible"], start, priority = c.preemptible, c.start, c.priority
            lost = lost_work_at(s.now, c.start, c.saved, c.every, c.origin)
        else:
            jobs = [e.job for e in entries]
            keys = {
                "flavor": np.fromiter((e.flavor for e in entries), dtype=np.int64, count=n),
                "queue": np.fromiter((e.queue for e in entries), dtype=np.int64, count=n),
                "cards": np.fromiter((e.placement.total_cards for e in entries), dtype=np.int64, count=n),
                "ids": np.array([j.id for j in jobs]) if n else np.zeros(0, dtype=str),
                "preemptible": np.fromiter((j.preemptible for j in jobs), dtype=bool, count=n),
            }
            times = (np.nan if j.start_time is None else j.start_time for j in jobs)
            start = np.fromiter(times, dtype=np.float64, count=n)
            priority = np.fromiter((j.priority for j in jobs), dtype=np.int64, count=n)
            lost = lost_work_s(jobs, s.now)
        keys["rank"] = s.ordering.ranks(entries, priority)
        # "started" orders victims (NaN, unknown: now); "since" is when each began its run, for
        # preempt's min-runtime rule: -inf for one started this cycle (evicting it is an
        # un-start: it loses nothing) or at an unknown time
        unknown = np.isnan(start)
        keys["started"] = np.where(unknown, s.now, start)
        keys["since"] = np.where(unknown, -np.inf, start) if initial else np.full(n, -np.inf)
        keys["lost"] = lost * keys["cards"]
        # borrowing as the quota stands when the job enters the pool
        lender = np.zeros((len(s.tree.names), len(s.flavor_ids)), dtype=bool)  # (queue, flavor) borrows
        flavors = len(s.flavor_ids)
        for key in np.unique(keys["queue"] * flavors + keys["flavor"]).tolist():
            q, f = divmod(key, flavors)
            lender[q, f] = borrowed(s.quota, q, s.tree_flavor[f]) > 0
        keys["not_borrowing"] = ~lender[keys["queue"], keys["flavor"]]
        # runs on nodes reserved for this waiting job ("" otherwise): started on loan in an earlier
        # cycle, or in this one (then evicting it is an un-start, as for any job started here)
        loans = s.loans() if initial else {}
        lent = [] if initial else [s.lent.get(e.job.id, "") for e in entries]
        if self.on_loan_to is not None or loans or any(lent):
            holders = np.full(n, "", dtype=object)
            for i, holder in loans.items():
                holders[i] = holder
            if lent:
                holders[:] = lent
            keys["on_loan_to"] = holders
            if self.on_loan_to is None:
                self._grow("on_loan_to", np.full(first, "", dtype=object), 0)
        for name, values in keys.items():
            self._grow(name, values, first)
        self._grow_tasks(table, first)
        if not initial and n <= 8:  # a few jobs reclaim or preempt started: insert, do not re-sort
            for i in range(first, first + n):
                if self.preemptible[i]:
                    at = bisect.bisect_left(self.order, self._key(i), key=self._key)
                    self.order = np.insert(self.order, at, i)
            return
        # the key as arrays, sorted by one lexsort: sorting key tuples cost ~4 ms a cycle at 1,200
        # running jobs, and reclaim or preempt needs the pool in almost every busy cycle
        order = _lexsort_then_ids((-self.started, self.lost, self.not_borrowing, self.rank), self.ids)
        self.order = order[self.preemptible[order]].astype(np.int64)

    def _key(self, i: int) -> tuple:
        """Entry ``i``'s place in victim order as a tuple: the lexsort's keys, most significant
        first (a binary search over ``order`` with it costs O(log pool), not a pass)."""
        return (self.rank[i], self.not_borrowing[i], self.lost[i], -self.started[i], self.ids[i])

    def _grow(self, name: str, values: np.ndarray, first: int) -> None:
        """Write ``values`` at ``first`` of key column ``name``; the attribute becomes a view of
        the filled part."""
        setattr(self, name, write_growing(self._columns, name, values, first))

    def _grow_tasks(self, table: TaskTable, first: int) -> None:
        """Append ``table``'s tasks (entry indices shifted by ``first``) to the pool's task table."""
        start = len(self.table.task_node) if first else 0
        for name in ("task_entry", "task_node", "task_cards", "task_cpus", "task_mem"):
            values = getattr(table, name) + first if name == "task_entry" else getattr(table, name)
            setattr(self.table, name, write_growing(self._tasks, name, values, start))
        self.table.size = len(self.entries)

    def alive(self, s: Session) -> np.ndarray:
        """Which entries still run as the pool holds them (evictions, un-starts and shrinks of jobs
        this cycle started taken out; a shrunk one is in again as it stands now)."""
        alive = s.initial_alive()
        if len(self.entries) > self.n_initial:
            fresh = np.fromiter(
                (s.running.get(e.job.id) is e for e in self.entries[self.n_initial :]),
                dtype=bool,
                count=len(self.entries) - self.n_initial,
            )
            alive = np.concatenate([alive, fresh])
        return alive

    def candidates(self, mask: np.ndarray) -> np.ndarray:
        """Indices where ``mask`` holds, in victim order."""
        return self.order[mask[self.order]]


def _lexsort_then_ids(keys: tuple[np.ndarray, ...], ids: np.ndarray) -> np.ndarray:
    """``np.lexsort((ids, *keys))`` (the last key most significant), with the strings compared only
    where every other key ties: sorting 50,000 job ids costs as much as all the numbers."""
    order = np.lexsort(keys)
    if len(order) < 2:
        return order
    tied = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        column = key[order]
        same = column[1:] == column[:-1]
        if column.dtype.kind == "f":
            same |= np.isnan(column[1:]) & np.isnan(column[:-1])
        tied &= same
    if not tied.any():
        return order
    member = np.zeros(len(order), dtype=bool)  # positions in a run of ties
    member[1:] |= tied
    member[:-1] |= tied
    run = np.cumsum(np.concatenate(([True], ~tied)))  # run number per position
    at = np.flatnonzero(member)
    order[at] = order[at][np.lexsort((ids[order[at]], run[at]))]
    return order


def _preempt_for(
    s: Session,
    job: Job,
    flavor: int,
    pool: VictimPool,
    chosen: np.ndarray,
    reason: StopReason,
    still_eligible: Callable[[Running], bool],
    outranked: Callable[[Job], bool],
) -> bool | None:
    """Evict the cheapest of ``chosen`` (indices into ``pool.entries``) that let ``job`` start; change
    nothing if none would. True: it started; None: not even evicting all of ``chosen`` would make
    room and quota for it; False: it would fit, but could not start after all (a reservation).

    ``chosen`` lists candidate victims in victim order (cheapest first). Fitting is monotone in how
    many of them leave, so a binary search over what-if states finds the shortest prefix after
    which the job fits (room and quota). If even all of them are not enough, nobody is evicted
    ("never preempt for a job that would still not fit"). Then the reprieve (kube-scheduler's and
    Kueue's): each victim of that prefix, most valuable first, is given back if the job still fits
    without it. Of those left only the victims on the nodes the job would use are evicted, plus
    more while quota is still short.
    """
    if len(chosen) == 0:
        return None
    tf = s.tree_flavor[flavor]
    queue = s.queue_index(job)
    need = job.min_cards
    cards, shrunk = _cards_as_they_stand(s, pool, chosen)
    held = np.cumsum(cards)
    if s.free_by_flavor[flavor] + int(held[-1]) < need:
        return None  # not enough cards even if every candidate left: no what-if needed
    table = _tasks_as_they_stand(pool, chosen, shrunk)
    task_pos = table.task_entry
    queues = len(s.tree.names)

    def released(gone: np.ndarray) -> QuotaUsage:
        """The quota as it would stand with the victims where ``gone`` holds gone."""
        cards_of = np.bincount(pool.queue[chosen[gone]], cards[gone], minlength=queues)
        quota = s.quota.copy()
        for q in np.flatnonzero(cards_of):
            add_usage(quota, int(q), tf, -int(cards_of[q]))
        return quota

    def quota_allows(gone: np.ndarray) -> bool:
        """Whether the job's quota would let it start with the victims where ``gone`` holds gone."""
        return available(released(gone), queue, tf) >= need

    def room_without(gone: np.ndarray):
        """Where the job would go on the room the victims where ``gone`` holds leave (quota aside)."""
        return s.fits_hypothetically(job, flavor, table.free_where(s.free, gone[task_pos]), s.usable[flavor])

    def fits_evicting(gone: np.ndarray):
        """Where the job would go with the victims where ``gone`` holds (a mask over ``chosen``)."""
        return room_without(gone) if quota_allows(gone) else None

    def fits_without(k: int):
        gone = np.zeros(len(chosen), dtype=bool)
        gone[:k] = True
        return fits_evicting(gone)

    if fits_without(len(chosen)) is None:
        return None
    # fewer victims than this cannot free enough cards: search up from there
    lower = max(1, min(int(np.searchsorted(held, need - s.free_by_flavor[flavor])) + 1, len(chosen)))
    lo, target = shortest_prefix(fits_without, lower, len(chosen))
    # The reprieve, most valuable victim first. A victim holding more cards than the prefix frees
    # beyond the need (the slack) is needed for the count alone: no what-if. The what-ifs are
    # bounded, so a gang evicting hundreds of small jobs costs a few placements, not hundreds.
    # The quota with the victims gone is kept and changed by one victim at a time.
    gone = np.zeros(len(chosen), dtype=bool)
    gone[:lo] = True
    quota = released(gone)
    slack = s.free_by_flavor[flavor] + int(held[lo - 1]) - need
    trials, target_nodes = 0, target.node_set()
    for r in range(lo - 1, -1, -1):
        held_r = int(cards[r])
        if held_r > slack:
            continue
        if trials == MAX_REPRIEVE_TRIALS:
            break
        trials += 1
        gone[r] = False
        add_usage(quota, int(pool.queue[chosen[r]]), tf, held_r)  # it stays: its cards count again
        if not gone.any() or available(quota, queue, tf) < need:
            found = None
        elif target_nodes.isdisjoint(s.running[pool.entries[chosen[r]].job.id].placement.node_set()):
            found = target  # the job's nodes stay as free: quota decides
        else:
            found = room_without(gone)
        if found is None:
            gone[r] = True
            add_usage(quota, int(pool.queue[chosen[r]]), tf, -held_r)
        else:
            target, slack = found, slack - held_r
            target_nodes = target.node_set()
    # Those on the job's nodes go; of the others only as many as quota still needs, in victim
    # order (a gang's prefix may list thousands of small jobs, so the split is made in numpy)
    evicted = np.flatnonzero(gone)
    touches = np.zeros(len(chosen), dtype=bool)
    touches[task_pos[np.isin(table.task_node, np.fromiter(target_nodes, np.int64, len(target_nodes)))]] = True
    cp = s.stmt.checkpoint()
    for i in chosen[evicted[touches[evicted]]].tolist():
        victim = s.running.get(pool.entries[i].job.id)  # as it stands now (it may have shrunk)
        if victim is not None and still_eligible(victim):
            s.stmt.evict(victim, reason)
    for i in chosen[evicted[~touches[evicted]]].tolist():
        if available(s.quota, queue, tf) >= need:
            break
        victim = s.running.get(pool.entries[i].job.id)
        if victim is not None and still_eligible(victim):
            s.stmt.evict(victim, reason)
    s.outranked = outranked  # a reservation holder it could evict if running holds nothing from it
    try:
        started = s.try_start(job, (flavor,)) is Fit.FIT
    finally:
        s.outranked = None
    if started:
        s.preemptions += 1
        return True
    s.stmt.rollback(cp)
    return False


def _evict_for(
    s: Session,
    job: Job,
    flavor: int,
    pool: VictimPool,
    victims: Callable[[], np.ndarray],
    reason: StopReason,
    still_eligible: Callable[[Running], bool],
    outranked: Callable[[Job], bool],
) -> bool | None:
    """:func:`_preempt_for` over the candidates ``victims()`` returns when called (they may depend
    on what the cycle has changed by then)."""
    return _preempt_for(s, job, flavor, pool, victims(), reason, still_eligible, outranked)


def _as_is(chosen: np.ndarray) -> np.ndarray:
    return chosen


def _cards_as_they_stand(
    s: Session, pool: VictimPool, chosen: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, list[Running]] | None]:
    """The cards ``chosen`` hold now, and which of them shrank since they entered the pool (their
    ranks within ``chosen`` and their entries now; None when none did). An elastic job shrunk
    this cycle holds less than the pool says: a what-if that freed its old placement would promise
    room that eviction cannot give."""
    cards = pool.cards[chosen]
    if not s.shrunk:
        return cards, None
    mask = np.fromiter((pool.entries[i].job.id in s.shrunk for i in chosen.tolist()), bool, len(chosen))
    if not mask.any():
        return cards, None
    ranks = np.flatnonzero(mask)
    now = [s.running[pool.entries[i].job.id] for i in chosen[ranks].tolist()]
    cards = cards.copy()
    cards[ranks] = [e.placement.total_cards for e in now]
    return cards, (ranks, now)


def _tasks_as_they_stand(
    pool: VictimPool, chosen: np.ndarray, shrunk: tuple[np.ndarray, list[Running]] | None
) -> TaskTable:
    """The tasks of ``chosen`` as they stand now, each task's entry its rank within ``chosen``:
    the pool's, with only the shrunk jobs' flattened again."""
    table, _ = pool.table.subset(chosen)
    if shrunk is None:
        return table
    ranks, now = shrunk
    fresh = TaskTable(now)
    keep = ~np.isin(table.task_entry, ranks)  # tasks of the jobs that did not shrink
    out = TaskTable.__new__(TaskTable)
    out.size = table.size
    out.task_entry = np.concatenate([table.task_entry[keep], ranks[fresh.task_entry]])
    for name in ("task_node", "task_cards", "task_cpus", "task_mem"):
        setattr(out, name, np.concatenate([getattr(table, name)[keep], getattr(fresh, name)]))
    return out


def _waiting(s: Session) -> tuple[list[Job], bool]:
    """Jobs still waiting after allocate/backfill, in policy order, at most ``max_preemptors`` of
    them (the bound keeps a cycle's cost flat), and whether more wait beyond them. In a follow-up
    round (``Session.follow_up``), only the jobs that round is for."""
    if s.follow_up is not None:
        return s.waiting_among(s.follow_up), False
    waiting = s.waiting()
    jobs = list(itertools.islice(waiting, s.config.max_preemptors))
    return jobs, next(waiting, None) is not None


def _ask_for_more(s: Session, more: bool, before: int) -> None:
    """When the bound cut the walk short after some job evicted others, ask the caller for another
    cycle at once: a burst of more than ``max_preemptors`` preemptors is served in follow-up rounds,
    not one per event."""
    if more and s.preemptions > before:
        s.more_preemptors = True


def _victims(s: Session) -> VictimPool | None:
    """The session's victim pool (reclaim and preempt share one, built when a waiting job first
    needs it: O(running)), or None when nobody could be evicted."""
    if s.victim_pool is None:
        s.victim_pool = VictimPool(s)
    else:
        s.victim_pool.sync(s)
    return s.victim_pool if len(s.victim_pool.order) else None


def reclaim(s: Session) -> None:
    """A team or organisation below its nominal quota takes back what it lent, at every level of the
    quota tree (Kueue's hierarchical cohorts). For a waiting job in queue q and a running job in
    queue w, with L their lowest common ancestor and c_q, c_w the children of L on each side: the
    running job is a victim when c_q stays within its nominal quota with the waiting job added and
    c_w borrows (holds more than its nominal). Siblings are the case L = their parent; an
    organisation whose queues have no nominal of their own defends its pool against other orgs."""
    jobs, more = _waiting(s)
    before = s.preemptions
    _reclaim_for(s, jobs)
    _ask_for_more(s, more, before)


def _reclaim_for(s: Session, jobs: list[Job]) -> None:
    for job in jobs:
        s.tried.setdefault(job.id, (job, s.changes))  # its first try this cycle
        q = s.queue_index(job)
        # None: it would borrow at every level, nothing is owed to it on that model
        owed_on = {f: _reclaimable_queues(s, q, s.tree_flavor[f], job.min_cards) for f in s.flavors(job)}
        owed_on = {f: owed for f, owed in owed_on.items() if owed is not None}
        if not owed_on:
            continue

        def donors(f: int, job=job, owed_on=owed_on) -> list[Running]:
            tf, (eligible, sides, _, _) = s.tree_flavor[f], owed_on[f]
            return donors_where(
                s,
                f,
                lambda e: (
                    eligible[e.queue]
                    and _path_borrowed(s, e.queue, sides[e.queue], tf) > 0
                    and not _spared(s, job, e)
                ),
            )

        # on every model first: room an earlier eviction freed and left (taking nobody's cards),
        # then the borrowers' elastic surplus; only then anyone stopped whole
        def owes(f: int, owed_on=owed_on) -> Callable[[Job], bool] | None:
            owed = owed_on.get(f)
            return None if owed is None else partial(_owes, s, owed, tf=s.tree_flavor[f])

        if any(_starts_in_room_left(s, job, f, owes(f)) for f in s.flavors(job)) or any(
            shrink_for(s, job, f, donors(f), _reclaim_units(s, s.tree_flavor[f], owed[1]))
            for f, owed in owed_on.items()
        ):
            continue
        for f, owed in owed_on.items():
            tf, sides = s.tree_flavor[f], owed[1]
            pool = _victims(s)
            if pool is None:
                return
            mask = pool.alive(s) & (pool.flavor == f) & owed[0][pool.queue]
            # a job that ran before the cycle only while its side borrows beyond this cycle's starts
            mask[: pool.n_initial] &= owed[3][pool.queue[: pool.n_initial]]
            mask &= ~_spared_starts(s, job, pool)
            chosen = pool.candidates(mask)
            capped = len(_reclaimable_of(s, tf, pool, chosen, sides)) < len(chosen)
            # any of them, each evicted only while its side still borrows (Kueue's rule). Where the
            # search counted on victims that eviction then refused (a side stopped borrowing
            # first), only as many per side as it borrows, taken in victim order: past a side that
            # would stop borrowing, to the next borrower (judged when searched, after any surplus
            # given back)
            started = None
            for victims in (
                (partial(_as_is, chosen), partial(_reclaimable_of, s, tf, pool, chosen, sides))
                if capped
                else (partial(_as_is, chosen),)
            ):
                started = surplus_then_whole(
                    s,
                    job,
                    f,
                    donors(f),
                    _reclaim_units(s, tf, sides),
                    partial(
                        _evict_for,
                        s,
                        job,
                        f,
                        pool,
                        victims,
                        StopReason.RECLAIMED,
                        lambda e, tf=tf, sides=sides: (
                            e.job.id in s.running
                            and _path_borrowed(s, e.queue, sides[e.queue], tf, e.job.id not in s.started) > 0
                        ),
                        lambda holder, tf=tf, owed=owed: _owes(s, owed, holder, tf),
                    ),
                )
                if started is not False:  # started, or not even all of them would make room
                    break
            if started:
                break


def _starts_in_room_left(
    s: Session, job: Job, flavor: int, outranked: Callable[[Job], bool] | None = None
) -> bool:
    """Start ``job`` on ``flavor`` if room an earlier eviction freed (and nobody took) lets it, taking
    nobody's cards; ``outranked``: the reservation holders it could evict were they running (their
    reservations hold nothing against it, as when it evicts). Whether it started; the outcome its
    tries so far recorded (why it waits) stays as it was when it does not."""
    before = s.outcomes.get(job.id)
    s.outranked = outranked
    try:
        started = s.try_start(job, (flavor,)) is Fit.FIT
    finally:
        s.outranked = None
    if started:
        return True
    if before is None:
        s.outcomes.pop(job.id, None)
    else:
        s.outcomes[job.id] = before
    return False


def _on_loan_to(s: Session, entry: Running, job: Job) -> bool:
    """Whether ``entry`` runs on loan on nodes reserved for ``job`` (Start.preemptible_by)."""
    return entry.job.preemptible_by == job.id or s.lent.get(entry.job.id) == job.id


def _spared_starts(s: Session, job: Job, pool: VictimPool, lent: bool = True) -> np.ndarray:
    """A bool per pool entry: a start made before this cycle while ``job`` waited, and lately
    (``preempt_min_runtime_s``): it stands against ``job`` for now (:func:`_spared`). With
    ``lent`` (the job holds its reservation), jobs on loan to it are not spared."""
    window = s.config.preempt_min_runtime_s
    if window <= 0:
        return np.zeros(len(pool.since), dtype=bool)
    lately = (pool.since >= job.submit_time) & (pool.since > s.now - window)
    return lately & (pool.on_loan_to != job.id) if lent else lately


def _spared(s: Session, job: Job, entry: Running) -> bool:
    """Whether ``entry``'s start stands against ``job`` for now: made before this cycle while ``job``
    waited, less than ``preempt_min_runtime_s`` ago, and not on loan to ``job``. The cycles after a
    start see an order and reservations it moved; a job that waited through it must not take it
    back at once for that reason alone (a start this cycle made is simply un-made)."""
    window = s.config.preempt_min_runtime_s
    start = entry.job.start_time
    if window <= 0 or start is None or entry.job.id in s.started or entry.job.preemptible_by == job.id:
        return False
    return start >= job.submit_time and start > s.now - window


def _reclaimable_of(
    s: Session, tf: int, pool: VictimPool, chosen: np.ndarray, sides: list[int]
) -> np.ndarray:
    """Of ``chosen`` (in victim order), only as many per side as it borrows (:func:`_within_borrowing`)."""
    leaf = pool.queue[chosen]
    of = np.array(sides, dtype=np.int64)[leaf]
    cards, _ = _cards_as_they_stand(s, pool, chosen)  # a victim shrunk this cycle gives only what it holds
    return chosen[_within_borrowing(s, tf, leaf, of, cards, chosen < pool.n_initial)]


def _reclaim_units(s: Session, tf: int, sides: list[int]):
    """The surplus tasks reclaim may take back: per side, only as much as it borrows
    (:func:`_within_borrowing`), so shrinking takes no side below its nominal either."""

    def allowed(donors: list[Running], of: np.ndarray, cards: np.ndarray) -> np.ndarray:
        leaf = np.array([d.queue for d in donors], dtype=np.int64)[of]
        side = np.array([sides[d.queue] for d in donors], dtype=np.int64)[of]
        old = np.array([d.job.id not in s.started for d in donors], dtype=bool)[of]
        return _within_borrowing(s, tf, leaf, side, cards, old)

    return allowed


def _owes(s: Session, owed: tuple[np.ndarray, list[int], np.ndarray], holder: Job, tf: int) -> bool:
    """Would ``holder`` be a reclaim victim were it running on flavor ``tf`` (``owed`` from
    :func:`_reclaimable_queues`)? Its side of the tree would borrow with it."""
    w = s.queue_index(holder)
    if w < 0 or not owed[2][w] or not holder.preemptible:
        return False
    return _path_would_borrow(s, holder, w, owed[1][w], tf, wholly=False)


def _may_take(s: Session, scope: PreemptScope, q: int, need: int, holder: Job, tf: int) -> bool:
    """Could a waiting job of queue ``q`` needing ``need`` cards preempt ``holder`` (of lower rank)
    were it running on flavor ``tf``, at its reserved start? Under the cohort scope: only if the
    holder's side of the tree would then borrow all it holds (:func:`_within_borrowed`), or at all
    where the job's own side is owed what it borrows (reclaim's rule: a reservation does not defend
    borrowed quota against its owner)."""
    w = s.queue_index(holder)
    if not holder.preemptible:
        return False
    if scope is PreemptScope.CLUSTER or w == q:
        return True
    if scope is not PreemptScope.COHORT or q < 0 or w < 0:
        return False
    mine = cohort_side(s.tree, w, q)
    owed = s.quota.total[mine][tf] + need <= s.tree.nominal[mine][tf]
    return _path_would_borrow(s, holder, w, cohort_side(s.tree, q, w), tf, wholly=not owed)


def _reclaimable_queues(
    s: Session, q: int, tf: int, need: int
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray] | None:
    """Which queues' running jobs a job of ``need`` cards in queue ``q`` may reclaim from (a bool
    per tree node), for each queue the node on its side below the lowest common ancestor (c_w)
    whose borrowing makes it a victim, whether q's side there (c_q) stays within its nominal (so
    c_w's jobs would be victims whenever c_w borrows), and which queues' jobs that ran before this
    cycle are victims too; None when no queue's jobs are victims.

    What c_w borrows is charged first to the jobs this cycle started on its side: they give it back
    at no cost (they simply do not start). A job that ran before the cycle is a victim only while
    c_w borrows beyond them, so a job started in one cycle is never reclaimed in the next for a job
    that was waiting then, only because this cycle started others beside it."""
    if need <= 0:  # a job asking no cards of the model is owed none: nothing to take back for it
        return None
    tree, quota = s.tree, s.quota
    path = []  # q and its ancestors below the root, with whether each stays within nominal
    node = q
    while tree.parent[node] >= 0:
        path.append((node, quota.total[node][tf] + need <= tree.nominal[node][tf]))
        node = tree.parent[node]
    if not any(ok for _, ok in path):
        return None
    within = dict(path)  # node on q's path -> the job keeps it within its nominal
    eligible = np.zeros(len(tree.names), dtype=bool)
    owed = np.zeros(len(tree.names), dtype=bool)
    old = np.zeros(len(tree.names), dtype=bool)
    side = [-1] * len(tree.names)
    for w in tree.leaves:
        child, node = w, tree.parent[w]  # climb from w until we meet q's path: that is L
        if w in within:
            continue  # q itself
        while node >= 0 and node not in within and tree.parent[node] >= 0:
            child, node = node, tree.parent[node]
        # node is L (on q's path, or the root); child is c_w; c_q is q's path node just below L
        below = [n for n, _ in path]
        c_q = below[below.index(node) - 1] if node in within else below[-1]
        side[w] = child
        owed[w] = within[c_q]
        eligible[w] = within[c_q] and _path_borrowed(s, w, child, tf) > 0
        old[w] = eligible[w] and _path_borrowed(s, w, child, tf, before=True) > 0
    return (eligible, side, owed, old) if eligible.any() else None


def _path_borrowed(s: Session, w: int, top: int, tf: int, before: bool = False) -> int:
    """The least any node from queue ``w`` up to ``top`` (its side) borrows (``before``: beyond
    the jobs this cycle started): what may be taken from ``w`` without taking any of them below
    its nominal. An organisation borrowing does not make a queue within its own nominal a victim."""
    return min(
        _borrowed_before(s, n, tf) if before else borrowed(s.quota, n, tf) for n in path_up(s.tree, w, top)
    )


def _path_would_borrow(s: Session, holder: Job, w: int, top: int, tf: int, wholly: bool) -> bool:
    """Would every node from queue ``w`` up to ``top`` borrow with ``holder`` (waiting in ``w``,
    reserved) running, as the quota will stand at its reserved start? ``wholly``: borrow at least
    all it holds, as :func:`taken_on_paths` takes a victim (cohort preemption); else borrow at all,
    as reclaim's fallback takes one while its side still borrows."""
    hold = next((h for h in s.reserved_quota if h.reservation.job_id == holder.id), None)
    total, nominal, cards = (
        (s.quota if hold is None else hold.at_start).total,
        s.tree.nominal,
        holder.min_cards,
    )
    least = cards if wholly else 1  # what each node must borrow with it running
    return all(total[n][tf] + cards - nominal[n][tf] >= least for n in path_up(s.tree, w, top))


def _borrowed_before(s: Session, node: int, tf: int) -> int:
    """Cards the subtree at ``node`` borrows beyond those it holds for jobs this cycle started."""
    return int(s.quota.total[node][tf] - s.fresh_total[node, tf] - s.tree.nominal[node][tf])


def preempt(s: Session) -> None:
    """A waiting job evicts strictly lower-ranked preemptible jobs (same queue, or any queue)."""
    scope = s.config.preempt_scope
    static_rank = s.config.job_order not in LAS_ORDERS  # the rank is the priority
    # (queue, model, shape) -> the highest rank for which no set of victims made room. A job of
    # the same shape in the same queue with no higher rank has only fewer victims to choose from, so
    # it cannot fit either while nothing changes; an eviction changes the state and clears this.
    hopeless: dict[tuple, float] = {}
    jobs, more = _waiting(s)
    before = s.preemptions
    # highest rank first (stable: policy order among equals), so no preemptor started here ranks
    # below a later one, which could evict it next cycle (Slurm's multifactor order is not its rank)
    jobs.sort(key=lambda j: -s.ordering.rank(j))
    lenders = set(s.loans().values()) | set(s.lent.values())
    _preempt_for_each(s, jobs, scope, static_rank, hopeless, lenders)
    _ask_for_more(s, more, before)


def _in_scope(s: Session, scope: PreemptScope, q: int, entry: Running) -> bool:
    """May a waiting job of queue ``q`` take from ``entry`` (given the rank allows it)? Under the
    cohort scope, only while ``entry``'s side of the tree borrows (see :func:`_within_borrowed`)."""
    if scope is PreemptScope.CLUSTER or entry.queue == q:
        return True
    if scope is not PreemptScope.COHORT or q < 0:
        return False
    side = cohort_side(s.tree, q, entry.queue)
    return _path_borrowed(s, entry.queue, side, s.tree_flavor[entry.flavor]) > 0


def _within_borrowed(s: Session, q: int, tf: int, pool: VictimPool, chosen: np.ndarray) -> np.ndarray:
    """Of ``chosen`` (in victim order), those of queue ``q`` and, from other queues, only as many as
    their side of the tree (below the lowest common ancestor with ``q``) holds beyond its nominal
    quota: however many of them go, no side is taken below its nominal (Kueue's cohort rule, judged
    at every level, so an organisation's pooled nominal is defended too). Within a side, victims
    are taken in victim order while they fit in what it borrows, each one that does not is passed."""
    queues = pool.queue[chosen]
    keep = queues == q
    nodes = len(s.tree.names)
    # victims come from few queues: map each queue to its side once, then judge whole sides in
    # numpy (one last slot, index -1, stands for q's own queue and sides that borrow nothing)
    side_of = np.full(nodes + 1, -1, dtype=np.int64)
    for w in np.flatnonzero(np.bincount(queues[~keep], minlength=nodes)).tolist():
        side_of[w] = cohort_side(s.tree, q, w) if q >= 0 else w
    cards, _ = _cards_as_they_stand(s, pool, chosen)  # a victim shrunk this cycle gives only what it holds
    # what a side borrows is charged to the jobs this cycle started before the jobs that ran
    # before them (as reclaim charges it): those are victims too, as un-starts
    keep |= _within_borrowing(s, tf, queues, side_of[queues], cards, chosen < pool.n_initial)
    return chosen[keep]


def _within_borrowing(
    s: Session, tf: int, leaf: np.ndarray, of: np.ndarray, cards: np.ndarray, old: np.ndarray
) -> np.ndarray:
    """:func:`taken_on_paths` with the victims (or surplus tasks) of jobs that ran before the cycle
    (``old``) judged against what each node borrows beyond this cycle's starts
    (:func:`_borrowed_before`), the others against all it borrows: however many go, no side is
    taken below its nominal at any level (one past that is passed, and the next tried, as Kueue
    skips a candidate whose queue no longer borrows)."""
    taken = np.zeros(len(of), dtype=bool)
    before, now = (lambda n: _borrowed_before(s, n, tf)), (lambda n: borrowed(s.quota, n, tf))
    for which, left_of in ((old, before), (~old, now)):
        if which.any():
            taken[which] = taken_on_paths(s.tree, leaf[which], of[which], cards[which], left_of)
    return taken


def _cohort_units(s: Session, q: int, tf: int):
    """Under the cohort scope, the surplus tasks a preemptor of queue ``q`` may take: all of its own
    queue's, and from another queue only as many as its side of the tree borrows (as whole victims,
    :func:`_within_borrowed`): shrinking takes no side below its nominal either."""

    def allowed(donors: list[Running], of: np.ndarray, cards: np.ndarray) -> np.ndarray:
        leaf = np.array([d.queue for d in donors], dtype=np.int64)[of]
        sides = np.array(
            [-1 if d.queue == q else cohort_side(s.tree, q, d.queue) if q >= 0 else d.queue for d in donors],
            dtype=np.int64,
        )[of]
        old = np.array([d.job.id not in s.started for d in donors], dtype=bool)[of]
        return (sides < 0) | _within_borrowing(s, tf, leaf, sides, cards, old)

    return allowed


def _preempt_for_each(
    s: Session, jobs: list[Job], scope: PreemptScope, static_rank: bool, hopeless: dict, lenders: set
) -> None:
    scope_queue = scope is PreemptScope.QUEUE
    # (flavor, queue or None) -> the highest rank that could not start there this cycle. A job of
    # lower rank neither shrinks nor evicts there: what it frees might have let the higher one in,
    # which would then evict it next cycle (each preemptor's what-ifs see only its own victims).
    # One short of its own quota is held under its organisation's key instead: only what is freed
    # inside its organisation could give it quota
    unserved: dict[tuple, float] = {}
    organisation = s.tree.ancestor[min(1, len(s.tree.ancestor) - 1)]

    def held_back(f: int, q: int) -> float:
        return max(
            unserved.get((f, q if scope_queue else None), -np.inf),
            unserved.get((f, "org", int(organisation[q])), -np.inf),
        )

    for job in jobs:
        s.tried.setdefault(job.id, (job, s.changes))  # its first try this cycle
        rank = s.ordering.rank(job)
        q = s.queue_index(job)

        # jobs run on loan on its reserved nodes: it may evict them while it holds the reservation
        lent = job.id in lenders and any(r.job_id == job.id for r in s.reservations)

        # a waiting job's minimum outranks a running job's surplus of no higher rank (and any job's
        # on loan to it, which it could stop whole): shrink first
        def donors(f: int, r=rank, q=q, job=job, lent=lent) -> list[Running]:
            return donors_where(
                s,
                f,
                lambda e: (
                    (s.ordering.rank(e.job) <= r and _in_scope(s, scope, q, e) and not _spared(s, job, e))
                    or (lent and _on_loan_to(s, e, job))
                ),
            )

        def allowed(f: int, q=q):
            return None if scope is not PreemptScope.COHORT else _cohort_units(s, q, s.tree_flavor[f])

        open_to = [f for f in s.flavors(job) if held_back(f, q) <= rank]

        # room an earlier preemptor freed and left, on every model (it needs nobody's cards), then
        # surplus on every model
        def outranks(f: int, q=q, r=rank, need=job.min_cards) -> Callable[[Job], bool]:
            # a reservation holder it could evict were it running holds nothing from it, as when
            # it evicts: room held only for such a one is room
            tf = s.tree_flavor[f]
            return lambda holder: s.ordering.rank(holder) < r and _may_take(s, scope, q, need, holder, tf)

        if any(_starts_in_room_left(s, job, f, outranks(f)) for f in open_to) or any(
            shrink_for(s, job, f, donors(f), allowed(f)) for f in open_to
        ):
            hopeless.clear()
            continue
        for f in s.flavors(job):  # until it starts below, it is unserved on every flavor
            if available(s.quota, q, s.tree_flavor[f]) < job.min_cards:
                key = (f, "org", int(organisation[q]))
            else:
                key = (f, q if scope_queue else None)
            unserved[key] = max(rank, unserved.get(key, -np.inf))
        if static_rank and not lent and rank <= s.lowest_preemptible_priority(q if scope_queue else None):
            continue  # nobody it may evict was running when the cycle began
        pool = _victims(s)
        if pool is None:
            return
        for f in s.flavors(job):
            key = (q, f, job.groups, job.kind)
            if not lent and hopeless.get(key, -np.inf) >= rank:
                continue
            if not lent and held_back(f, q) > rank:
                continue  # a higher rank went unserved here: what this one frees could be its room
            mask = pool.alive(s) & (pool.flavor == f)
            if lent:  # on loan to it: whatever their rank
                mask &= (pool.rank < rank) | (pool.on_loan_to == job.id)
            else:
                mask &= pool.rank < rank
            by_time = _spared_starts(s, job, pool, lent)  # started while it waited, and lately
            spared = bool((mask & by_time).any())
            mask &= ~by_time
            if scope is PreemptScope.QUEUE:
                mask &= pool.queue == q
            chosen = pool.candidates(mask)
            # under the cohort scope, only what each side borrows, judged when the victims are
            # searched (after the surplus given back first, a side borrows less)
            victims = (
                partial(_within_borrowed, s, q, s.tree_flavor[f], pool, chosen)
                if scope is PreemptScope.COHORT
                else partial(_as_is, chosen)
            )
            outcome = surplus_then_whole(
                s,
                job,
                f,
                donors(f),
                allowed(f),
                partial(
                    _evict_for,
                    s,
                    job,
                    f,
                    pool,
                    victims,
                    StopReason.PREEMPTED,
                    lambda e: e.job.id in s.running,
                    outranks(f),
                ),
            )
            if outcome:
                hopeless.clear()
                for g in s.flavors(job):  # served after all: it holds nobody back
                    for key in ((g, q if scope_queue else None), (g, "org", int(organisation[q]))):
                        if unserved.get(key) == rank:
                            del unserved[key]
                break
            if outcome is None and not lent and not spared:  # (spared: its own victims were fewer)
                hopeless[key] = max(rank, hopeless.get(key, -np.inf))


def resize(s: Session) -> None:
    """Grow elastic jobs toward their full size with cards nobody else is waiting for: idle,
    unreserved, within quota, and never on quota a waiting job could reclaim next cycle."""
    # the jobs reclaim tries (the head of the queue): a growth that makes its side borrow where one
    # of them is owed would be taken back the next cycle by a job that waited through it
    if s.more_preemptors:
        return  # jobs past the preemptor bound come next, at once: they may need these cards
    reclaimers = _waiting(s)[0] if Action.RECLAIM in s.config.actions else []
    for entry in s.initial_elastic:
        job = entry.job
        if job.id not in s.running or job.id in s.shrunk:
            continue  # gone, or it just gave its surplus to a waiting job
        entry = s.running[job.id]
        f = entry.flavor
        usable = s.usable[f]
        if f in s.reserved_nodes:
            usable = usable & ~s.reserved_nodes[f]
        for gi, spec in enumerate(job.groups):
            have = entry.placement.groups[gi]
            extra = spec.replicas - have.replicas
            if spec.cards:
                tf = s.tree_flavor[f]
                room = min(available(s.quota, entry.queue, tf), _unowed_room(s, entry.queue, f, reclaimers))
                extra = min(extra, room // spec.cards)
            # nor onto quota a reservation counts on at its start (a growth is a start of its tasks)
            while extra > 0 and s.reserved_quota and s.takes_reserved_quota(job, f, extra * spec.cards):
                extra -= 1
            if extra <= 0:
                continue
            # grown as it was placed: an inference job's replicas one per node, tasks_per_node kept
            req = GroupRequest(
                spec.role,
                extra,
                1,
                spec.cards,
                spec.cpus,
                spec.memory_gib,
                job.kind is JobKind.INFERENCE,
                spec.tasks_per_node or 0,
            )
            already = (
                np.bincount(have.nodes, minlength=len(s.free.cards)) if req.spread or req.per_node else None
            )
            # the whole growth in the tightest domain the job already runs in that holds it (the
            # job chose its domain whole), else as much as fits anywhere; an inference group's
            # replicas spread over as many domains as they can, never narrowed
            held = [n for g in entry.placement.groups for n in g.nodes]
            domains = [] if req.spread or not held else list(domains_around(s.cluster, held))[:-1]
            nodes = None
            for lo, hi in domains:
                within = np.zeros_like(usable)
                within[lo:hi] = usable[lo:hi]
                nodes = place_group(
                    s.cluster, s.free, within, replace(req, min_replicas=extra), s.config.placement, already
                )
                if nodes:
                    break
            if not nodes:
                nodes = place_group(s.cluster, s.free, usable, req, s.config.placement, already)
            if not nodes:
                continue
            masks, taken = [], {}
            for node in nodes:  # several new tasks may share a node: give each its own cards
                mask = take_cards(
                    s.free.masks[node] & ~taken.get(node, 0), spec.cards, int(s.cluster.node_cards[node])
                )
                taken[node] = taken.get(node, 0) | mask
                masks.append(mask)
            grown = GroupPlacement(
                have.role,
                have.nodes + tuple(nodes),
                have.masks + tuple(masks),
                have.cards_per_task,
                have.cpus,
                have.memory_gib,
            )
            groups = (*entry.placement.groups[:gi], grown, *entry.placement.groups[gi + 1 :])
            s.stmt.resize(entry, Placement(entry.placement.model, groups))
            entry = s.running[job.id]


def _unowed_room(s: Session, q: int, f: int, waiting: list[Job]) -> int:
    """Cards of model ``f`` queue ``q`` may take without making it a reclaim victim of any of
    ``waiting`` that is owed (its own side would stay within nominal with it added): some node from
    q up to its side stays within its nominal. Reclaim's victim rule (:func:`_reclaimable_queues`,
    :func:`_path_borrowed`) turned around. Large when none is owed."""
    tree, total, tf = s.tree, s.quota.total, s.tree_flavor[f]
    room = 1 << 62
    for job in waiting:
        w = s.queue_index(job)
        if w < 0 or w == q or f not in s.flavors(job):
            continue
        mine, theirs = cohort_side(tree, w, q), cohort_side(tree, q, w)
        if total[theirs][tf] + job.min_cards <= tree.nominal[theirs][tf]:
            # reclaim takes from q only while every node up to its side borrows: growing within
            # any one of them is safe
            within = max(tree.nominal[n][tf] - total[n][tf] for n in path_up(tree, q, mine))
            room = min(room, max(0, within))
    return room


ACTIONS: dict[Action, Callable[[Session], None]] = {
    Action.RECOVER: recover,
    Action.ADMIT: admit,
    Action.ALLOCATE: allocate,
    Action.BACKFILL: backfill,
    Action.RECLAIM: reclaim,
    Action.PREEMPT: preempt,
    Action.RESIZE: resize,
}
