"""Summary metrics of a twin run. Definitions are in docs/twin.md; keys are stable (``--json``)."""

from __future__ import annotations

import numpy as np

from wanka.sim.twin import SimResult

BOUNDED_SLOWDOWN_S = 10.0  # jobs shorter than this count as this long (Feitelson's bounded slowdown)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def summarize(result: SimResult) -> dict:
    done = [s for s in result.stats if s.outcome == "succeeded"]
    submit = np.array([s.job.submit_time for s in done])
    start = np.array([s.first_start for s in done])
    end = np.array([s.end for s in done])
    duration = np.array([s.duration_s for s in done])
    jct = end - submit
    wait = start - submit
    allocated = sum(s.allocated_card_s for s in result.stats)
    lost = sum(s.lost_card_s for s in result.stats)
    first = min((s.job.submit_time for s in result.stats), default=0.0)
    last = max((s.end for s in done), default=first)
    window = max(last - first, 1e-9)
    cards = result.cluster.total_cards
    slowdown = np.maximum(1.0, jct / np.maximum(duration, BOUNDED_SLOWDOWN_S)) if len(done) else np.array([])
    return {
        "policy": result.policy,
        "cluster": result.cluster.name,
        "jobs": len(done),
        "jobs_open": sum(1 for s in result.stats if not s.outcome),
        "jobs_unschedulable": len(result.rejected),
        "avg_jct_s": float(jct.mean()) if len(done) else 0.0,
        "p50_jct_s": _pct(jct, 50),
        "p90_jct_s": _pct(jct, 90),
        "p99_jct_s": _pct(jct, 99),
        "avg_wait_s": float(wait.mean()) if len(done) else 0.0,
        "p50_wait_s": _pct(wait, 50),
        "p90_wait_s": _pct(wait, 90),
        "p99_wait_s": _pct(wait, 99),
        "avg_bounded_slowdown": float(slowdown.mean()) if len(done) else 0.0,
        "utilization": allocated / (cards * window),
        "useful_utilization": (allocated - lost) / (cards * window),
        "ettr": (allocated - lost) / allocated if allocated > 0 else 1.0,
        "preemptions": sum(s.preemptions for s in result.stats),
        "lost_card_hours": lost / 3600.0,
        "allocated_card_hours": allocated / 3600.0,
        "makespan_s": window,
        "cycles": result.cycles,
        "events": result.events,
        "wall_s": result.wall_s,
    }
