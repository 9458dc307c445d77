"""Jobs, task groups, priority classes and the job state machine."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from operator import attrgetter, is_not

import numpy as np

from wanka.core.state import Placement


class JobKind(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"  # a long-running service: replicas are spread, not packed
    INTERACTIVE = "interactive"
    BATCH = "batch"


class JobState(StrEnum):
    PENDING = "pending"
    ADMITTED = "admitted"  # the core placed it; the backend is starting it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"  # stopped to make room; goes back to PENDING
    HELD = "held"  # waiting, but not considered until released (by its owner or the operator)


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# Every allowed transition. RUNNING/ADMITTED -> PENDING is a requeue (node failure, restart policy).
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ADMITTED, JobState.CANCELLED, JobState.FAILED, JobState.HELD}),
    JobState.HELD: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.ADMITTED: frozenset(
        {JobState.RUNNING, JobState.PENDING, JobState.PREEMPTED, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED, JobState.PENDING}
    ),
    JobState.PREEMPTED: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    def __init__(self, job_id: str, current: JobState, target: JobState):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (terminal)"
        super().__init__(
            f"job {job_id}: cannot go from {current.value} to {target.value}; allowed: {allowed}"
        )


def check_transition(job_id: str, current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(job_id, current, target)


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    value: int
    preemptible: bool = True


PRIORITY_CLASSES: dict[str, PriorityClass] = {
    pc.name: pc
    for pc in (
        PriorityClass("best-effort", 0),
        PriorityClass("low", 100),
        PriorityClass("normal", 500),
        PriorityClass("high", 1000),
        PriorityClass("critical", 10000, preemptible=False),
    )
}


@dataclass(frozen=True, slots=True)
class TaskGroup:
    """``replicas`` tasks of ``cards`` cards each, on one of the ``accelerators`` (models or vendors;
    empty means any). ``min_replicas`` below ``replicas`` makes the group elastic: the gang starts
    with at least ``min_replicas`` and may grow to ``replicas``."""

    role: str = "worker"
    replicas: int = 1
    cards: int = 1
    accelerators: tuple[str, ...] = ()
    cpus: int = 0
    memory_gib: int = 0
    min_replicas: int | None = None
    tasks_per_node: int | None = None  # Slurm's --ntasks-per-node: at most this many on one node

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"task group {self.role!r}: replicas must be >= 1")
        if self.cards < 0:
            raise ValueError(f"task group {self.role!r}: cards must be >= 0")
        if self.min_replicas is not None and not 1 <= self.min_replicas <= self.replicas:
            raise ValueError(f"task group {self.role!r}: min_replicas must be 1..replicas")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise ValueError(f"task group {self.role!r}: tasks_per_node must be >= 1")

    @property
    def gang_min(self) -> int:
        return self.replicas if self.min_replicas is None else self.min_replicas

    @property
    def elastic(self) -> bool:
        return self.gang_min < self.replicas


@dataclass(slots=True, eq=False)
class Job:
    """A job as the scheduler sees it. The core reads jobs; it never mutates them.

    Runtime fields (``start_time``, ``placement``, ``attained_service``, …) are maintained by the
    caller — the twin or the control plane — between cycles.
    """

    id: str
    tenant: str
    queue: str
    groups: tuple[TaskGroup, ...]
    name: str = ""
    priority: int = 500
    priority_class: str = "normal"
    kind: JobKind = JobKind.TRAINING
    time_limit_s: float | None = None
    preemptible: bool = True
    checkpoint_interval_s: float | None = None
    submit_time: float = 0.0
    state: JobState = JobState.PENDING
    start_time: float | None = None
    last_checkpoint_time: float | None = None
    checkpoint_from: float | None = None  # periodic checkpoints count from here (default: start)
    # the waiting job whose reserved nodes it backfilled onto (Start.preemptible_by): that job
    # may evict it whatever their ranks
    preemptible_by: str | None = None
    # when it may be considered at all (core.eligibility): the twin and the control plane keep it
    # out of the pending index until these hold; the cycle itself never looks at them
    dependencies: tuple = ()  # core.eligibility.Dependency, all of which must hold
    array_id: str | None = None  # the job array it is an element of
    array_max_running: int | None = None  # elements of that array running at once, at most
    # the service (or notebook) this job is a replica of: set by whoever submitted it for the
    # service (the control plane's service keeper, the twin), never by a tenant's own submission
    service: str | None = None
    attained_service: float = 0.0  # card-seconds executed so far (Tiresias' 2D attained service)
    last_run_end: float | None = None  # when it last stopped running (Tiresias starvation promotion)
    placement: Placement | None = None
    # cached totals of ``groups`` (-1: not counted yet); not init fields, so dataclasses.replace
    # with other groups counts afresh instead of copying a stale total
    _cards: int = field(default=-1, init=False, repr=False)
    _min_cards: int = field(default=-1, init=False, repr=False)
    _elastic: bool | None = field(default=None, init=False, repr=False)

    @property
    def total_cards(self) -> int:
        """Cards at full size (every group at ``replicas``)."""
        if self._cards < 0:
            self._cards = sum(g.replicas * g.cards for g in self.groups)
        return self._cards

    @property
    def min_cards(self) -> int:
        """Cards at the gang minimum (every group at ``gang_min``)."""
        if self._min_cards < 0:
            self._min_cards = sum(g.gang_min * g.cards for g in self.groups)
        return self._min_cards

    @property
    def elastic(self) -> bool:
        """Whether some group may run below its ``replicas`` (its ``min_replicas`` is smaller),
        whatever its tasks hold: a group of CPU-only tasks shrinks and grows too, so elasticity is
        counted in tasks, not in cards (which are 0 there)."""
        if self._elastic is None:  # cached: read for every running job each cycle
            self._elastic = any(g.elastic for g in self.groups)
        return self._elastic

    @property
    def on_las_ladder(self) -> bool:
        """Whether least-attained-service orders rank this job by the service it has had. Not a
        service's replica: LAS guesses how long a job has left from how long it has run (Tiresias),
        and a replica serves until it is scaled down. Demoted, it would be restarted at each
        threshold by fresh work of its own class, surplus replicas of its own service among them.
        A job a tenant submits stays on the ladder whatever its kind: declaring a long training job
        ``inference`` does not take it off."""
        return self.service is None

    @property
    def las_service(self) -> float:
        """Card-seconds the LAS ladder places this job by: ``attained_service``, 0 off the ladder."""
        return self.attained_service if self.on_las_ladder else 0.0

    def transition(self, target: JobState) -> None:
        check_transition(self.id, self.state, target)
        self.state = target

    def lost_work_s(self, now: float) -> float:
        """Seconds of progress lost if stopped now: time since the last checkpoint (or the start).
        Without a recorded checkpoint, one is assumed every ``checkpoint_interval_s`` from
        ``checkpoint_from`` (a restart delay may come first) or the start."""
        if self.start_time is None:
            return 0.0
        last = self.start_time
        if self.last_checkpoint_time is not None:
            last = max(last, self.last_checkpoint_time)
        elif self.checkpoint_interval_s and math.isfinite(self.checkpoint_interval_s):
            origin = self.start_time if self.checkpoint_from is None else self.checkpoint_from
            elapsed = max(0.0, now - origin)
            last = max(last, origin + (elapsed // self.checkpoint_interval_s) * self.checkpoint_interval_s)
        return max(0.0, now - last)


_ATTAINED, _SERVICE = attrgetter("attained_service"), attrgetter("service")


def las_services(jobs: Sequence[Job]) -> np.ndarray:
    """:attr:`Job.las_service` of many jobs (card-seconds, float64), read in C: a cycle reads it
    for every waiting and running job, and a property call per job was ~5% of a cold cycle."""
    n = len(jobs)
    service = np.fromiter(map(_ATTAINED, jobs), dtype=np.float64, count=n)
    service[np.fromiter(map(is_not, map(_SERVICE, jobs), repeat(None)), dtype=bool, count=n)] = 0.0
    return service


def checkpoint_facts(jobs: list[Job]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per job: start, last checkpoint, checkpoint interval and its origin (float64 seconds; NaN
    where unknown, interval 0 where none), as :func:`lost_work_at` takes them."""
    n, nan = len(jobs), math.nan
    start = np.fromiter((nan if j.start_time is None else j.start_time for j in jobs), np.float64, n)
    saved = np.fromiter(
        (nan if j.last_checkpoint_time is None else j.last_checkpoint_time for j in jobs), np.float64, n
    )
    every = np.fromiter((j.checkpoint_interval_s or 0.0 for j in jobs), np.float64, n)
    origin = np.fromiter(
        (nan if j.checkpoint_from is None else j.checkpoint_from for j in jobs), np.float64, n
    )
    return start, saved, every, origin


def lost_work_s(jobs: list[Job], now: float) -> np.ndarray:
    """:meth:`Job.lost_work_s` of many jobs at once (seconds, float64)."""
    return lost_work_at(now, *checkpoint_facts(jobs))


def lost_work_at(
    now: float, start: np.ndarray, saved: np.ndarray, every: np.ndarray, origin: np.ndarray
) -> np.ndarray:
    """:meth:`Job.lost_work_s` as arrays, from :func:`checkpoint_facts` (the same arithmetic)."""
    origin = np.where(np.isnan(origin), start, origin)
    periodic_ok = (every > 0) & np.isfinite(every)
    every = np.where(periodic_ok, every, 1.0)
    periodic = origin + np.floor(np.maximum(0.0, now - origin) / every) * every
    last = np.where(
        ~np.isnan(saved), np.maximum(start, saved), np.where(periodic_ok, np.maximum(start, periodic), start)
    )
    return np.where(np.isnan(start), 0.0, np.maximum(0.0, now - last))
