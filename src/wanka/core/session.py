"""A session: the working copy one cycle decides on, and the statement that records its changes.

Actions never touch the snapshot. Every tentative change (start, evict, resize) goes through the
:class:`Statement`, which can roll back to a checkpoint; only :meth:`Statement.commit` turns the
surviving changes into decisions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from wanka.core.cluster import NodeState
from wanka.core.config import CycleConfig, JobOrder, PreemptScope
from wanka.core.decisions import Decision, Fit, Reservation, Resize, Snapshot, Start, Stop, StopReason
from wanka.core.feasibility import resolve_flavors
from wanka.core.jobs import Job, JobKind
from wanka.core.ordering import Ordering
from wanka.core.pending import PendingIndex
from wanka.core.placement import FreeArrays, GroupRequest, place_gang
from wanka.core.quota import QuotaUsage, add_usage, available, cohort_side
from wanka.core.running import Running, RunningColumns, RunningIndex, expected_end
from wanka.core.state import Placement
from wanka.core.whatif import TaskTable, shortest_prefix

_REPRIEVABLE = (StopReason.PREEMPTED, StopReason.RECLAIMED)  # not a node failure: that node is gone


def _sooner(start: float | None, than: float | None) -> bool:
    """Whether a reservation at ``start`` comes before one at ``than`` (None, unknown: last)."""
    return start is not None and (than is None or start < than)


@dataclass(slots=True)
class QuotaHold:
    """The quota a reservation counts on at its start. ``at_start`` is the quota as it will stand
    then, kept up to date as jobs start, stop and resize (:meth:`Session._account`); ``gone`` the
    jobs that will not hold any of it then (due to end by then, or on loan to the reserved job)."""

    reservation: Reservation
    start: float  # inf when unknown
    queue: int  # the reserved job's queue
    flavor: int  # tree flavor
    need: int  # cards the reserved job needs
    at_start: QuotaUsage
    gone: set[str]


class Statement:
    """Undo log over the session. ``checkpoint()`` / ``rollback(cp)`` / ``commit()``."""

    def __init__(self, session: Session):
        self._s = session
        self._ops: list[tuple] = []

    def checkpoint(self) -> int:
        return len(self._ops)

    def rollback(self, checkpoint: int) -> None:
        while len(self._ops) > checkpoint:
            op = self._ops.pop()
            kind = op[0]
            if kind == "start":
                self._s._give(self._s.running[op[1].job.id])
            elif kind == "evict":
                self._s.changes -= 1
                self._s.unstarted.pop(op[1].job.id, None)
                self._s._take(op[1])
            elif kind == "resize":
                self._s.changes -= 1
                self._s._give(op[2])
                self._s._take(op[1])

    def evictions_since(self, checkpoint: int) -> list[tuple[Running, StopReason]]:
        """The evictions made after ``checkpoint``: (the entry as it was then, the reason)."""
        return [(op[1], op[2]) for op in self._ops[checkpoint:] if op[0] == "evict"]

    def start(
        self,
        job: Job,
        placement: Placement,
        flavor: int,
        queue: int,
        backfilled: bool,
        preemptible_by: str | None = None,
    ) -> None:
        entry = Running(job, placement, flavor, queue, self._s.expected_end(job))
        self._s._not_at_reserved_starts(entry, preemptible_by)
        self._s._take(entry)
        self._ops.append(("start", entry, backfilled, preemptible_by))
        if preemptible_by is not None:
            self._s.lent[job.id] = preemptible_by

    def evict(self, entry: Running, reason: StopReason) -> None:
        if entry.job.id in self._s.started:  # this cycle started it: it simply waits again
            self._s.unstarted[entry.job.id] = entry.job
        self._s.changes += 1
        self._s._give(entry)
        self._ops.append(("evict", entry, reason))

    def resize(self, entry: Running, placement: Placement) -> None:
        grown = Running(entry.job, placement, entry.flavor, entry.queue, entry.end)
        self._s.changes += 1
        self._s._give(entry)
        self._s._take(grown)
        self._ops.append(("resize", entry, grown))

    def keep_idle_victims(self) -> None:
        """Take back every stop (by reclaim or preempt) of a job that was running when the cycle
        began whose cards are all still free and whose queue could start it there again by quota:
        it was stopped for nothing (the job it made room for was un-started later, or took other
        cards), so it keeps running. The final reprieve: run after the last evicting action, before
        resize could grow an elastic job into such cards (and again before commit)."""
        s, kept = self._s, []
        for op in self._ops:
            if (
                op[0] == "evict"
                and op[2] in _REPRIEVABLE
                and op[1].job.id in s.evicted
                and s._fits_back(op[1])
            ):
                s._take(op[1])
                self._s.changes -= 1
                continue
            if op[0] == "resize":
                op = self._shrink_taken_back(op)
                if op is None:
                    continue
            kept.append(op)
        self._ops = kept

    def keep_idle_shrinks(self, job_ids: Iterable[str]) -> None:
        """:meth:`keep_idle_victims` for the shrinks of ``job_ids`` only: right after a job took
        what it needed, before any other may start in the cards the others gave back."""
        ids = set(job_ids)
        kept = []
        for op in self._ops:
            if op[0] == "resize" and op[1].job.id in ids:
                op = self._shrink_taken_back(op)
                if op is None:
                    continue
            kept.append(op)
        self._ops = kept

    def _shrink_taken_back(self, op: tuple) -> tuple | None:
        """A resize op with the tasks of a shrink whose cards stayed free taken back: the op as it
        now stands, None when the job is whole again (or the op as it was)."""
        s = self._s
        if s.running.get(op[1].job.id) is not op[2]:
            return op
        back = s._taken_back(op[1], op[2])  # a shrink's tasks whose cards stayed free
        if back is None:
            return op
        s._give(op[2])
        s._take(back)
        if back.placement.num_tasks == op[1].placement.num_tasks:  # all of them
            s.shrunk.discard(op[1].job.id)
            s.changes -= 1
            return None
        return ("resize", op[1], back)

    def commit(self) -> list[Decision]:
        """Stops first and shrinks next (victims must go before their replacements start), then
        starts, then grows. A job this cycle started and then evicted (for a job that was waiting)
        is simply not started; one it started and then shrank starts smaller."""
        stops: list[Decision] = []
        resizes: dict[str, Decision] = {}
        starts: dict[str, Decision] = {}
        for op in self._ops:
            job_id = op[1].job.id
            if op[0] == "evict":
                resizes.pop(job_id, None)  # a job shrunk, then stopped, is simply stopped
                if starts.pop(job_id, None) is None:  # evicting a job this cycle started: un-start it
                    stops.append(Stop(job_id, op[2]))
            elif op[0] == "start":
                starts[job_id] = Start(job_id, op[1].placement, op[2], op[3])
            elif job_id in starts:  # started this cycle, then shrunk: it simply starts smaller
                starts[job_id] = replace(starts[job_id], placement=op[2].placement)
            else:
                before = op[2].job.placement.num_tasks if op[2].job.placement else 0
                resizes[job_id] = Resize(job_id, op[2].placement, op[2].placement.num_tasks < before)
        self._ops.clear()
        shrinks = [r for r in resizes.values() if r.shrink]
        grows = [r for r in resizes.values() if not r.shrink]
        return [*stops, *shrinks, *starts.values(), *grows]


class Session:
    """Working state of one cycle: free resources, quota usage, running set, reservations."""

    def __init__(self, snapshot: Snapshot, config: CycleConfig):
        self.snapshot = snapshot
        self.config = config
        self.now = snapshot.now
        self.cluster = cluster = snapshot.cluster
        self.tree = snapshot.queues
        st = snapshot.state.copy()
        self.free = FreeArrays(st.free_cards, st.free_cpus, st.free_memory, st.free_mask)
        self.flavor_ids = [m.id for m in cluster.models]
        tree_flavor = [self.tree.flavor_index.get(f, -1) for f in self.flavor_ids]
        if min(tree_flavor) < 0:
            missing = [f for f, k in zip(self.flavor_ids, tree_flavor, strict=True) if k < 0]
            raise ValueError(f"queue tree has no flavor for cluster models {missing}")
        self.tree_flavor = tree_flavor
        up = cluster.node_state == int(NodeState.UP)
        self.usable = [up & (cluster.node_model == f) for f in range(len(cluster.models))]
        self.free_by_flavor = [int(self.free.cards[u].sum()) for u in self.usable]
        self.quota = QuotaUsage(self.tree)
        self.queue_alloc = [[0.0, 0.0, 0.0] for _ in self.tree.names]  # pflops, cpus, memory
        self._flavor_cache: dict[tuple, tuple[int, ...]] = {}
        self._fail_cache: dict[tuple, int] = {}
        self.stmt = Statement(self)
        self.reservations: list[Reservation] = []
        self.holders: dict[str, Job] = {}  # each reservation's waiting job, by its id
        self.lent: dict[str, str] = {}  # started this cycle on loan: job id -> the reserved job
        self.reserved_nodes: dict[int, np.ndarray] = {}  # flavor -> bool mask of reserved nodes
        self.reserved_until: dict[int, float] = {}  # flavor -> earliest reserved start
        # the quota each reservation counts on at its start: nothing may take that either
        self.reserved_quota: list[QuotaHold] = []
        self.unschedulable: dict[str, str] = {}
        self.outcomes: dict[str, Fit] = {}  # waiting job -> how close its last try came (Slurm's Reason)
        self.started: set[str] = set()  # jobs this cycle started (and still holds)
        # cards those hold, per quota tree node (its subtree) and tree flavor: what a node borrows
        # is charged to them first (reclaim, see actions._reclaimable_queues)
        self.fresh_total = np.zeros((len(self.tree.names), len(self.tree.flavors)), dtype=np.int64)
        self.evicted: set[str] = set()  # jobs running at the start that this cycle stopped
        self.unstarted: dict[str, Job] = {}  # jobs this cycle started, then evicted: waiting again
        self.follow_up: list[Job] | None = None  # set: reclaim and preempt walk only these jobs
        # evictions and resizes the statement holds now (a rollback takes its own back out), and
        # for each job reclaim or preempt tried and could not start, that count when it tried
        self.changes = 0
        self.tried: dict[str, tuple[Job, int]] = {}
        # set while reclaim or preempt starts a job: reservations whose holder it may take from
        self.outranked: Callable[[Job], bool] | None = None
        # reservations a job so started took nodes of: they no longer say when their job starts
        # (it gets a new one next cycle), so they hold nothing for the rest of this cycle
        self.broken: set[str] = set()
        self.stats_attempts = 0
        self.stats_rejects = 0
        self.preemptions = 0  # waiting jobs started by reclaim or preempt
        self.shrunk: set[str] = set()  # elastic jobs this cycle gave surplus back (not regrown)
        self.more_preemptors = False  # the preemptor bound cut reclaim or preempt short
        self.victim_pool = None  # built on first use by reclaim/preempt
        self._initial_table: TaskTable | None = None
        self._job_flavors: dict[str, tuple[int, ...]] = {}
        index = snapshot.index
        if index is None:
            index = RunningIndex.build(
                cluster, self.tree, snapshot.running, self.now, config.default_time_limit_s
            )
        elif index.cluster is not cluster or index.tree is not self.tree:
            raise ValueError("snapshot.index was built for another cluster or queue tree")
        elif index.default_time_limit_s != config.default_time_limit_s:
            raise ValueError("snapshot.index was built with another default time limit")
        elif len(index) != len(snapshot.running):
            raise ValueError(
                f"snapshot.index holds {len(index)} jobs but snapshot.running {len(snapshot.running)}"
            )
        self.running_index = index
        self.running: dict[str, Running] = dict(index.entries)
        self.initial_running: list[Running] = list(index.entries.values())
        self.initial_elastic: list[Running] = list(index.elastic.values())
        for queue, alloc in enumerate(self.queue_alloc):
            alloc[1] = float(index.cpus[queue])
            alloc[2] = float(index.memory[queue])
        for (queue, flavor), cards in index.held.items():  # one quota update per queue and model
            add_usage(self.quota, queue, self.tree_flavor[flavor], cards)
            self.queue_alloc[queue][0] += cards * cluster.models[flavor].rated_tflops / 1000.0
        self.ordering = Ordering(self)
        waiting = snapshot.pending_index
        if waiting is None:
            waiting = PendingIndex(
                cluster, self.tree, config.job_order, snapshot.pending, config.las.thresholds
            )
        elif waiting.cluster is not cluster or waiting.tree is not self.tree:
            raise ValueError("snapshot.pending_index was built for another cluster or queue tree")
        elif waiting.order is not config.job_order:
            raise ValueError(
                f"snapshot.pending_index keeps {waiting.order.value} order; the policy sorts by "
                f"{config.job_order.value}"
            )
        elif config.job_order is JobOrder.PRIORITY_LAS and waiting.las_thresholds != config.las.thresholds:
            raise ValueError("snapshot.pending_index was keyed by other LAS thresholds than the policy's")
        elif len(waiting) != len(snapshot.pending):
            raise ValueError(
                f"snapshot.pending_index holds {len(waiting)} jobs "
                f"but snapshot.pending {len(snapshot.pending)}"
            )
        self.pending_index = waiting
        # static orders come sorted from the index; time- and usage-dependent ones are sorted here
        self.pending: list[Job] = waiting.jobs if waiting.ordered else self.ordering.sort(waiting.jobs)
        self.admitted = False  # set by admit: from then on, jobs that can never run are skipped
        self.smallest_need = 0  # fewest cards any admitted job needs (admit sets it; 0: unknown)

    # --- bookkeeping -------------------------------------------------------------------------

    def queue_index(self, job: Job) -> int:
        return self.tree.index.get(job.queue, -1)

    def expected_end(self, job: Job) -> float:
        return expected_end(job, self.now, self.config.default_time_limit_s, self.tree)

    def _account(self, entry: Running, sign: int) -> None:
        tf = self.tree_flavor[entry.flavor]
        add_usage(self.quota, entry.queue, tf, sign * entry.cards)
        for hold in self.reserved_quota:
            if hold.flavor == tf and entry.job.id not in hold.gone:  # it holds its cards at that start
                add_usage(hold.at_start, entry.queue, tf, sign * entry.cards)
        alloc = self.queue_alloc[entry.queue]
        alloc[0] += sign * entry.cards * self.cluster.models[entry.flavor].rated_tflops / 1000.0
        alloc[1] += sign * entry.cpus
        alloc[2] += sign * entry.memory

    def _fresh(self, entry: Running, sign: int) -> None:
        node, f, parent = entry.queue, self.tree_flavor[entry.flavor], self.tree.parent
        while node >= 0:
            self.fresh_total[node, f] += sign * entry.cards
            node = parent[node]

    def _take(self, entry: Running) -> None:
        free = self.free
        for g in entry.placement.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                free.masks[node] &= ~mask
                free.cards[node] -= g.cards_per_task
                free.cpus[node] -= g.cpus
                free.memory[node] -= g.memory_gib
                if self.usable[entry.flavor][node]:
                    self.free_by_flavor[entry.flavor] -= g.cards_per_task
        self._account(entry, +1)
        self.running[entry.job.id] = entry
        if entry.job.id in self.evicted:
            self.evicted.discard(entry.job.id)  # a rolled-back eviction
        else:
            self.started.add(entry.job.id)
            self._fresh(entry, +1)

    def _give(self, entry: Running) -> None:
        free = self.free
        for g in entry.placement.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                free.masks[node] |= mask
                free.cards[node] += g.cards_per_task
                free.cpus[node] += g.cpus
                free.memory[node] += g.memory_gib
                if self.usable[entry.flavor][node]:
                    self.free_by_flavor[entry.flavor] += g.cards_per_task
        self._account(entry, -1)
        del self.running[entry.job.id]
        if entry.job.id in self.started:
            self.started.discard(entry.job.id)  # a rolled-back start, or an un-start
            self._fresh(entry, -1)
        else:
            self.evicted.add(entry.job.id)
        self._fail_cache.clear()  # room grew: earlier failures may now fit

    def _taken_back(self, before: Running, after: Running) -> Running | None:
        """``after`` (a shrink of ``before``) with every task it gave back whose cards, CPUs and
        memory are still free and whose quota still allows it, in task order; None when none is (or
        ``after`` is no shrink of ``before``)."""
        free, down = self.free, self.cluster.node_state == int(NodeState.DOWN)
        room = available(self.quota, before.queue, self.tree_flavor[before.flavor])
        taken: dict[int, list[int]] = {}  # node -> mask, cpus, memory taken back so far
        groups, any_back = [], False
        for old, new in zip(before.placement.groups, after.placement.groups, strict=True):
            left = Counter(zip(new.nodes, new.masks, strict=True))
            nodes, masks = list(new.nodes), list(new.masks)
            for node, mask in zip(old.nodes, old.masks, strict=True):
                if left[(node, mask)]:
                    left[(node, mask)] -= 1
                    continue
                held = taken.setdefault(node, [0, 0, 0])
                if (
                    not down[node]
                    and room >= old.cards_per_task
                    and free.masks[node] & ~held[0] & mask == mask
                    and free.cpus[node] - held[1] >= old.cpus
                    and free.memory[node] - held[2] >= old.memory_gib
                ):
                    held[0] |= mask
                    held[1] += old.cpus
                    held[2] += old.memory_gib
                    room -= old.cards_per_task
                    nodes.append(node)
                    masks.append(mask)
                    any_back = True
            if +left:  # a task ``before`` did not have: grown, not shrunk
                return None
            groups.append(replace(new, nodes=tuple(nodes), masks=tuple(masks)))
        if not any_back:
            return None
        placement = Placement(before.placement.model, tuple(groups))
        return Running(before.job, placement, before.flavor, before.queue, before.end)

    def _fits_back(self, entry: Running) -> bool:
        """Could ``entry`` (a job this cycle stopped) run again exactly where it ran?"""
        if available(self.quota, entry.queue, self.tree_flavor[entry.flavor]) < entry.cards:
            return False
        free, down = self.free, self.cluster.node_state == int(NodeState.DOWN)
        need: dict[int, list[int]] = {}  # node -> cards mask, cpus, memory the job held there
        for g in entry.placement.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                held = need.setdefault(node, [0, 0, 0])
                held[0] |= mask
                held[1] += g.cpus
                held[2] += g.memory_gib
        return all(
            not down[node]
            and free.masks[node] & mask == mask
            and free.cpus[node] >= cpus
            and free.memory[node] >= memory
            for node, (mask, cpus, memory) in need.items()
        )

    @property
    def initial_table(self) -> TaskTable:
        """Tasks of the jobs running when the cycle began, flattened once per session."""
        if self._initial_table is None:
            self._initial_table = TaskTable.from_columns(self.initial_columns)
        return self._initial_table

    @property
    def initial_columns(self) -> RunningColumns:
        """The running index's columns: one row per job of ``initial_running``, in its order."""
        return self.running_index.columns()

    def initial_alive(self) -> np.ndarray:
        """Which jobs running at the start still run: all but those evicted (O(evicted))."""
        mask = np.ones(len(self.initial_running), dtype=bool)
        entries, position = self.running_index.entries, self.initial_columns.position
        for job_id in self.evicted:
            entry = entries.get(job_id)  # None: a job this cycle started
            if entry is not None:
                mask[position[entry.row]] = False
        return mask

    def loans(self) -> dict[int, str]:
        """Jobs running on loan when the cycle began: index in ``initial_running`` -> the reserved
        job that may evict it (preemptible backfill; one pass over the running jobs, then cached)."""
        return self.initial_columns.loans if self.config.preemptible_backfill else {}

    def lowest_preemptible_priority(self, queue: int | None) -> float:
        """Lowest priority of a preemptible job running when the cycle began or started by it, in
        ``queue`` (None: anywhere); inf when there is none."""
        by_queue = self.running_index.preemptible
        if queue is not None:
            low = min(by_queue.get(queue, ()), default=math.inf)
        else:
            low = min((min(p) for p in by_queue.values() if p), default=math.inf)
        for job_id in self.started:  # jobs this cycle started may be un-started for a waiting one
            entry = self.running[job_id]
            if entry.job.preemptible and (queue is None or entry.queue == queue):
                low = min(low, entry.job.priority)
        return low

    def reserved_jobs(self) -> set[str]:
        return {r.job_id for r in self.reservations}

    # --- the waiting jobs, walked lazily: a phase goes only as far into the queue as it needs ---

    def _still_waiting(self, jobs: Iterable[Job]) -> Iterator[Job]:
        skip = self.pending_index.rejected if self.admitted else {}
        running = self.running
        for job in jobs:
            if job.id not in running and job.id not in skip:
                yield job

    def waiting(self) -> Iterator[Job]:
        """Jobs not started yet (nor set aside by admit), in policy order."""
        return self._still_waiting(self.pending)

    def waiting_among(self, jobs: Iterable[Job]) -> list[Job]:
        """Those of ``jobs`` still waiting, in policy order."""
        return self.ordering.sort(list(self._still_waiting(jobs)))

    def waiting_by_queue(self) -> dict[int, Iterator[Job]]:
        """:meth:`waiting` split by queue index, each in policy order."""
        if self.pending_index.ordered:
            parts = self.pending_index.queue_jobs()
        else:
            parts = {}
            for job in self.pending:
                parts.setdefault(self.queue_index(job), []).append(job)
        return {q: self._still_waiting(jobs) for q, jobs in parts.items()}

    def waiting_within(self, cards: int) -> Iterator[Job]:
        """:meth:`waiting` restricted to jobs that need at most ``cards`` cards."""
        if self.pending_index.ordered:
            return self._still_waiting(self.pending_index.needing_at_most(cards))
        return self._still_waiting(j for j in self.pending if j.min_cards <= cards)

    # --- what a job asks for -----------------------------------------------------------------

    def flavors(self, job: Job) -> tuple[int, ...]:
        """Cluster models every task group of ``job`` accepts, in the job's order of preference."""
        found = self._job_flavors.get(job.id)
        if found is None:
            key = tuple(g.accelerators for g in job.groups)
            found = self._flavor_cache.get(key)
            if found is None:
                found = self._flavor_cache[key] = resolve_flavors(self.cluster, key)
            self._job_flavors[job.id] = found
        return found

    def requests(
        self, job: Job, max_cards: int | None = None, most: dict[int, int] | None = None
    ) -> list[GroupRequest]:
        """One request per task group. With ``max_cards`` (the quota left), elastic groups are
        trimmed so the whole gang asks for at most that many cards: every group keeps its minimum,
        and the surplus goes to the elastic groups in the job's order (``most``: group index -> the
        most replicas that group can be given, its surplus left to the groups after it)."""
        spread = job.kind is JobKind.INFERENCE
        surplus = None if max_cards is None else max(0, max_cards - job.min_cards)
        reqs = []
        for gi, g in enumerate(job.groups):
            replicas = g.replicas if most is None else min(g.replicas, most.get(gi, g.replicas))
            if g.elastic and surplus is not None and g.cards > 0:
                replicas = g.gang_min + min(replicas - g.gang_min, surplus // g.cards)
                surplus -= (replicas - g.gang_min) * g.cards
            reqs.append(
                GroupRequest(
                    g.role, replicas, g.gang_min, g.cards, g.cpus, g.memory_gib, spread, g.tasks_per_node or 0
                )
            )
        return reqs

    def start_key(self, job: Job) -> tuple:
        """Everything :meth:`try_start` looks at: two jobs with equal keys fare alike in one state
        (queue and quota, task groups and models, spreading, and which reservations it would
        outlast)."""
        late = ()
        if self.reserved_until:
            end = self.expected_end(job)
            late = tuple(end > self.reserved_until.get(f, math.inf) for f in self.flavors(job))
            late += tuple(end > hold.start or hold.start == math.inf for hold in self.reserved_quota)
        return (job.queue, job.groups, job.kind, late, job.preemptible)

    # --- trying to start a job -----------------------------------------------------------------

    def try_start(self, job: Job, flavors: tuple[int, ...] | None = None, backfilled: bool = False) -> Fit:
        """Start ``job`` now if quota and room allow, without delaying any reservation."""
        best = Fit.NEVER
        queue = self.queue_index(job)
        need = job.min_cards
        for f in flavors if flavors is not None else self.flavors(job):
            if need > self.free_by_flavor[f]:
                self.stats_rejects += 1
                # short of room, and of quota below the cluster's own capacity too: held up by its
                # quota (a blocking policy stops only at a job that has quota but no room)
                short = available(self.quota, queue, self.tree_flavor[f], root=False) < need
                best = max(best, Fit.NO_QUOTA if short else Fit.NO_FIT)
                continue
            quota_left = available(self.quota, queue, self.tree_flavor[f])
            if quota_left < need:
                best = max(best, Fit.NO_QUOTA)
                continue
            loan = backfilled and self._may_borrow(job, f)
            placement, outcome = self._place(job, f, quota_left, loan)
            lender = self._reservation_on(f, placement, job) if loan and placement is not None else None
            if lender is not None and not self._may_evict(lender, job, f):
                lender = None  # its holder could not take the nodes back: keep off them
                placement, outcome = self._place(job, f, quota_left)
            if placement is None:
                best = max(best, outcome)
                continue
            if placement.total_cards > quota_left:  # an elastic gang grew past the quota
                best = max(best, Fit.NO_QUOTA)
                continue
            if self.reserved_quota and self.takes_reserved_quota(job, f, placement.total_cards, lender):
                # an elastic job may still start smaller, leaving a reserved start its quota
                placement = self._within_reserved_quota(job, f, quota_left, lender is not None, lender)
                if placement is None:
                    best = max(best, Fit.RESERVED)
                    continue
            if self.outranked is not None:
                self._break_reservations(f, placement, job)
            self.stmt.start(job, placement, f, queue, backfilled, lender)
            return Fit.FIT
        self.outcomes[job.id] = best
        return best

    def _not_at_reserved_starts(self, entry: Running, lender: str | None) -> None:
        """Note a job about to start that will not hold its cards at a reserved start: it ends by
        then, or runs on loan to that reservation's job (which may evict it)."""
        for hold in self.reserved_quota:
            if entry.end <= hold.start < math.inf or hold.reservation.job_id == lender:
                hold.gone.add(entry.job.id)

    def _within_reserved_quota(
        self, job: Job, flavor: int, quota_left: int, loan: bool, lender: str | None
    ) -> Placement | None:
        """``job`` placed at the most cards that leave every reserved start its quota (a binary
        search over the cards, its minimum first); None when even its minimum would not."""
        if not job.elastic or self.takes_reserved_quota(job, flavor, job.min_cards, lender):
            return None
        lo, hi = job.min_cards, min(quota_left, job.total_cards)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.takes_reserved_quota(job, flavor, mid, lender):
                hi = mid - 1
            else:
                lo = mid
        placement, _ = self._place(job, flavor, lo, loan)
        if placement is None or self.takes_reserved_quota(job, flavor, placement.total_cards, lender):
            return None
        return placement

    def takes_reserved_quota(self, job: Job, flavor: int, cards: int, lender: str | None = None) -> bool:
        """Would ``job`` (started, or grown by ``cards``, now on ``flavor``) still run at a reserved
        start and leave that reservation's job short of quota then? Not judged against it: a start
        on loan to the reserved job (``lender``: that job may evict it), nor one whose side of the
        tree stays within its nominal against the reserved job's (it takes back what that job would
        only borrow: reclaim's rule turned around). Once started it is counted there all the same
        (:meth:`_account`). Room is the reserved nodes' to guard (quota ``root=False``)."""
        end, queue, tf = self.expected_end(job), self.queue_index(job), self.tree_flavor[flavor]
        tree = self.tree
        for hold in self.reserved_quota:
            if (
                hold.flavor != tf
                or hold.reservation.job_id in (job.id, lender)
                or end <= hold.start < math.inf
                or not self._holds(hold.reservation)
            ):
                continue  # (an unknown start may be now: whatever starts runs then)
            if queue != hold.queue:
                side = cohort_side(tree, hold.queue, queue)
                if hold.at_start.total[side][tf] + cards <= tree.nominal[side][tf]:
                    continue  # within its side's nominal: the reserved job would only borrow it
            after = hold.at_start.copy()
            add_usage(after, queue, tf, cards)
            if available(after, hold.queue, tf, root=False) < hold.need:
                return True
        return False

    def _may_borrow(self, job: Job, flavor: int) -> bool:
        """May ``job`` backfill onto nodes reserved for others, on loan? Only a preemptible one
        that would still run at a reserved start (one that ends before it needs no loan)."""
        if not (self.config.preemptible_backfill and job.preemptible):
            return False
        reserved, until = self._reserved_against(flavor, job)
        return reserved is not None and self.expected_end(job) > until

    def _break_reservations(self, flavor: int, placement: Placement, job: Job) -> None:
        """Mark broken the reservations ``job`` (started by reclaim or preempt) overrode: on its
        nodes, held for a job it outranks, and due before ``job`` ends (else nothing was delayed)."""
        model, nodes, end = self.flavor_ids[flavor], placement.node_set(), self.expected_end(job)
        for r in self.reservations:
            if r.model != model or r.job_id == job.id or not r.nodes & nodes:
                continue
            if r.job_id in self.running or (r.start is not None and end <= r.start):
                continue
            if self.outranked is not None and self.outranked(self.holders[r.job_id]):
                self.broken.add(r.job_id)

    def _holds(self, r: Reservation) -> bool:
        """Does ``r`` still hold its nodes? Not once its job started, nor once its job, started
        here, was evicted for another (that one outranked it, or was owed the quota it used); nor
        against a job reclaim or preempt is starting that could take them from its holder were it
        running (the holder borrows what that job is owed, or ranks below it): a reservation orders
        the queue for backfill, it does not defend borrowed quota or a lower rank."""
        if r.job_id in self.running or r.job_id in self.unstarted or r.job_id in self.broken:
            return False
        return self.outranked is None or not self.outranked(self.holders[r.job_id])

    def _reservation_on(self, flavor: int, placement: Placement, job: Job) -> str | None:
        """The waiting job whose reserved nodes ``placement`` uses (None: it keeps off them)."""
        model, nodes = self.flavor_ids[flavor], placement.node_set()
        for r in self.reservations:
            if r.model == model and r.job_id != job.id and self._holds(r) and nodes & r.nodes:
                return r.job_id
        return None

    def _may_evict(self, holder_id: str, job: Job, flavor: int) -> bool:
        """Could the reservation's holder evict ``job`` on loan, by the preemption scope: same
        queue, any queue, or (cohort) a job its side of the tree would run wholly on borrowed quota
        (that side already holds its nominal, at the level below the lowest common ancestor)."""
        scope = self.config.preempt_scope
        holder = self.holders[holder_id]
        q, hq = self.queue_index(job), self.queue_index(holder)
        if scope is PreemptScope.CLUSTER or holder.queue == job.queue:
            return True
        if scope is not PreemptScope.COHORT or q < 0 or hq < 0:
            return False
        side, tf = cohort_side(self.tree, hq, q), self.tree_flavor[flavor]
        return self.quota.total[side][tf] >= self.tree.nominal[side][tf]

    def _place(
        self, job: Job, flavor: int, quota_left: int, loan: bool = False
    ) -> tuple[Placement | None, Fit]:
        """Where ``job`` goes now, off nodes reserved for others unless ``loan``; or why not."""
        usable = self.usable[flavor]
        outcome = Fit.NO_FIT
        reserved, until = (None, math.inf) if loan else self._reserved_against(flavor, job)
        if reserved is not None and self.expected_end(job) > until:
            # it would still run when a reserved job is due to start: keep off those nodes
            usable = usable & ~reserved
            outcome = Fit.RESERVED
        reqs = self.requests(job, quota_left)
        key = None
        if len(reqs) == 1 and self.outranked is None:  # the key cannot tell which reservations hold
            r = reqs[0]
            key = (
                flavor,
                r.cards,
                r.cpus,
                r.memory_gib,
                r.spread,
                r.per_node,
                reserved is not None and outcome is Fit.RESERVED,
                # a reservation's own job sees fewer reserved nodes than the rest
                any(res.job_id == job.id for res in self.reservations),
            )
            failed_at = self._fail_cache.get(key)
            if failed_at is not None and r.min_replicas >= failed_at:
                self.stats_rejects += 1
                return None, outcome
        self.stats_attempts += 1
        placement = place_gang(
            self.cluster, self.free, usable, self.flavor_ids[flavor], reqs, self.config.placement
        )
        if placement is not None and len(reqs) > 1:
            placement = self._regrown(job, flavor, quota_left, usable, reqs, placement)
        if placement is None and key is not None:
            self._fail_cache[key] = min(reqs[0].min_replicas, self._fail_cache.get(key, 1 << 30))
        if placement is None and outcome is Fit.RESERVED:
            # distinguish "would fit but for the reservation" from "does not fit at all"
            plain = place_gang(
                self.cluster,
                self.free,
                self.usable[flavor],
                self.flavor_ids[flavor],
                reqs,
                self.config.placement,
            )
            outcome = Fit.RESERVED if plain is not None else Fit.NO_FIT
        return placement, outcome

    def _regrown(
        self,
        job: Job,
        flavor: int,
        quota_left: int,
        usable: np.ndarray,
        reqs: list[GroupRequest],
        placement: Placement,
    ) -> Placement:
        """``placement`` of a gang of several groups, with the quota surplus an elastic group was
        trimmed to but could not place passed on to the groups after it: the quota splits the
        surplus in the job's order before anything is placed, so a group the nodes cannot grow
        (``tasks_per_node``, spreading) would otherwise leave it unused. Placed again until no
        group falls short (at most once per group)."""
        most: dict[int, int] = {}
        for _ in reqs:
            short = {
                gi: got.replicas
                for gi, (req, got) in enumerate(zip(reqs, placement.groups, strict=True))
                if got.replicas < req.replicas and gi not in most
            }
            if not short or placement.total_cards >= quota_left:
                return placement
            most.update(short)
            reqs = self.requests(job, quota_left, most)
            again = place_gang(
                self.cluster, self.free, usable, self.flavor_ids[flavor], reqs, self.config.placement
            )
            if again is None or again.size <= placement.size:
                return placement
            placement = again
        return placement

    def _reserved_against(self, flavor: int, job: Job) -> tuple[np.ndarray | None, float]:
        """Nodes of ``flavor`` reserved for other jobs still waiting, and the earliest reserved
        start among them (now for an unknown start). A reservation ends once its job starts (by
        reclaim or preempt), and never holds its own job off its nodes."""
        reserved = self.reserved_nodes.get(flavor)
        if reserved is None:
            return None, math.inf
        model = self.flavor_ids[flavor]
        holders = [r for r in self.reservations if r.model == model]
        live = [r for r in holders if r.job_id != job.id and self._holds(r)]
        if len(live) == len(holders):
            return reserved, self.reserved_until[flavor]
        if not live:
            return None, math.inf
        mask = np.zeros(self.cluster.num_nodes, dtype=bool)
        for r in live:
            mask[list(r.nodes)] = True
        return mask, min(self.now if r.start is None else r.start for r in live)

    def fits_hypothetically(
        self, job: Job, flavor: int, free: FreeArrays, usable: np.ndarray
    ) -> Placement | None:
        """Where ``job`` would go on ``free`` (a what-if state: only counts matter, no cards chosen)."""
        return place_gang(
            self.cluster,
            free,
            usable,
            self.flavor_ids[flavor],
            self.requests(job),
            self.config.placement,
            choose_cards=False,
        )

    # --- reservations (EASY backfill) ----------------------------------------------------------

    def reserve(self, job: Job) -> Reservation | None:
        """Earliest time ``job`` fits as running jobs end at their time limits; holds those nodes.
        Of the models it accepts, the one where it starts first (an unknown start last; ties to the
        job's order of preference): EASY's reservation is the earliest start, on whichever model."""
        best = None
        for f in self.flavors(job):
            found = self._earliest_on(job, f)
            if found is not None and (best is None or _sooner(found[0], best[1][0])):
                best = (f, found)
        if best is None:
            return None
        flavor, (start, placement, quota, gone) = best
        res = self._hold(job, flavor, start, placement)
        due = math.inf if start is None else start  # unknown: whatever runs on without end counts
        tf = self.tree_flavor[flavor]
        self.reserved_quota.append(QuotaHold(res, due, self.queue_index(job), tf, job.min_cards, quota, gone))
        return res

    def _earliest_on(
        self, job: Job, flavor: int
    ) -> tuple[float | None, Placement, QuotaUsage, set[str]] | None:
        """When (None: unknown) and where ``job`` could start on ``flavor`` as running jobs end,
        the quota as it will stand then, and the jobs that will have ended by then."""
        table, columns = self.initial_table, self.initial_columns
        # jobs without a time limit count too, as ending last (in snapshot order): where the job
        # must wait for one of them its start is unknown, but its nodes are still held for it
        old = np.flatnonzero(self.initial_alive() & (columns.flavor == flavor))
        new = [e for e in (self.running[j] for j in sorted(self.started)) if e.flavor == flavor]
        if len(old) == 0 and not new:
            return None
        table, _ = table.subset(old)
        ends, cards, queues = columns.end[old], columns.cards[old], columns.queue[old]
        # a job on loan to this one ends when this one starts (it evicts it, whatever their ranks):
        # its own end, or none, must not set the reserved start (EASY: backfill delays no one)
        lent = [i for i, holder in self.loans().items() if holder == job.id]
        if lent:
            ends = ends.copy()
            ends[np.isin(old, lent)] = self.now
        if new:
            table = TaskTable.concat(table, TaskTable(new))
            ends = np.concatenate(
                [ends, [self.now if self.lent.get(e.job.id) == job.id else e.end for e in new]]
            )
            cards = np.concatenate([cards, [e.cards for e in new]])
            queues = np.concatenate([queues, [e.queue for e in new]])
        by_end = np.argsort(ends, kind="stable")  # ties keep snapshot order: deterministic
        task_pos = table.positions(by_end)
        usable = self.usable[flavor]
        if flavor in self.reserved_nodes:
            usable = usable & ~self.reserved_nodes[flavor]
        queue, tf = self.queue_index(job), self.tree_flavor[flavor]

        def quota_at(k: int) -> QuotaUsage:
            """The quota once the first k jobs to end have ended."""
            gone = by_end[:k]
            released = np.bincount(queues[gone], cards[gone], minlength=len(self.tree.names))
            quota = self.quota.copy()
            for q in np.flatnonzero(released).tolist():
                add_usage(quota, q, tf, -int(released[q]))
            return quota

        def quota_after(k: int) -> bool:
            """Whether the job's quota lets it start once the first k jobs to end have ended (a
            model its queue may never use is no start, however much room frees there)."""
            if available(self.quota, queue, tf) >= job.min_cards:
                return True
            return available(quota_at(k), queue, tf) >= job.min_cards

        def fits_after(k: int) -> Placement | None:  # the first k jobs to end have ended
            if not quota_after(k):
                return None
            return self.fits_hypothetically(job, flavor, table.free_without(self.free, task_pos, k), usable)

        if fits_after(len(by_end)) is None:
            return None  # blocked by down nodes or reserved ones: no estimate
        # fewer ended jobs than this cannot have freed enough cards: search up from there
        freed = np.cumsum(cards[by_end])
        lower = int(np.searchsorted(freed, job.min_cards - self.free_by_flavor[flavor])) + 1
        lo, placement = shortest_prefix(fits_after, max(1, min(lower, len(by_end))), len(by_end))
        last = float(ends[by_end[lo - 1]])
        ids = columns.ids[old].tolist() + [e.job.id for e in new]
        gone = {ids[i] for i in by_end[:lo].tolist()}
        return (max(self.now, last) if math.isfinite(last) else None), placement, quota_at(lo), gone

    def _hold(self, job: Job, flavor: int, start: float | None, placement: Placement) -> Reservation:
        """Record the reservation and hold its nodes against later jobs."""
        res = Reservation(
            job.id, start, self.flavor_ids[flavor], frozenset(int(n) for n in placement.node_set())
        )
        n = self.cluster.num_nodes
        mask = self.reserved_nodes.setdefault(flavor, np.zeros(n, dtype=bool))
        mask[list(res.nodes)] = True
        # an unknown start may be any moment: then no later job may take the reserved nodes' cards
        due = start if start is not None else self.now
        self.reserved_until[flavor] = min(self.reserved_until.get(flavor, float("inf")), due)
        self.reservations.append(res)
        self.holders[job.id] = job
        return res
