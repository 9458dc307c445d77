"""What a cycle takes in (the snapshot) and gives back (decisions, reservations, stats)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

from wanka.core.cluster import Cluster
from wanka.core.fairshare import QueueUsage
from wanka.core.jobs import Job
from wanka.core.quota import QueueTree
from wanka.core.state import ClusterState, Placement

if TYPE_CHECKING:
    from wanka.core.pending import PendingIndex
    from wanka.core.running import RunningIndex


@dataclass
class Snapshot:
    """Everything one cycle decides over. The core never mutates it.

    ``state`` must hold exactly the placements of ``running`` (jobs that hold cards: admitted or
    running). ``usage`` is each queue's decayed past usage, maintained by the caller with
    :func:`wanka.core.fairshare.accrue`. ``index``, when given, must hold exactly ``running``: a
    caller that runs many cycles keeps it up to date instead of letting every cycle rebuild it;
    ``pending_index``, when given, must hold exactly ``pending``, for the same reason.
    """

    now: float
    cluster: Cluster
    state: ClusterState
    queues: QueueTree
    pending: Sequence[Job]
    running: Sequence[Job]
    usage: Mapping[str, QueueUsage] = field(default_factory=dict)
    index: RunningIndex | None = None  # the running set kept by a long-lived caller (core.running)
    pending_index: PendingIndex | None = None  # the waiting queue kept likewise (core.pending)


class Fit(IntEnum):
    """How close a job came to starting, ordered: more is better."""

    NEVER = 0  # can never run here (bad queue, no such cards, larger than could ever be given)
    NO_QUOTA = 1  # its queue has no quota left now
    NO_FIT = 2  # quota allows it, but no domain has room now
    RESERVED = 3  # it would fit, but only by delaying a reserved job
    FIT = 4


class StopReason(StrEnum):
    PREEMPTED = "preempted"  # for a higher-ranked job
    RECLAIMED = "reclaimed"  # its queue was borrowing quota the owner now needs
    NODE_FAILURE = "node_failure"  # a node it ran on went down


@dataclass(frozen=True, slots=True)
class Start:
    job_id: str
    placement: Placement
    backfilled: bool = False
    # on nodes reserved for this waiting job, which may evict it (CycleConfig.preemptible_backfill);
    # the caller keeps it in Job.preemptible_by while the job runs
    preemptible_by: str | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the job and requeue it. Callers stop victims before starting what replaces them."""

    job_id: str
    reason: StopReason
    requeue: bool = True


@dataclass(frozen=True, slots=True)
class Resize:
    """A running elastic job's new size. ``placement`` is its whole new placement: a superset of
    the old one when it grows, a subset when it shrinks (``shrink``: it gives surplus tasks back to
    a waiting job, so callers carry shrinks out before starts, and grows after them)."""

    job_id: str
    placement: Placement
    shrink: bool = False


Decision = Start | Stop | Resize


@dataclass(frozen=True, slots=True)
class Reservation:
    """A blocked job's promised start: backfill may not delay it. ``start`` is the estimate from
    running jobs' time limits (seconds, the snapshot's clock), or None when a job it waits for has
    no limit: then the nodes are held outright, and the cards they free wait for it (freed
    capacity is reserved, so a stream of small jobs cannot starve it). ``nodes`` are the nodes it
    would then use."""

    job_id: str
    start: float | None
    model: str
    nodes: frozenset[int]


@dataclass
class CycleStats:
    pending: int = 0
    running: int = 0
    started: int = 0
    stopped: int = 0
    resized: int = 0
    tasks_placed: int = 0
    placement_attempts: int = 0
    quick_rejects: int = 0
    # reclaim/preempt stopped at ``max_preemptors`` waiting jobs after evicting for some of them:
    # more may be able to preempt now, so the caller should run another cycle at once
    more_preemptors: bool = False
    phase_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class CycleResult:
    decisions: list[Decision]
    reservations: list[Reservation]
    unschedulable: dict[str, str]  # job id -> why it can never run as submitted
    stats: CycleStats
    # job id -> how close it came this cycle, for the waiting jobs it tried and did not start (a
    # job it never reached waits behind those: Slurm's Reason "Priority")
    outcomes: dict[str, Fit] = field(default_factory=dict)
    # the waiting queue's order, listed only when asked for: a busy cycle walks a small part of it
    order_of: Callable[[], list[str]] = field(default=list, repr=False)

    @cached_property
    def order(self) -> list[str]:
        """Pending job ids in the policy's order (queue positions), as the cycle saw them."""
        return self.order_of()

    @property
    def starts(self) -> list[Start]:
        return [d for d in self.decisions if isinstance(d, Start)]

    @property
    def stops(self) -> list[Stop]:
        return [d for d in self.decisions if isinstance(d, Stop)]

    @property
    def resizes(self) -> list[Resize]:
        return [d for d in self.decisions if isinstance(d, Resize)]

    def estimated_start(self, job_id: str) -> float | None:
        for r in self.reservations:
            if r.job_id == job_id:
                return r.start
        return None
