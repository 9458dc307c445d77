"""The running set as a cycle needs it, and an index a long-lived caller keeps up to date.

Opening a session used to walk every running job (its queue, model, expected end, quota usage):
O(running) per cycle however little changed. A caller that runs many cycles over a slowly changing
cluster (the twin, the control plane) keeps a :class:`RunningIndex` instead, adding and removing
jobs as they start and stop, and passes it in the snapshot; the session then copies it in
O(queues + running) dictionary work instead of rebuilding it. Without one, the session builds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wanka.core.cluster import Cluster
from wanka.core.jobs import Job
from wanka.core.quota import QueueTree
from wanka.core.state import Placement


@dataclass(slots=True)
class Running:
    """A job holding cards in a session."""

    job: Job
    placement: Placement
    flavor: int
    queue: int
    end: float  # expected end from its time limit (inf when unknown)

    @property
    def cards(self) -> int:
        return self.placement.total_cards

    @property
    def cpus(self) -> int:
        return self.placement.total_cpus

    @property
    def memory(self) -> int:
        return self.placement.total_memory


def effective_time_limit(
    job: Job, tree: QueueTree | None, default_time_limit_s: float | None
) -> float | None:
    """The job's own time limit, else its queue's default (Slurm's DefaultTime, falling back to
    MaxTime), else the policy's default; None when nothing bounds it. Seconds."""
    if job.time_limit_s is not None:
        return job.time_limit_s
    if tree is not None:
        q = tree.index.get(job.queue)
        if q is not None and tree.default_time_limit[q] is not None:
            return tree.default_time_limit[q]
    return default_time_limit_s


def expected_end(
    job: Job, now: float, default_time_limit_s: float | None, tree: QueueTree | None = None
) -> float:
    """When ``job`` is due to end by its effective time limit; inf when unbounded."""
    limit = effective_time_limit(job, tree, default_time_limit_s)
    if limit is None:
        return math.inf
    start = job.start_time if job.start_time is not None else now
    return start + limit


class RunningIndex:
    """Running jobs by id with the totals a session starts from: cards held per (queue, cluster
    model), cpus and memory per queue, which jobs are elastic, and the priorities of the
    preemptible ones per queue (so preemption can tell at once when nobody may be evicted).

    The caller adds a job when it starts (after setting ``placement`` and ``start_time``) and
    removes it when it stops; a resized job is removed and added again, and so is a job whose
    priority or preemptibility changes while it runs. The snapshot it goes into must list exactly
    the same running jobs.
    """

    def __init__(self, cluster: Cluster, tree: QueueTree, default_time_limit_s: float | None = None):
        self.cluster = cluster
        self.tree = tree
        self.default_time_limit_s = default_time_limit_s
        self.entries: dict[str, Running] = {}
        self.held: dict[tuple[int, int], int] = {}  # (queue, flavor) -> cards
        self.cpus = [0] * len(tree.names)
        self.memory = [0] * len(tree.names)
        self.elastic: dict[str, Running] = {}
        self.preemptible: dict[int, dict[int, int]] = {}  # queue -> priority -> preemptible jobs

    @classmethod
    def build(
        cls, cluster: Cluster, tree: QueueTree, jobs, now: float, default_time_limit_s: float | None = None
    ) -> RunningIndex:
        index = cls(cluster, tree, default_time_limit_s)
        for job in jobs:
            index.add(job, now)
        return index

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, job: Job, now: float) -> Running:
        if job.placement is None:
            raise ValueError(f"running job {job.id} has no placement")
        if job.id in self.entries:
            raise ValueError(f"job {job.id} is already in the running index")
        queue = self.tree.index.get(job.queue, -1)
        if queue < 0:
            raise ValueError(f"running job {job.id} is in unknown queue {job.queue!r}")
        flavor = self.cluster.model_index[job.placement.model]
        entry = Running(
            job, job.placement, flavor, queue, expected_end(job, now, self.default_time_limit_s, self.tree)
        )
        self.entries[job.id] = entry
        key = (queue, flavor)
        if entry.cards:  # held lists only what is held (a CPU-only job holds no card)
            self.held[key] = self.held.get(key, 0) + entry.cards
        self.cpus[queue] += entry.cpus
        self.memory[queue] += entry.memory
        if job.elastic:
            self.elastic[job.id] = entry
        if job.preemptible:
            counts = self.preemptible.setdefault(queue, {})
            counts[job.priority] = counts.get(job.priority, 0) + 1
        return entry

    def remove(self, job_id: str) -> None:
        entry = self.entries.pop(job_id)
        key = (entry.queue, entry.flavor)
        # a 0-card job adds 0 and may find its key gone already (another 0-card job's removal)
        left = self.held.get(key, 0) - entry.cards
        if left:
            self.held[key] = left
        else:
            self.held.pop(key, None)
        self.cpus[entry.queue] -= entry.cpus
        self.memory[entry.queue] -= entry.memory
        self.elastic.pop(job_id, None)
        if entry.job.preemptible:
            counts = self.preemptible[entry.queue]
            counts[entry.job.priority] -= 1
            if not counts[entry.job.priority]:
                del counts[entry.job.priority]
