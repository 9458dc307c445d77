"""Cycle configuration and the policy presets (a preset is just a configuration)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from wanka.core.placement import PlacementStrategy


class Action(StrEnum):
    RECOVER = "recover"  # stop jobs on failed nodes so they can be requeued
    ADMIT = "admit"  # quota and never-fits checks
    ALLOCATE = "allocate"  # start jobs in policy order
    BACKFILL = "backfill"  # EASY: start later jobs that do not delay the reserved ones
    RECLAIM = "reclaim"  # take lent quota back from borrowers
    PREEMPT = "preempt"  # evict lower-ranked jobs for a higher-ranked one
    RESIZE = "resize"  # grow elastic jobs into idle cards


class JobOrder(StrEnum):
    PRIORITY = "priority"  # priority class, then submit time
    FIFO = "fifo"  # submit time
    MULTIFACTOR = "multifactor"  # Slurm: weighted age, fair share, size and QOS
    LAS = "las"  # Tiresias 2D-LAS: discretised attained service (cards x seconds)
    SHORTEST = "shortest"  # shortest time limit (estimate) first
    PRIORITY_LAS = "priority_las"  # priority class, then Tiresias' LAS queue, then submit time


#: Orders that rank jobs by their attained service: callers keep ``Job.attained_service`` booked.
LAS_ORDERS = (JobOrder.LAS, JobOrder.PRIORITY_LAS)


class QueueOrder(StrEnum):
    GLOBAL = "global"  # one order across all queues
    FAIR_SHARE = "fair_share"  # the queue with the lowest weighted dominant share goes next


class PreemptScope(StrEnum):
    QUEUE = "queue"  # only jobs of the same queue (Volcano/Kueue "within queue")
    CLUSTER = "cluster"  # any queue
    COHORT = "cohort"  # the same queue, or a queue running on borrowed quota (Kueue's reclaimWithinCohort)


@dataclass(frozen=True, slots=True)
class FairShareConfig:
    """Queue share = max over compute, CPU, memory of
    ``history_weight * decayed_usage/(capacity*tau) + (1-history_weight) * allocated/capacity``,
    divided by the queue's normalised weight. ``history_weight = 0`` is plain DRF."""

    history_weight: float = 0.5
    half_life_s: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class MultifactorWeights:
    """Slurm priority/multifactor weights (slurm.schedmd.com/priority_multifactor.html)."""

    age: float = 1000.0
    fairshare: float = 10000.0
    job_size: float = 1000.0
    qos: float = 10000.0  # our priority class plays the role of Slurm's QOS priority
    max_age_s: float = 7 * 86400.0  # PriorityMaxAge default 7-00:00:00
    favor_small: bool = False  # PriorityFavorSmall default NO


@dataclass(frozen=True, slots=True)
class LasConfig:
    """Tiresias discretised LAS. Thresholds in card-seconds; the simulator's example is one threshold
    of 3600 (two queues). ``starvation_factor`` > 0 promotes a job back to queue 0 once it has waited
    that many times its executed time (the paper's STARVELIMIT knob; 0 disables it, as in its runs)."""

    thresholds: tuple[float, ...] = (3600.0,)
    starvation_factor: float = 0.0


LAS_THRESHOLDS: dict[str, tuple[float, ...]] = {
    # the core's default (LasConfig): two queues, one threshold of 3,600 GPU-seconds, as in the
    # Tiresias simulator README's first example (the `tiresias` and `wanka-las` presets)
    "tiresias": (3600.0,),
    # the `wanka` preset: three queues, limits one and ten card-hours (a ×10 ladder, as multi-level
    # feedback queues are built): a job of days no longer shares the last queue, first come first
    # served, with one of an hour or two. Chosen on twelve Philly replays against two, four and five
    # queues: the best worst case (docs/benchmarks.md)
    "wanka": (3600.0, 36000.0),
    # the released simulator (SymbioticLab/Tiresias simulator/jobs.py): num_queue = 3 and
    # queue_limit = [3250, 7200, 18000], of which dlas-gpu uses the first num_queue - 1
    "tiresias-released": (3250.0, 7200.0),
}


def parse_las_thresholds(text: str) -> tuple[float, ...]:
    """A named set of :data:`LAS_THRESHOLDS`, or ascending positive card-seconds, comma-separated.
    Raises ValueError naming what is accepted."""
    if text in LAS_THRESHOLDS:
        return LAS_THRESHOLDS[text]
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v < math.inf for v in values) or list(values) != sorted(set(values)):
        raise ValueError(
            f"expected ascending positive card-seconds such as 3250,7200, or one of "
            f"{', '.join(LAS_THRESHOLDS)}; got {text!r}"
        )
    return values


def with_las_thresholds(policy: CycleConfig, thresholds: tuple[float, ...] | None) -> CycleConfig:
    """The policy with these LAS queue limits when it orders jobs by LAS (else unchanged)."""
    if thresholds is None or policy.job_order not in LAS_ORDERS:
        return policy
    return policy.with_(las=LasConfig(thresholds, policy.las.starvation_factor))


@dataclass(frozen=True)
class CycleConfig:
    name: str = "wanka"
    actions: tuple[Action, ...] = tuple(Action)
    job_order: JobOrder = JobOrder.PRIORITY
    queue_order: QueueOrder = QueueOrder.FAIR_SHARE
    blocking: bool = True  # the first job that does not fit stops the main pass (no starvation)
    reserve_depth: int = 1  # blocked jobs that get a reservation backfill must not delay (EASY: 1)
    # a preemptible job may backfill onto reserved nodes though it would still run at the reserved
    # start: it runs there on loan, and the reservation's job evicts it when it can start (Moab's
    # preemption-based backfill; LSF's PREEMPT_JOBTYPE=BACKFILL). Reserved cards do not sit idle.
    preemptible_backfill: bool = False
    preempt_scope: PreemptScope = PreemptScope.QUEUE
    placement: PlacementStrategy = PlacementStrategy.TOPOLOGY
    fair_share: FairShareConfig = field(default_factory=FairShareConfig)
    multifactor: MultifactorWeights = field(default_factory=MultifactorWeights)
    las: LasConfig = field(default_factory=LasConfig)
    max_preemptors: int = 16  # pending jobs per cycle that may evict others (bounds the cycle's cost)
    # a job started while a preemptor was already waiting is not that preemptor's victim until it
    # has run this long (s): the cycle that started it judged the preemptor could not use its cards,
    # and the next cycle, its fair-share order or reservation moved by those starts, must not undo
    # that at once (KAI's preempt-min-runtime and Slurm's PreemptExemptTime, narrowed to preemptors
    # that waited at the start). Reclaim and shrinks keep the same window: a reclaimer that waited
    # through the start takes its quota back once the window ends (docs/policies.md). 0: off.
    preempt_min_runtime_s: float = 60.0
    default_time_limit_s: float | None = None  # estimate for jobs that give none (None: unknown)
    clock: Callable[[], float] | None = None  # injected, only to time phases; decisions never use it

    def with_(self, **changes) -> CycleConfig:
        return replace(self, **changes)


A = Action
POLICIES: dict[str, CycleConfig] = {
    "fifo": CycleConfig(
        name="fifo",
        actions=(A.RECOVER, A.ADMIT, A.ALLOCATE),
        job_order=JobOrder.FIFO,
        queue_order=QueueOrder.GLOBAL,
        blocking=True,
        reserve_depth=0,
    ),
    "slurm": CycleConfig(
        name="slurm",
        actions=(A.RECOVER, A.ADMIT, A.ALLOCATE, A.BACKFILL, A.PREEMPT),
        job_order=JobOrder.MULTIFACTOR,
        queue_order=QueueOrder.GLOBAL,
        blocking=True,
        reserve_depth=1,
        preempt_scope=PreemptScope.CLUSTER,
    ),
    "tiresias": CycleConfig(
        name="tiresias",
        actions=(A.RECOVER, A.ADMIT, A.ALLOCATE, A.PREEMPT),
        job_order=JobOrder.LAS,
        queue_order=QueueOrder.GLOBAL,
        blocking=False,
        reserve_depth=0,
        preempt_scope=PreemptScope.CLUSTER,
        # the published simulator spares no start; with no reservations or fair share its order
        # moves only with attained service, so a start is never undone for a reason it caused
        preempt_min_runtime_s=0.0,
    ),
    "drf": CycleConfig(
        name="drf",
        actions=(A.RECOVER, A.ADMIT, A.ALLOCATE),
        job_order=JobOrder.FIFO,
        queue_order=QueueOrder.FAIR_SHARE,
        blocking=False,
        reserve_depth=0,
        fair_share=FairShareConfig(history_weight=0.0),
    ),
    # the priority class, then least attained service on a three-queue ladder (the submit time
    # within a queue), fair share between queues, EASY reservations with preemptible backfill,
    # preemption within the queue and of borrowed quota across the cohort (docs/policies.md)
    "wanka": CycleConfig(
        name="wanka",
        job_order=JobOrder.PRIORITY_LAS,
        preempt_scope=PreemptScope.COHORT,
        preemptible_backfill=True,
        las=LasConfig(LAS_THRESHOLDS["wanka"]),
    ),
    # wanka with Tiresias' own two LAS queues (one threshold, 3,600 card-s)
    "wanka-las": CycleConfig(
        name="wanka-las",
        job_order=JobOrder.PRIORITY_LAS,
        preempt_scope=PreemptScope.COHORT,
        preemptible_backfill=True,
    ),
    # wanka as it was before LAS: the priority class, then submit time, preemption within the
    # queue only (for centres whose jobs cannot checkpoint: no job yields for having run long)
    "wanka-fifo": CycleConfig(name="wanka-fifo", preemptible_backfill=True),
}


def get_policy(name: str) -> CycleConfig:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}") from None
