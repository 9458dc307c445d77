"""A scenario: a cluster, its queues and a workload, run under one or more policies.

Jobs are rebuilt for every run (runs mutate them), from the same seed or trace, so policies compared
face the identical workload — and, through the seed, the identical failure sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from wanka.core import Cluster, Job, QueueTree, get_policy
from wanka.sim.models import Models
from wanka.sim.replay import tenant_queues, trace_jobs
from wanka.sim.synthetic import contract_queues, synthetic_month
from wanka.sim.traces import Trace
from wanka.sim.twin import SimConfig, SimResult, Twin

Jobs = list[tuple[Job, float]]


@dataclass(frozen=True)
class Scenario:
    name: str
    cluster: Cluster
    queues: QueueTree
    make_jobs: Callable[[], Jobs]
    queue_builder: Callable[[Cluster], QueueTree]  # the same kind of queues for another cluster (what-if)
    skipped_rows: int = 0  # malformed trace rows skipped

    def on_cluster(self, cluster: Cluster) -> Scenario:
        """The same jobs on another cluster (what-if: more cards)."""
        return replace(self, cluster=cluster, queues=self.queue_builder(cluster))


def synthetic(cluster: Cluster, days: float, load: float, seed: int) -> Scenario:
    first = synthetic_month(cluster, days, load, seed)
    return Scenario(
        first.name,
        cluster,
        first.queues,
        lambda: synthetic_month(cluster, days, load, seed).jobs,
        contract_queues,
    )


def replay(cluster: Cluster, trace: Trace, name: str) -> Scenario:
    tenants = sorted({j.queue for j in trace.jobs})
    return Scenario(
        name,
        cluster,
        tenant_queues(cluster, tenants),
        lambda: trace_jobs(trace, cluster),
        lambda c: tenant_queues(c, tenants),
        trace.skipped,
    )


def run(
    scenario: Scenario,
    policy: str,
    config: SimConfig,
    models: Models,
    progress: Callable[[float, int], None] | None = None,
    heatmap_at: tuple[float, ...] = (),
) -> SimResult:
    twin = Twin(
        scenario.cluster,
        scenario.queues,
        scenario.make_jobs(),
        get_policy(policy),
        config,
        models,
        progress,
        heatmap_at,
    )
    return twin.run()
