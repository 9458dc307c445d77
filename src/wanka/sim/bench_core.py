"""Benchmark of one scheduling cycle on a busy cluster (``wanka bench core``).

Each run decides over the same snapshot from scratch (a fresh session), so runs are independent
and the median is meaningful on a noisy 2-core machine. A second figure keeps the running and
waiting indexes between cycles, as the control plane and the twin do.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time

from wanka.core import Cluster, PendingIndex, RunningIndex, get_policy, run_cycle
from wanka.sim.workload import busy_cluster


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def bench_cycle(
    cluster: Cluster,
    pending: int,
    running: int,
    runs: int = 7,
    policy: str = "wanka",
    seed: int = 0,
) -> dict:
    t0 = time.perf_counter()
    workload = busy_cluster(cluster, pending=pending, running=running, seed=seed)
    setup_s = time.perf_counter() - t0
    config = get_policy(policy).with_(clock=time.perf_counter)
    cycle_ms, phases = [], []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = run_cycle(workload.snapshot, config)
        cycle_ms.append((time.perf_counter() - t) * 1000.0)
        phases.append(result.stats.phase_ms)
    assert result is not None
    median_ms = statistics.median(cycle_ms)
    kept_ms = _kept_indexes(workload.snapshot, runs, config)
    fill = _fill_rate(cluster, pending, runs, config, seed)
    return {
        "policy": policy,
        "cluster": cluster.name,
        "cards": cluster.total_cards,
        "nodes": cluster.num_nodes,
        "pending": pending,
        "running": len(workload.snapshot.running),
        "runs": runs,
        "cycle_ms_median": round(median_ms, 2),
        "cycle_ms_min": round(min(cycle_ms), 2),
        "cycle_ms_max": round(max(cycle_ms), 2),
        "cycle_ms_median_kept_indexes": round(kept_ms, 2),
        "started": result.stats.started,
        "stopped": result.stats.stopped,
        "tasks_placed": result.stats.tasks_placed,
        "placement_attempts": result.stats.placement_attempts,
        "placements_per_s": fill["placements_per_s"],
        "fill_cycle": fill,
        "phase_ms_median": {
            k: round(statistics.median(p.get(k, 0.0) for p in phases), 2) for k in phases[0] if k != "total"
        },
        "setup_s": round(setup_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _kept_indexes(snapshot, runs: int, config) -> float:
    """Median cycle when the caller keeps the running and waiting indexes between cycles, as the
    control plane and the twin do (the cold figure builds both from the snapshot every time)."""
    s = snapshot
    kept = dataclasses.replace(
        s,
        index=RunningIndex.build(s.cluster, s.queues, s.running, s.now, config.default_time_limit_s),
        pending_index=PendingIndex(s.cluster, s.queues, config.job_order, s.pending, config.las.thresholds),
    )
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run_cycle(kept, config)
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def _fill_rate(cluster: Cluster, pending: int, runs: int, config, seed: int) -> dict:
    """Placement throughput: the same queue facing an empty cluster, so the cycle places until full."""
    snapshot = busy_cluster(cluster, pending=pending, running=0, seed=seed).snapshot
    times, result = [], None
    for _ in range(max(3, runs // 2)):
        t = time.perf_counter()
        result = run_cycle(snapshot, config)
        times.append(time.perf_counter() - t)
    assert result is not None
    median_s = statistics.median(times)
    return {
        "cycle_ms_median": round(median_s * 1000.0, 2),
        "jobs_started": result.stats.started,
        "tasks_placed": result.stats.tasks_placed,
        "cards_placed": sum(d.placement.total_cards for d in result.starts),
        "placements_per_s": round(result.stats.tasks_placed / median_s, 1),
    }
