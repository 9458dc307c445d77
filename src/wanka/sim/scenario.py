"""A scenario: a cluster, its queues and a workload, run under one or more policies.

Jobs are rebuilt for every run (runs mutate them), from the same seed or trace, so policies compared
face the identical workload — and, through the seed, the identical failure sequence.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from wanka.core import Cluster, CycleConfig, Job, QueueTree, get_policy
from wanka.core.config import LAS_THRESHOLDS  # noqa: F401  (named sets, re-exported)
from wanka.sim.models import Models
from wanka.sim.replay import tenant_queues, trace_jobs
from wanka.sim.services import ServiceModel
from wanka.sim.synthetic import contract_queues, synthetic_month
from wanka.sim.traces import Trace
from wanka.sim.twin import SimConfig, SimResult, Twin

Jobs = list[tuple[Job, float]]

# Tiresias' LAS queue thresholds in card-seconds, by source (docs/policies.md cites each):


@dataclass(frozen=True)
class Scenario:
    name: str
    cluster: Cluster
    queues: QueueTree
    make_jobs: Callable[[], Jobs]
    queue_builder: Callable[[Cluster], QueueTree]  # the same kind of queues for another cluster (what-if)
    skipped_rows: int = 0  # malformed trace rows skipped
    services: tuple[ServiceModel, ...] = ()  # run beside the jobs (sim.services)

    def on_cluster(self, cluster: Cluster) -> Scenario:
        """The same jobs on another cluster (what-if: more cards)."""
        return replace(self, cluster=cluster, queues=self.queue_builder(cluster))


def synthetic(
    cluster: Cluster, days: float, load: float, seed: int, jobs: int | None = None, same_work: bool = False
) -> Scenario:
    first = synthetic_month(cluster, days, load, seed, jobs, same_work)
    return Scenario(
        first.name,
        cluster,
        first.queues,
        lambda: synthetic_month(cluster, days, load, seed, jobs, same_work).jobs,
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
    policy: str | CycleConfig,
    config: SimConfig,
    models: Models,
    progress: Callable[[float, int], None] | None = None,
    heatmap_at: tuple[float, ...] = (),
) -> SimResult:
    twin = Twin(
        scenario.cluster,
        scenario.queues,
        scenario.make_jobs(),
        get_policy(policy) if isinstance(policy, str) else policy,
        config,
        models,
        progress,
        heatmap_at,
        scenario.services,
    )
    return twin.run()


def run_parallel(
    runs: Sequence[tuple[Scenario, str | CycleConfig]],
    config: SimConfig,
    models: Models,
    heatmap_at: tuple[float, ...] = (),
    workers: int | None = None,
) -> list[SimResult]:
    """Several independent runs, one process each (up to the machine's cores), results in order.

    Runs share nothing — each rebuilds its jobs and draws its failures from the seed — so running
    them side by side gives exactly the results of running them one after another."""
    workers = min(len(runs), workers or os.cpu_count() or 1)
    if workers <= 1:
        return [run(s, p, config, models, None, heatmap_at) for s, p in runs]
    # Scenarios hold closures (their job factories), which cannot be pickled: forked workers
    # inherit them instead, and only an index crosses the process boundary.
    _FORKED[:] = [(s, p, config, models, heatmap_at) for s, p in runs]
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_forked, range(len(runs))))
    finally:
        _FORKED.clear()


_FORKED: list = []


def _run_forked(index: int) -> SimResult:
    s, p, config, models, heatmap_at = _FORKED[index]
    return run(s, p, config, models, None, heatmap_at)
