"""wanka.core — the scheduling engine. Imports nothing else of wanka: numpy and the standard library only.

Entry point: :func:`run_cycle` over a :class:`Snapshot` with a :class:`CycleConfig` (a policy preset
from :data:`POLICIES` or your own).
"""

from wanka.core.cluster import Cluster, NodeRecord, NodeState
from wanka.core.config import (
    LAS_ORDERS,
    POLICIES,
    Action,
    CycleConfig,
    FairShareConfig,
    JobOrder,
    LasConfig,
    MultifactorWeights,
    PreemptScope,
    QueueOrder,
    get_policy,
)
from wanka.core.cycle import run_cycle
from wanka.core.decisions import (
    CycleResult,
    CycleStats,
    Decision,
    Fit,
    Reservation,
    Resize,
    Snapshot,
    Start,
    Stop,
    StopReason,
)
from wanka.core.fairshare import QueueUsage, accrue
from wanka.core.feasibility import Feasibility, check_feasibility
from wanka.core.hardware import Accelerator, Catalog, Figure, Precision, UnknownAccelerator
from wanka.core.jobs import (
    PRIORITY_CLASSES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    Job,
    JobKind,
    JobState,
    PriorityClass,
    TaskGroup,
)
from wanka.core.pending import PendingIndex
from wanka.core.placement import PlacementStrategy
from wanka.core.quota import FlavorQuota, QueueNode, QueueTree, QuotaError, QuotaUsage
from wanka.core.running import RunningIndex
from wanka.core.state import ClusterState, GroupPlacement, Placement

__all__ = [
    "LAS_ORDERS",
    "POLICIES",
    "PRIORITY_CLASSES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Accelerator",
    "Action",
    "Catalog",
    "Cluster",
    "ClusterState",
    "CycleConfig",
    "CycleResult",
    "CycleStats",
    "Decision",
    "FairShareConfig",
    "Feasibility",
    "Figure",
    "Fit",
    "FlavorQuota",
    "GroupPlacement",
    "InvalidTransition",
    "Job",
    "JobKind",
    "JobOrder",
    "JobState",
    "LasConfig",
    "MultifactorWeights",
    "NodeRecord",
    "NodeState",
    "PendingIndex",
    "Placement",
    "PlacementStrategy",
    "Precision",
    "PreemptScope",
    "PriorityClass",
    "QueueNode",
    "QueueOrder",
    "QueueTree",
    "QueueUsage",
    "QuotaError",
    "QuotaUsage",
    "Reservation",
    "Resize",
    "RunningIndex",
    "Snapshot",
    "Start",
    "Stop",
    "StopReason",
    "TaskGroup",
    "UnknownAccelerator",
    "accrue",
    "check_feasibility",
    "get_policy",
    "run_cycle",
]
