"""The digital twin's loop: the real ``core.run_cycle``, driven by simulated time.

Events (arrivals, finishes, scheduling rounds) come off a deterministic heap. A round runs only when
something changed since the last one, and at most once per ``cycle_interval_s``, so the cost follows
the number of jobs, not the length of the simulated period. The twin applies the core's decisions the
way the control plane will: stops first (the victim loses the work since its last checkpoint and
waits again), then starts and resizes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from wanka.core import (
    Cluster,
    ClusterState,
    CycleConfig,
    Job,
    JobState,
    Placement,
    QueueTree,
    QueueUsage,
    Snapshot,
    accrue,
    run_cycle,
)
from wanka.sim.engine import EventKind, EventQueue


@dataclass(frozen=True)
class SimConfig:
    cycle_interval_s: float = 60.0  # rounds are batched: at most one per interval
    half_life_s: float = 7 * 86400.0  # fair-share usage decay
    until_s: float | None = None  # stop simulating at this time (jobs still open are reported so)


@dataclass(slots=True)
class JobStats:
    """What happened to one job; the core's Job is kept beside it."""

    job: Job
    duration_s: float  # run time at full size on its accelerator
    remaining_s: float
    first_start: float | None = None
    end: float | None = None
    run_since: float | None = None
    speed: float = 1.0  # fraction of full size running (elastic jobs)
    epoch: int = 0  # bumps on every (re)start, so a stale finish event is ignored
    allocated_card_s: float = 0.0
    lost_card_s: float = 0.0
    preemptions: int = 0
    outcome: str = ""  # succeeded, unschedulable, or "" while open


@dataclass
class SimResult:
    policy: str
    cluster: Cluster
    stats: list[JobStats]
    cycles: int
    events: int
    wall_s: float
    rejected: dict[str, str] = field(default_factory=dict)


class Twin:
    def __init__(
        self,
        cluster: Cluster,
        queues: QueueTree,
        jobs: Sequence[tuple[Job, float]],
        policy: CycleConfig,
        config: SimConfig | None = None,
    ):
        """``jobs``: (job, duration at full size in seconds); each job's ``submit_time`` is its arrival."""
        self.cluster, self.queues, self.policy = cluster, queues, policy
        self.config = config or SimConfig()
        self.stats = {job.id: JobStats(job, duration, duration) for job, duration in jobs}
        if len(self.stats) != len(jobs):
            raise ValueError("job ids must be unique")
        self.state = ClusterState.empty(cluster)
        self.pending: dict[str, Job] = {}
        self.running: dict[str, Job] = {}
        leaves = [n for n in queues.names if queues.is_leaf(n)]
        self.usage = {q: QueueUsage() for q in leaves}
        self.rate = {q: [0.0, 0.0, 0.0] for q in leaves}  # compute PFLOPS, CPUs, GiB held now
        self.events = EventQueue()
        self.rejected: dict[str, str] = {}

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> SimResult:
        t0 = time.perf_counter()
        for st in sorted(self.stats.values(), key=lambda s: (s.job.submit_time, s.job.id)):
            self.events.push(st.job.submit_time, EventKind.ARRIVAL, st.job.id)
        cycles = events = 0
        round_queued = False
        last_round = float("-inf")
        until = self.config.until_s
        while self.events:
            now, kind, payload = self.events.pop()
            if until is not None and now > until:
                break
            events += 1
            changed = False
            if kind is EventKind.ARRIVAL:
                self.pending[payload] = self.stats[payload].job
                changed = True
            elif kind is EventKind.FINISH:
                job_id, epoch = payload
                st = self.stats[job_id]
                if st.epoch == epoch and job_id in self.running:
                    self._finish(st, now)
                    changed = True
            else:
                round_queued = False
                last_round = now
                cycles += 1
                self._round(now)
            if changed and not round_queued and self.pending:
                self.events.push(max(now, last_round + self.config.cycle_interval_s), EventKind.CYCLE)
                round_queued = True
        return SimResult(
            self.policy.name,
            self.cluster,
            list(self.stats.values()),
            cycles,
            events,
            time.perf_counter() - t0,
            dict(self.rejected),
        )

    def _round(self, now: float) -> None:
        for q, u in self.usage.items():
            self.usage[q] = accrue(u, now, tuple(self.rate[q]), self.config.half_life_s)
        for job in self.running.values():  # progress and attained service (Tiresias' LAS order)
            self._book(self.stats[job.id], now)
        snapshot = Snapshot(
            now,
            self.cluster,
            self.state,
            self.queues,
            list(self.pending.values()),
            list(self.running.values()),
            self.usage,
        )
        result = run_cycle(snapshot, self.policy)
        for d in result.stops:
            self._stop(self.stats[d.job_id], now)
        for d in result.starts:
            self._start(self.stats[d.job_id], d.placement, now)
        for d in result.resizes:
            self._resize(self.stats[d.job_id], d.placement, now)
        for job_id, why in result.unschedulable.items():
            if job_id in self.pending:
                del self.pending[job_id]
                self.stats[job_id].outcome = "unschedulable"
                self.stats[job_id].job.state = JobState.FAILED
                self.rejected[job_id] = why

    # --- applying decisions --------------------------------------------------------------------

    def _book(self, st: JobStats, now: float) -> None:
        """Book what happened since ``run_since``: cards held, work done (at the current speed) and
        attained service; then restart the clock. Every path that changes a running job calls it."""
        dt = now - st.run_since
        cards = st.job.placement.total_cards
        st.allocated_card_s += cards * dt
        st.job.attained_service += cards * dt
        st.remaining_s = max(0.0, st.remaining_s - dt * st.speed)
        st.run_since = now

    def _hold(self, job: Job, sign: int) -> None:
        p = job.placement
        rate = self.rate[job.queue]
        rate[0] += (
            sign * p.total_cards * self.cluster.models[self.cluster.model_index[p.model]].rated_tflops / 1e3
        )
        rate[1] += sign * p.total_cpus
        rate[2] += sign * p.total_memory

    def _start(self, st: JobStats, placement: Placement, now: float) -> None:
        job = self.pending.pop(st.job.id)
        self.state.allocate(placement)
        job.placement = placement
        job.start_time = now
        job.last_checkpoint_time = None
        job.state = JobState.RUNNING
        self.running[job.id] = job
        self._hold(job, +1)
        if st.first_start is None:
            st.first_start = now
        st.run_since = now
        st.speed = placement.total_cards / job.total_cards  # elastic: linear in size (documented)
        self._schedule_finish(st, now)

    def _schedule_finish(self, st: JobStats, now: float) -> None:
        st.epoch += 1
        self.events.push(now + st.remaining_s / st.speed, EventKind.FINISH, (st.job.id, st.epoch))

    def _release(self, st: JobStats, now: float) -> None:
        self._book(st, now)
        job = self.running.pop(st.job.id)
        self._hold(job, -1)
        self.state.release(job.placement)
        job.placement = None
        job.last_run_end = now

    def _finish(self, st: JobStats, now: float) -> None:
        self._release(st, now)
        st.remaining_s = 0.0
        st.end = now
        st.outcome = "succeeded"
        st.job.state = JobState.SUCCEEDED

    def _stop(self, st: JobStats, now: float) -> None:
        """Preempted or reclaimed: the work since the last checkpoint is lost, then it waits again."""
        job = st.job
        lost = job.lost_work_s(now)  # since its last checkpoint, or since this run began
        cards = job.placement.total_cards
        self._release(st, now)
        st.remaining_s = min(st.duration_s, st.remaining_s + lost * st.speed)
        st.lost_card_s += lost * cards
        st.preemptions += 1
        st.epoch += 1  # the pending finish event is stale now
        job.state = JobState.PENDING
        self.pending[job.id] = job

    def _resize(self, st: JobStats, placement: Placement, now: float) -> None:
        job = st.job
        self._book(st, now)
        self._hold(job, -1)
        self.state.release(job.placement)
        self.state.allocate(placement)
        job.placement = placement
        self._hold(job, +1)
        st.speed = placement.total_cards / job.total_cards
        self._schedule_finish(st, now)
