"""Services in the twin: a request curve per service, replicas set by the control plane's own
autoscaler, and what serving costs the training queues (docs/twin.md, "Services").

Every ``autoscale_every_s`` of simulated time the fleet, for every service:

1. reads its request rate from a **diurnal curve**: a cosine between ``trough_rps`` and
   ``peak_rps`` peaking at ``peak_hour`` (simulated time 0 is a Monday, 00:00), times ``weekend``
   on Saturdays and Sundays, times a lognormal factor drawn per hour (``noise``, its sigma). Daily
   and weekly cycles are what published serving traces show (Azure Functions, Shahrad et al.,
   ATC '20; Azure OpenAI's, BurstGPT, Wang et al., 2024); the shape and its numbers are ours;
2. averages it over the scaling window (the rate at the window's middle: the curve is smooth) and
   hands it to :class:`wanka.core.autoscale.Scaler` - the keeper's class, unchanged: requests per
   second, or requests in flight by Little's law (rate x ``latency_s``);
3. submits replica jobs up to the count, or stops the surplus in
   :func:`wanka.core.autoscale.retire_order`. A replica is a job of one task (kind ``inference``)
   the core places like any other; those up to ``min`` within the queue's nominal quota are never
   preempted, the rest are preemptible (:func:`wanka.core.autoscale.guaranteed_replicas`).

A started replica is ready after ``startup_s`` (loading its model); until then it holds its cards
without serving. Demand is booked per step: the requests that arrived, and how many of them the
ready replicas could take at their target load (``demand_covered``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wanka.core import PRIORITY_CLASSES, Job, JobKind, QueueTree, TaskGroup
from wanka.core.autoscale import (
    Metric,
    ReplicaView,
    Scaler,
    ScalingPolicy,
    guaranteed_replicas,
    nominal_cards,
    recommendations,
    retire_order,
)

DAY, HOUR = 86400.0, 3600.0


@dataclass(frozen=True, slots=True)
class DiurnalLoad:
    """A service's requests per second over simulated time (module docstring)."""

    peak_rps: float
    trough_rps: float = 0.0
    peak_hour: float = 14.0  # hour of the day the curve peaks
    weekend: float = 1.0  # factor on Saturdays and Sundays
    noise: float = 0.0  # sigma of a lognormal factor drawn per hour

    def __post_init__(self) -> None:
        if not (0 <= self.trough_rps <= self.peak_rps) or self.weekend < 0 or self.noise < 0:
            raise ValueError(f"load: need 0 <= trough_rps <= peak_rps, weekend >= 0, noise >= 0: {self}")


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """One service as the twin runs it: the scheduling half of a service spec plus its load."""

    name: str
    queue: str
    policy: ScalingPolicy
    load: DiurnalLoad
    cards: int = 1  # per replica
    tenant: str = ""  # default: the queue
    priority_class: str = "normal"
    cpus: int = 0
    memory_gib: int = 0
    accelerators: tuple[str, ...] = ()
    startup_s: float = 120.0  # from start to ready (loading the model)
    latency_s: float = 1.0  # a request's time in a replica: in flight = rate x latency


@dataclass(slots=True)
class ServiceStats:
    """What happened to one service over a run."""

    model: ServiceModel
    requests: float = 0.0  # requests that arrived (integral of the rate)
    covered: float = 0.0  # ... of which the ready replicas could take at their target load
    scale_events: int = 0  # changes of the autoscaler's count
    replicas_started: int = 0  # replica starts, restarts after a preemption or failure included
    peak_desired: int = 0
    unschedulable: str = ""  # why a replica can never be placed: the service stopped scaling


@dataclass
class _Service:
    stats: ServiceStats
    scaler: Scaler
    capacity: float  # requests/s one ready replica takes at its target load
    index: int
    steady: int = 0  # its replicas waiting or running that are never preempted
    live: list[str] = field(default_factory=list)  # replica jobs waiting or running, oldest first
    ready: set[str] = field(default_factory=set)
    made: int = 0


def check_services(services: Sequence[ServiceModel], queues: QueueTree) -> None:
    """ValueError naming the service when its queue is not a leaf of ``queues`` (the message lists
    them), its priority class is unknown, or two services of one queue share a name."""
    names = [(s.queue, s.name) for s in services]
    if len(set(names)) != len(names):
        raise ValueError("services: two services of one queue share a name")
    leaves = [n for n in queues.names if queues.is_leaf(n)]
    for s in services:
        if s.queue not in queues.index or not queues.is_leaf(s.queue):
            shown = ", ".join(leaves[:30]) + (f", ... ({len(leaves)} in all)" if len(leaves) > 30 else "")
            raise ValueError(
                f"service {s.name}: the workload has no leaf queue {s.queue!r}; its queues: {shown}"
            )
        if s.priority_class not in PRIORITY_CLASSES:
            raise ValueError(f"service {s.name}: unknown priority class {s.priority_class!r}")


class Fleet:
    """The twin's services. ``twin`` is the :class:`wanka.sim.twin.Twin` that owns the pending
    queue and the running jobs; the fleet submits and stops replicas through it."""

    def __init__(self, services: Sequence[ServiceModel], queues: QueueTree, seed: int, every_s: float):
        check_services(services, queues)
        self.every_s, self.seed = every_s, seed
        self.services = [
            _Service(
                ServiceStats(s),
                Scaler(s.policy, s.policy.min),
                s.policy.target if s.policy.metric is Metric.RPS else s.policy.target / s.latency_s,
                i,
            )
            for i, s in enumerate(services)
        ]
        self.queues = queues
        self.of: dict[str, _Service] = {}  # replica job id -> its service
        self.starting: list[tuple[float, str, int]] = []  # (ready at, replica, its run) heap
        m = [s.model for s in (x.stats for x in self.services)]
        self.peak = np.array([x.load.peak_rps for x in m])
        self.trough = np.array([x.load.trough_rps for x in m])
        self.peak_hour = np.array([x.load.peak_hour for x in m])
        self.weekend = np.array([x.load.weekend for x in m])
        self.noise = np.array([x.load.noise for x in m])
        # observed load per request/s: 1 for rps, the latency for in flight (Little's law)
        self.per_request = np.array([x.latency_s if x.policy.metric is Metric.INFLIGHT else 1.0 for x in m])
        self.noisy = bool(self.noise.any())
        self.requests = np.zeros(len(m))  # the rate summed over steps (x every_s: requests)
        self.covered = np.zeros(len(m))
        self.target = np.array([x.policy.target for x in m])
        self.lo = np.array([x.policy.min for x in m])
        self.hi = np.array([x.policy.max for x in m])
        self.capacity = np.array([x.capacity for x in self.services])
        self.settled = np.full(len(m), -1)
        self.ready_count = np.zeros(len(m))
        self._noise_hour, self._noise_factor = -1, np.ones(len(m))
        self.closed_at: float | None = None
        self.held: dict[str, int] = {}  # queue -> cards of its never-preempted replicas
        self.guaranteed: set[str] = set()  # replicas live and never preempted
        self.nominal = [nominal_cards(queues, x.queue, x.accelerators) for x in m]

    def __bool__(self) -> bool:
        return bool(self.services)

    @property
    def serving(self) -> bool:
        """Services are still in their period (the twin runs on while they are)."""
        return bool(self.services) and self.closed_at is None

    def close(self, now: float, twin) -> bool:
        """The simulated period ends: every replica stops. Returns whether any did."""
        self.closed_at = now
        stopped = False
        for svc in self.services:
            for job_id in list(svc.live):
                self._retire(svc, job_id, now, twin)
                stopped = True
        return stopped

    def rps(self, t: float) -> np.ndarray:
        """Every service's request rate at ``t`` (seconds)."""
        hour = t / HOUR
        shape = 0.5 * (1.0 + np.cos(2 * np.pi * ((hour % 24.0) - self.peak_hour) / 24.0))
        rate = self.trough + (self.peak - self.trough) * shape
        if (hour // 24.0) % 7 >= 5:
            rate = rate * self.weekend
        return rate * self._factor(int(hour)) if self.noisy else rate

    def _factor(self, hour: int) -> np.ndarray:
        """The hour's lognormal noise per service (mean 1), drawn from the seed and the hour alone,
        so every policy compared meets the same load."""
        if hour != self._noise_hour:
            rng = np.random.default_rng([self.seed, 7919, hour])
            z = rng.standard_normal(len(self.services))
            self._noise_hour, self._noise_factor = hour, np.exp(self.noise * z - self.noise**2 / 2)
        return self._noise_factor

    # --- each step ------------------------------------------------------------------------------

    def step(self, now: float, twin) -> bool:
        """Mark replicas whose start-up ended ready, book the demand of the step now beginning
        (at its rate), let every autoscaler see the load, and submit or stop replicas to match.
        Returns whether the twin's queue or cards changed."""
        while self.starting and self.starting[0][0] <= now:
            _, job_id, run = heapq.heappop(self.starting)
            st = twin.stats[job_id]
            if st.runs == run and job_id in twin.running:
                svc = self.of[job_id]
                svc.ready.add(job_id)
                self.ready_count[svc.index] += 1
        rate = self.rps(now)
        self.requests += rate
        self.covered += np.minimum(rate, self.ready_count * self.capacity)
        # the average over a window of seconds of a curve that moves over hours is its rate now;
        # a step expecting less than one request sees none (so a service may sleep at night)
        observed = np.where(rate * self.every_s >= 1.0, rate, 0.0) * self.per_request
        recs = recommendations(observed, self.target, self.lo, self.hi)
        changed = False
        for i in np.flatnonzero(recs != self.settled):
            svc = self.services[i]
            if svc.stats.unschedulable:
                continue
            if svc.scaler.step(now, float(observed[i])) is not None:
                svc.stats.scale_events += 1
            settled = svc.scaler.settled
            self.settled[i] = -1 if settled is None else settled
            want = svc.scaler.replicas
            svc.stats.peak_desired = max(svc.stats.peak_desired, want)
            if want != len(svc.live):
                changed |= self._match(svc, want, now, twin)
        return changed

    def _match(self, svc: _Service, want: int, now: float, twin) -> bool:
        m = svc.stats.model
        if want > len(svc.live):
            held = self.held.get(m.queue, 0) - svc.steady * m.cards  # the queue's other services'
            sure = guaranteed_replicas(m.policy.min, m.cards, self.nominal[svc.index], held)
            for _ in range(want - len(svc.live)):
                keep = svc.steady < sure
                svc.steady += keep
                self.held[m.queue] = self.held.get(m.queue, 0) + keep * m.cards
                job = self._replica(svc, not keep, now, twin)
                if keep:
                    self.guaranteed.add(job.id)
                twin.submit_replica(job, m)
            return True
        views = [
            ReplicaView(r, r in twin.running, not twin.stats[r].job.preemptible, r in svc.ready, k)
            for k, r in enumerate(svc.live)
        ]
        for v in retire_order(views)[: len(svc.live) - want]:
            self._retire(svc, v.key, now, twin)
        return True

    def _retire(self, svc: _Service, job_id: str, now: float, twin) -> None:
        self._forget(svc, job_id)
        twin.retire_replica(job_id, now)

    def _forget(self, svc: _Service, job_id: str) -> None:
        """The replica no longer counts: not live, not ready, its guarantee given back."""
        if job_id in self.guaranteed:
            self.guaranteed.discard(job_id)
            svc.steady -= 1
            self.held[svc.stats.model.queue] -= svc.stats.model.cards
        self.stopped(job_id)
        svc.live.remove(job_id)

    def _replica(self, svc: _Service, preemptible: bool, now: float, twin) -> Job:
        m = svc.stats.model
        job_id = ""
        while (
            not job_id or job_id in twin.stats
        ):  # '/' is in no queue or service name; a trace id may hold it
            svc.made += 1
            job_id = f"{m.queue}/{m.name}/replica-{svc.made}"
        pc = PRIORITY_CLASSES[m.priority_class]
        job = Job(
            id=job_id,
            tenant=m.tenant or m.queue,
            queue=m.queue,
            groups=(TaskGroup("replica", 1, m.cards, m.accelerators, cpus=m.cpus, memory_gib=m.memory_gib),),
            name=f"{m.name} replica",
            priority=pc.value,
            priority_class=pc.name,
            kind=JobKind.INFERENCE,
            preemptible=preemptible,
            submit_time=now,
            service=m.name,
        )
        svc.live.append(job.id)
        self.of[job.id] = svc
        return job

    # --- what the twin tells the fleet -----------------------------------------------------------

    def started(self, job_id: str, now: float, run: int) -> None:
        svc = self.of[job_id]
        svc.stats.replicas_started += 1
        heapq.heappush(self.starting, (now + svc.stats.model.startup_s, job_id, run))

    def stopped(self, job_id: str) -> None:
        """A replica stopped running (preempted, broken by a failure, or retired)."""
        svc = self.of[job_id]
        if job_id in svc.ready:
            svc.ready.discard(job_id)
            self.ready_count[svc.index] -= 1

    def unschedulable(self, job_id: str, why: str) -> None:
        """The core found a replica can never be placed (too big for any node or quota): the
        service runs no more replicas; its demand counts as not covered."""
        svc = self.of[job_id]
        self._forget(svc, job_id)
        svc.stats.unschedulable = why

    def results(self) -> list[ServiceStats]:
        for i, svc in enumerate(self.services):
            svc.stats.requests = float(self.requests[i] * self.every_s)
            svc.stats.covered = float(self.covered[i] * self.every_s)
        return [s.stats for s in self.services]


def synthetic_services(
    queues: QueueTree, node_cards: int, total_cards: int, seed: int, per_10k: float = 60.0
):
    """Services for a cluster of ``total_cards`` whose queues are ``queues``: ``per_10k`` per 10,000
    cards, each in a leaf queue drawn by its normalised nominal share. Our assumptions, stated in
    docs/twin.md: replicas of 1, 2, 4 or 8 cards (weights 0.3/0.3/0.2/0.2, at most a node),
    ``min`` 1-3, ``max`` 2-4 times that; 10 requests/s per replica as the target; a peak of 50-90 %
    of ``max`` replicas' worth, a trough of 10-30 % of the peak, peaking between 10:00 and 16:00,
    weekends at 70 %, 10 % hourly noise; priority ``high``; two minutes to load a model."""
    rng = np.random.default_rng([seed, 4099])
    leaves = [n for n in queues.names if queues.is_leaf(n)]
    share = np.array([queues.norm_share[queues.index[q]] for q in leaves], dtype=np.float64)
    share = share / share.sum() if share.sum() > 0 else np.full(len(leaves), 1.0 / len(leaves))
    count = max(1, round(per_10k * total_cards / 10_000))
    sizes = [c for c in (1, 2, 4, 8) if c <= node_cards] or [node_cards]
    weights = np.array([0.3, 0.3, 0.2, 0.2][: len(sizes)])
    out = []
    for i in range(count):
        queue = leaves[int(rng.choice(len(leaves), p=share))]
        lo = int(rng.integers(1, 4))
        hi = min(64, lo * int(rng.integers(2, 5)))
        target = 10.0
        peak = target * hi * float(rng.uniform(0.5, 0.9))
        out.append(
            ServiceModel(
                name=f"svc-{i:04d}",
                queue=queue,
                policy=ScalingPolicy(Metric.RPS, target, lo, hi),
                load=DiurnalLoad(
                    peak, peak * float(rng.uniform(0.1, 0.3)), float(rng.uniform(10, 16)), 0.7, 0.1
                ),
                cards=int(rng.choice(sizes, p=weights / weights.sum())),
                priority_class="high",
            )
        )
    return out


def serving_summary(stats: Sequence, services: Sequence[ServiceStats], serving_s: float) -> dict:
    """The serving keys of a run's metrics (docs/twin.md): ``stats`` the run's JobStats,
    ``serving_s`` how long the services served (the averages are over it). A replica's wait is
    from its submission to its first start, or to when it was stopped (or the period ended)
    without ever starting."""
    replicas = [s for s in stats if s.service]
    held = sum(s.allocated_card_s for s in replicas)
    sure = sum(s.allocated_card_s for s in replicas if not s.job.preemptible)
    waits = np.array(
        [
            (s.first_start if s.first_start is not None else (s.end if s.end is not None else serving_s))
            - s.job.submit_time
            for s in replicas
        ]
    )
    requests = sum(s.requests for s in services)
    covered = sum(s.covered for s in services)
    period = max(serving_s, 1e-9)
    return {
        "services": len(services),
        "services_unschedulable": sum(1 for s in services if s.unschedulable),
        "unschedulable": [
            {"service": s.model.name, "queue": s.model.queue, "why": s.unschedulable}
            for s in services
            if s.unschedulable
        ],
        "serving_s": serving_s,
        "replicas_submitted": len(replicas),
        "replica_starts": sum(s.replicas_started for s in services),
        "scale_events": sum(s.scale_events for s in services),
        "serving_card_hours": held / HOUR,
        "guaranteed_card_hours": sure / HOUR,
        "extra_card_hours": (held - sure) / HOUR,
        "avg_serving_cards": held / period,
        "avg_guaranteed_cards": sure / period,
        "replica_preemptions": sum(s.preemptions for s in replicas),
        "replica_failures": sum(s.failures for s in replicas),
        "p50_replica_wait_s": float(np.percentile(waits, 50)) if len(waits) else 0.0,
        "p90_replica_wait_s": float(np.percentile(waits, 90)) if len(waits) else 0.0,
        "requests": requests,
        "demand_covered": float(covered / requests) if requests > 0 else 1.0,
    }
