"""The digital twin's loop: the real ``core.run_cycle``, driven by simulated time.

Events (failures, repairs, finishes, arrivals, scheduling rounds) come off a deterministic heap. A
round runs only when something changed since the last one, and at most once per
``cycle_interval_s``, so the cost follows the number of jobs, not the length of the simulated period.
The twin applies the core's decisions the way the control plane will: stops first (the victim loses
the work since its last checkpoint and waits again), then starts and resizes. A round that the core
cut short at its bound on preemptors (``CycleStats.more_preemptors``) is followed at once by another at
the same instant. Under Tiresias' LAS order, a running job's attained service crossing a queue
threshold (and, with starvation promotion on, a waiting job becoming due for it) is an event too, so
a round sees the new order when it happens rather than at the next arrival or finish.

Progress is booked in *reference seconds* (a job's stated duration); a placed job advances at
``speed`` reference seconds per second (heterogeneity, topology penalty, elastic share and the time
spent writing checkpoints; see :mod:`wanka.sim.models`), after a restart delay if it ran before.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wanka.core import (
    LAS_ORDERS,
    Cluster,
    ClusterState,
    CycleConfig,
    CycleResult,
    Job,
    JobKind,
    JobState,
    NodeState,
    PendingIndex,
    Placement,
    QueueTree,
    QueueUsage,
    RunningIndex,
    Snapshot,
    accrue,
    run_cycle,
)
from wanka.core.fairshare import las_queue
from wanka.core.placement import needed_tier
from wanka.sim.engine import EventKind, EventQueue
from wanka.sim.gating import TwinGates
from wanka.sim.models import Models
from wanka.sim.services import Fleet, ServiceModel, ServiceStats


@dataclass(frozen=True)
class SimConfig:
    cycle_interval_s: float = 60.0  # rounds are batched: at most one per interval
    half_life_s: float = 7 * 86400.0  # fair-share usage decay
    until_s: float | None = None  # stop simulating at this time (jobs still open are reported so)
    seed: int = 0  # failures (and anything else random) derive from it
    sample_every_s: float = 3600.0  # time series (utilisation, queue length, shares) resolution
    autoscale_every_s: float = 60.0  # how often the services' autoscalers look at the load
    services_until_s: float | None = None  # services serve until then (default: the last arrival)


@dataclass(slots=True)
class JobStats:
    """What happened to one job; the core's Job is kept beside it."""

    job: Job
    duration_s: float  # run time at full size on a reference card, in one domain, no overheads
    remaining_s: float
    declared_interval: float | None = None  # the job's own checkpoint interval, if it gave one
    first_start: float | None = None
    end: float | None = None
    run_since: float = 0.0  # last booking time of the current run
    compute_from: float = 0.0  # when the current run's restart delay ends
    run_compute_s: float = 0.0  # compute time in the current run (checkpoints count from its start)
    speed: float = 1.0
    efficiency: float = 1.0  # share of compute time not spent writing checkpoints
    epoch: int = 0  # bumps on every (re)start, so a stale finish event is ignored
    runs: int = 0
    allocated_card_s: float = 0.0  # cards held x seconds
    lost_card_s: float = 0.0  # ... of which work thrown away by a failure or preemption
    overhead_card_s: float = 0.0  # ... of which restarts and checkpoint writes
    progress_s: float = 0.0  # reference seconds of work done, including work later lost
    lost_progress_s: float = 0.0
    preemptions: int = 0
    failures: int = 0
    outcome: str = ""  # succeeded, unschedulable, cancelled (a dependency never held), "" while open
    service: str = ""  # a service's replica (sim.services): runs until the autoscaler stops it
    startup_s: float = 0.0  # a replica's time from start to ready, on every start

    @property
    def useful_card_s(self) -> float:
        return self.allocated_card_s - self.lost_card_s - self.overhead_card_s


@dataclass
class Sample:
    """One point of the time series."""

    time: float
    allocated_cards: int
    pending_jobs: int
    running_jobs: int
    down_nodes: int
    fragmented_cards: int  # free cards on nodes too full for the smallest task of any waiting job
    tenant_cards: dict[str, int]
    serving_cards: int = 0  # held by services' replicas
    guaranteed_cards: int = 0  # ... of which by never-preempted ones


@dataclass
class SimResult:
    policy: str
    cluster: Cluster
    stats: list[JobStats]
    cycles: int
    events: int
    wall_s: float
    rejected: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[float, int, str]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    nominal_share: dict[str, float] = field(default_factory=dict)
    snapshots: dict[float, np.ndarray] = field(default_factory=dict)  # time -> free cards per node
    services: list[ServiceStats] = field(default_factory=list)
    serving_s: float = 0.0  # how long the services served, from time 0


class Twin:
    def __init__(
        self,
        cluster: Cluster,
        queues: QueueTree,
        jobs: Sequence[tuple[Job, float]],
        policy: CycleConfig,
        config: SimConfig | None = None,
        models: Models | None = None,
        progress: Callable[[float, int], None] | None = None,
        heatmap_at: Sequence[float] = (),
        services: Sequence[ServiceModel] = (),
    ):
        """``jobs``: (job, duration at full size in seconds); each job's ``submit_time`` is its arrival.
        ``services``: run beside the jobs from time 0 to ``config.services_until_s`` (default: the
        last arrival), their replicas set by the autoscaler (sim.services); the run ends when both
        the services and every job have. ValueError for a service whose queue is not a leaf."""
        # node states change during a run: work on a copy so runs compared never share them
        self.cluster = copy.copy(cluster)
        self.cluster.node_state = cluster.node_state.copy()
        self.queues, self.policy = queues, policy
        self.config = config or SimConfig()
        self.models = models or Models()
        self.stats = {job.id: JobStats(job, d, d, job.checkpoint_interval_s) for job, d in jobs}
        if len(self.stats) != len(jobs):
            raise ValueError("job ids must be unique")
        self.state = ClusterState.empty(self.cluster)
        # the waiting queue, kept in the policy's order as jobs arrive, start and are requeued
        self.pending = PendingIndex(self.cluster, queues, policy.job_order, (), policy.las.thresholds)
        self.running: dict[str, Job] = {}
        # kept up to date as jobs start and stop, so a round does not rebuild it (core.running)
        self.index = RunningIndex(self.cluster, queues, policy.default_time_limit_s)
        # attained service of running jobs matters to a round only under Tiresias' LAS order;
        # otherwise progress is booked when a job stops, finishes or is resized
        self.las = policy.las if policy.job_order in LAS_ORDERS else None
        self.book_every_round = self.las is not None
        self.more_preemptors = False  # the last round stopped at the bound on preemptors
        self.on_node: dict[int, set[str]] = {}  # node -> running jobs with a task there
        leaves = [n for n in queues.names if queues.is_leaf(n)]
        self.usage = {q: QueueUsage() for q in leaves}
        self.rate = {q: [0.0, 0.0, 0.0] for q in leaves}  # compute PFLOPS, CPUs, GiB held now
        self.events = EventQueue()
        self.rejected: dict[str, str] = {}
        self.cancelled: dict[str, str] = {}  # dependencies that can never hold, with why
        self.released = False  # a round's starts or closures let held-back jobs go on
        jobs_by_id = {job.id: job for job, _ in jobs}
        self.gates = TwinGates(jobs_by_id) if TwinGates.needed(jobs_by_id.values()) else None
        self.failure_log: list[tuple[float, int, str]] = []
        self.samples: list[Sample] = []
        self.progress = progress
        self.heatmap_at = sorted(heatmap_at)
        self.snapshots: dict[float, np.ndarray] = {}
        self.spares: list[int] = []
        spares = self.models.failures.hot_spares
        if spares:  # the last nodes wait idle (draining: they take no work) until one is needed
            up = np.flatnonzero(self.cluster.node_state == int(NodeState.UP))
            self.spares = [int(n) for n in up[-spares:]]
            self.cluster.node_state[self.spares] = int(NodeState.DRAINING)
        self.fleet = Fleet(services, queues, self.config.seed, self.config.autoscale_every_s)
        until = self.config.services_until_s
        self.serving_until = (
            until if until is not None else max((j.submit_time for j, _ in jobs), default=0.0)
        )
        # the smallest tier whose largest domain could hold k cards, for the topology penalty
        self.tier_capacity = [int(c.max()) for c in self.cluster.domain_cards]

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> SimResult:
        t0 = time.perf_counter()
        for st in sorted(self.stats.values(), key=lambda s: (s.job.submit_time, s.job.id)):
            self.events.push(st.job.submit_time, EventKind.ARRIVAL, st.job.id)
        failures = self.models.failures.stream(self.cluster, self.config.seed)
        self._next_failure(failures)
        if self.fleet:
            self.events.push(0.0, EventKind.SCALE)
        cycles = events = 0
        round_queued = False
        last_round = float("-inf")
        open_jobs = len(self.stats)
        next_sample = 0.0
        until = self.config.until_s
        clock = 0.0
        while self.events and (open_jobs > 0 or self.fleet.serving):
            now, kind, payload = self.events.pop()
            if until is not None and now > until:
                clock = until
                break
            clock = now
            while now >= next_sample:
                self._sample(next_sample)
                next_sample += self.config.sample_every_s
            while self.heatmap_at and now >= self.heatmap_at[0]:
                self.snapshots[self.heatmap_at.pop(0)] = self.state.free_cards.copy()
            events += 1
            changed = False
            if kind is EventKind.ARRIVAL:
                job = self.stats[payload].job
                if self.gates is None:
                    self.pending.add(job)
                else:  # dependencies and array throttles (core.eligibility)
                    open_jobs -= self._gated(now, *self.gates.arrive(job))
                changed = True
            elif kind is EventKind.FINISH:
                job_id, epoch = payload
                st = self.stats[job_id]
                if st.epoch == epoch and job_id in self.running:
                    self._finish(st, now)
                    open_jobs -= 1
                    if self.gates is not None:
                        open_jobs -= self._gated(now, *self.gates.ended(job_id))
                    changed = True
            elif kind is EventKind.FAILURE:
                changed = self._fail(now, *payload)
                self._next_failure(failures)
            elif kind is EventKind.REPAIR:
                self._repair(payload)
                changed = True
            elif kind is EventKind.SCALE:
                if now < self.serving_until:
                    changed = self.fleet.step(now, self)
                    self.events.push(now + self.config.autoscale_every_s, EventKind.SCALE)
                else:  # the period is over: every replica stops
                    changed = self.fleet.close(now, self)
            elif kind is EventKind.LAS_QUEUE:
                changed = self._las_queue_change(now, *payload)
            else:
                round_queued = False
                last_round = now
                cycles += 1
                open_jobs -= self._round(now)
                changed, self.released = self.released, False  # a start let a dependent go on
                if self.more_preemptors:  # more waiting jobs may preempt now: a follow-up round
                    self.events.push(now, EventKind.CYCLE)
                    round_queued = True
                if self.progress is not None and cycles % 64 == 0:
                    self.progress(now, events)
            if changed and not round_queued and self.pending:
                self.events.push(max(now, last_round + self.config.cycle_interval_s), EventKind.CYCLE)
                round_queued = True
        for job in self.running.values():  # jobs still running when the simulation stops
            self._book(self.stats[job.id], clock)
        share = {q: self.queues.norm_share[self.queues.index[q]] for q in self.usage}
        return SimResult(
            self.policy.name,
            self.cluster,
            list(self.stats.values()),
            cycles,
            events,
            time.perf_counter() - t0,
            dict(self.rejected),
            self.failure_log,
            self.samples,
            share,
            self.snapshots,
            self.fleet.results(),
            self.fleet.closed_at if self.fleet.closed_at is not None else (clock if self.fleet else 0.0),
        )

    def _next_failure(self, failures) -> None:
        nxt = next(failures, None)
        if nxt is not None:
            self.events.push(nxt[0], EventKind.FAILURE, nxt[1:])

    def _round(self, now: float) -> int:
        """One scheduling round; returns how many jobs it closed (rejected as unschedulable)."""
        for q, u in self.usage.items():
            self.usage[q] = accrue(u, now, tuple(self.rate[q]), self.config.half_life_s)
        if self.book_every_round:
            for job in self.running.values():
                self._book(self.stats[job.id], now)
        snapshot = Snapshot(
            now,
            self.cluster,
            self.state,
            self.queues,
            self.pending.jobs,
            list(self.running.values()),
            self.usage,
            self.index,
            self.pending,
        )
        result = self._decide(snapshot)
        self.more_preemptors = result.stats.more_preemptors
        for d in result.stops:
            self._stop(self.stats[d.job_id], now)
            self.stats[d.job_id].preemptions += 1
        for d in result.resizes:  # shrinks give back what starts then use
            if d.shrink:
                self._resize(self.stats[d.job_id], d.placement, now)
        closed = 0
        for d in result.starts:
            self._start(self.stats[d.job_id], d.placement, now, d.preemptible_by)
            if self.gates is not None and not self.stats[d.job_id].service:
                closed += self._gated(now, *self.gates.started(d.job_id))
        for d in result.resizes:
            if not d.shrink:
                self._resize(self.stats[d.job_id], d.placement, now)
        for job_id, why in result.unschedulable.items():
            if job_id in self.pending:
                self.pending.remove(job_id)
                self.stats[job_id].outcome = "unschedulable"
                self.stats[job_id].job.state = JobState.FAILED
                self.rejected[job_id] = why
                if self.stats[job_id].service:  # the service can never run: it stops scaling
                    self.fleet.unschedulable(job_id, why)
                    continue
                closed += 1
                if self.gates is not None:
                    closed += self._gated(now, *self.gates.ended(job_id))
        return closed

    def _gated(self, now: float, ready: list[Job], closed: list[tuple[Job, str]]) -> int:
        """Jobs the gates let go on join the pending index; those whose dependencies can never
        hold are cancelled (as the control plane does), and what depends on them is judged in
        turn. Returns how many jobs were closed."""
        for job in ready:
            self.pending.add(job)
        self.released |= bool(ready)
        count = 0
        while closed:
            job, why = closed.pop()
            st = self.stats[job.id]
            st.outcome, st.end = "cancelled", now
            job.state = JobState.CANCELLED
            self.cancelled[job.id] = why
            count += 1
            more_ready, more_closed = self.gates.ended(job.id)
            for other in more_ready:
                self.pending.add(other)
                self.released = True
            closed += more_closed
        return count

    def _decide(self, snapshot: Snapshot) -> CycleResult:
        return run_cycle(snapshot, self.policy)

    def _sample(self, t: float) -> None:
        tenants: dict[str, int] = {}
        serving = guaranteed = 0
        for job in self.running.values():
            cards = job.placement.total_cards
            tenants[job.queue] = tenants.get(job.queue, 0) + cards
            if job.kind is JobKind.INFERENCE and self.stats[job.id].service:
                serving += cards
                guaranteed += 0 if job.preemptible else cards
        fragmented = 0
        if self.pending:
            smallest = min(g.cards for j in self.pending for g in j.groups)
            free = self.state.free_cards
            up = self.cluster.node_state == int(NodeState.UP)
            fragmented = int(free[up & (free < smallest)].sum())
        self.samples.append(
            Sample(
                t,
                int(self.cluster.total_cards - self.state.free_cards.sum()),
                len(self.pending),
                len(self.running),
                int((self.cluster.node_state == int(NodeState.DOWN)).sum()),
                fragmented,
                tenants,
                serving,
                guaranteed,
            )
        )

    # --- Tiresias' LAS queues ------------------------------------------------------------------

    def _push_las_crossing(self, st: JobStats) -> None:
        """Under LAS order, an event when the running job's attained service (booked up to now,
        ``st.run_since``) reaches the next threshold, unless it finishes first."""
        if self.las is None or not st.job.on_las_ladder:
            return
        attained = st.job.attained_service
        threshold = next((t for t in self.las.thresholds if t > attained), None)
        if threshold is None:
            return
        cards = st.job.placement.total_cards
        if not cards:  # a CPU-only replica attains no card-seconds
            return
        at = st.run_since + (threshold - attained) / cards
        while attained + cards * (at - st.run_since) < threshold:  # rounding: never a hair early
            at = math.nextafter(at, math.inf)
        if at < max(st.run_since, st.compute_from) + st.remaining_s / st.speed:
            self.events.push(at, EventKind.LAS_QUEUE, (st.job.id, st.epoch, threshold))

    def _push_las_promotion(self, st: JobStats, now: float) -> None:
        """With starvation promotion on, an event when the job that stopped ``now`` will have waited
        ``starvation_factor`` times its executed time (core.ordering promotes it then)."""
        las, job = self.las, st.job
        if las is None or las.starvation_factor <= 0 or not job.total_cards:
            return
        if las_queue(job.las_service, las.thresholds) == 0:
            return
        wait = las.starvation_factor * job.attained_service / job.total_cards
        at = now + wait
        while at - now < wait:
            at = math.nextafter(at, math.inf)
        self.events.push(at, EventKind.LAS_QUEUE, (job.id, st.epoch, None))

    def _las_queue_change(self, now: float, job_id: str, epoch: int, threshold: float | None) -> bool:
        """A job's LAS queue changes now: it crossed ``threshold``, or (None) it is due for promotion.
        Returns whether a round should look again; a job stopped, restarted or resized since the
        event was pushed has a fresh one instead."""
        st = self.stats[job_id]
        if st.epoch != epoch:
            return False
        if threshold is None:
            return job_id in self.pending
        if job_id not in self.running:
            return False
        self._book(st, now)
        # the event time was computed in one step, the booking summed over rounds: allow for rounding
        if st.job.attained_service < threshold and threshold - st.job.attained_service <= 1e-9 * threshold:
            st.job.attained_service = threshold
        self._push_las_crossing(st)
        return True

    # --- failures ------------------------------------------------------------------------------

    def _fail(self, now: float, node: int, cause: str, repair_s: float) -> bool:
        if self.cluster.node_state[node] == int(NodeState.DOWN):
            return False  # already down for repair: it cannot fail again
        self.failure_log.append((now, node, cause))
        for job_id in sorted(self.on_node.get(node, ())):  # every job with a task there breaks
            st = self.stats[job_id]
            self._stop(st, now)
            st.failures += 1
        if repair_s > 0:
            if node in self.spares:
                self.spares.remove(node)
            elif self.spares:  # a hot spare takes the failed node's place at once
                spare = self.spares.pop(0)
                self.cluster.node_state[spare] = int(NodeState.UP)
            self.cluster.node_state[node] = int(NodeState.DOWN)
            self.events.push(now + repair_s, EventKind.REPAIR, node)
        return True

    def _repair(self, node: int) -> None:
        """A repaired node rejoins as a spare while the pool is short, otherwise as a worker."""
        if len(self.spares) < self.models.failures.hot_spares:
            self.spares.append(node)
            self.cluster.node_state[node] = int(NodeState.DRAINING)
        else:
            self.cluster.node_state[node] = int(NodeState.UP)

    # --- applying decisions --------------------------------------------------------------------

    def _book(self, st: JobStats, now: float) -> None:
        """Book what happened since the last booking: cards held, restart delay, checkpoint writes,
        work done, attained service. Every path that changes a running job calls it."""
        cards = st.job.placement.total_cards
        dt = now - st.run_since
        compute = max(0.0, now - max(st.run_since, st.compute_from))
        st.allocated_card_s += cards * dt
        st.overhead_card_s += cards * (dt - compute + compute * (1.0 - st.efficiency))
        st.job.attained_service += cards * dt
        done = min(st.remaining_s, compute * st.speed)
        st.remaining_s -= done
        st.progress_s += done
        st.run_compute_s += compute
        st.run_since = now

    def _hold(self, job: Job, sign: int) -> None:
        p = job.placement
        rate = self.rate[job.queue]
        rate[0] += (
            sign * p.total_cards * self.cluster.models[self.cluster.model_index[p.model]].rated_tflops / 1e3
        )
        rate[1] += sign * p.total_cpus
        rate[2] += sign * p.total_memory
        for node in p.node_set():
            if sign > 0:
                self.on_node.setdefault(node, set()).add(job.id)
            else:
                self.on_node[node].discard(job.id)

    def _start(
        self, st: JobStats, placement: Placement, now: float, preemptible_by: str | None = None
    ) -> None:
        job = self.pending.remove(st.job.id)
        self.state.allocate(placement)
        job.placement = placement
        job.start_time = now
        job.preemptible_by = preemptible_by
        job.last_checkpoint_time = None
        job.state = JobState.RUNNING
        self.running[job.id] = job
        self._hold(job, +1)
        if st.first_start is None:
            st.first_start = now
        st.run_since = now
        if st.service:  # a replica loads its model on every start
            st.compute_from = now + st.startup_s
        else:
            st.compute_from = now + (self.models.checkpoints.restart_s if st.runs else 0.0)
        # the core judges a victim's lost work from this and the interval (Job.lost_work_s)
        job.checkpoint_from = st.compute_from
        st.run_compute_s = 0.0
        st.runs += 1
        self._set_speed(st, placement)
        self.index.add(job, now)  # once its checkpoint facts are set: the index keeps them
        if st.service:
            self.fleet.started(job.id, now, st.runs)
        else:
            self._schedule_finish(st, now)
        self._push_las_crossing(st)

    def _set_speed(self, st: JobStats, placement: Placement) -> None:
        job = st.job
        if st.service:  # a replica serves; it has no progress to checkpoint
            st.speed, st.efficiency, job.checkpoint_interval_s = 1.0, 1.0, None
            return
        model = self.cluster.models[self.cluster.model_index[placement.model]]
        needed = next(t for t, cap in enumerate(self.tier_capacity) if cap >= placement.total_cards)
        extra = max(0, needed_tier(self.cluster, placement) - needed)
        cards = placement.total_cards
        ckpt = self.models.checkpoints
        interval = ckpt.interval(st.declared_interval, self.models.failures.node_mtbf_s(cards))
        job.checkpoint_interval_s = interval
        st.efficiency = ckpt.efficiency(interval)
        # the share of its full size it holds: in cards, or in tasks for a job that holds none
        full = job.total_cards
        share = cards / full if full else placement.num_tasks / sum(g.replicas for g in job.groups)
        st.speed = (
            self.models.performance.speed(self.cluster, model.rated_tflops, share, extra) * st.efficiency
        )

    def _schedule_finish(self, st: JobStats, now: float) -> None:
        st.epoch += 1
        begin = max(now, st.compute_from)
        self.events.push(begin + st.remaining_s / st.speed, EventKind.FINISH, (st.job.id, st.epoch))

    def _release(self, st: JobStats, now: float) -> None:
        self._book(st, now)
        job = self.running.pop(st.job.id)
        self.index.remove(job.id)
        self._hold(job, -1)
        self.state.release(job.placement)
        job.placement = None
        job.last_run_end = now

    def submit_replica(self, job: Job, service: ServiceModel) -> None:
        """A replica the autoscaler asked for joins the waiting queue now."""
        self.stats[job.id] = JobStats(
            job, math.inf, math.inf, service=service.name, startup_s=service.startup_s
        )
        self.pending.add(job)

    def retire_replica(self, job_id: str, now: float) -> None:
        """The autoscaler stops a replica: it gives its cards back, or leaves the queue."""
        st = self.stats[job_id]
        if job_id in self.running:
            self._release(st, now)
            st.epoch += 1
        else:
            self.pending.remove(job_id)
        st.end, st.outcome = now, "stopped"
        st.job.state = JobState.CANCELLED

    def _finish(self, st: JobStats, now: float) -> None:
        self._release(st, now)
        st.remaining_s = 0.0
        st.end = now
        st.outcome = "succeeded"
        st.job.state = JobState.SUCCEEDED

    def _stop(self, st: JobStats, now: float) -> None:
        """Preempted, reclaimed or broken by a failure: the work since the last checkpoint is lost.
        A replica waits again to be placed (the autoscaler still counts it)."""
        job = st.job
        cards = job.placement.total_cards
        self._release(st, now)
        if st.service:  # nothing to lose but its start-up, paid again when it restarts
            self.fleet.stopped(job.id)
            st.epoch += 1
            job.state = JobState.PENDING
            self.pending.add(job)
            self._push_las_promotion(st, now)
            return
        interval = job.checkpoint_interval_s or math.inf
        lost_compute = st.run_compute_s - (
            math.floor(st.run_compute_s / interval) * interval if math.isfinite(interval) else 0.0
        )
        lost = min(lost_compute * st.speed, st.progress_s - st.lost_progress_s)
        st.remaining_s += lost
        st.lost_progress_s += lost
        st.lost_card_s += lost_compute * cards
        st.overhead_card_s -= lost_compute * cards * (1.0 - st.efficiency)  # counted once, as lost
        st.epoch += 1  # the pending finish event is stale now
        job.state = JobState.PENDING
        self.pending.add(job)
        self._push_las_promotion(st, now)

    def _resize(self, st: JobStats, placement: Placement, now: float) -> None:
        job = st.job
        self._book(st, now)
        self._hold(job, -1)
        self.state.release(job.placement)
        self.state.allocate(placement)
        job.placement = placement
        self._set_speed(st, placement)  # a new checkpoint interval: before the index keeps it
        self.index.remove(job.id)
        self.index.add(job, now)
        del self.running[job.id]  # re-inserted so the snapshot lists jobs in the index's order
        self.running[job.id] = job
        self._hold(job, +1)
        self._schedule_finish(st, now)
        self._push_las_crossing(st)
