"""Summary metrics of a twin run. Definitions are in docs/twin.md; keys are stable (``--json``)."""

from __future__ import annotations

import numpy as np

from wanka.sim.services import serving_summary
from wanka.sim.twin import SimResult

BOUNDED_SLOWDOWN_S = 10.0  # jobs shorter than this count as this long (Feitelson's bounded slowdown)
UNSCHEDULABLE_LISTED = 20  # jobs that can never run, named in a summary with the reason


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.sum() ** 2 / (len(x) * (x**2).sum())) if len(x) and (x**2).sum() > 0 else 1.0


def tenant_shares(result: SimResult) -> dict[str, dict[str, float]]:
    """Per queue: its share of all allocated card-hours, next to its normalised nominal share."""
    used: dict[str, float] = {}
    for s in result.stats:
        used[s.job.queue] = used.get(s.job.queue, 0.0) + s.allocated_card_s
    total = sum(used.values()) or 1.0
    return {
        q: {"used_share": used.get(q, 0.0) / total, "nominal_share": share}
        for q, share in sorted(result.nominal_share.items())
        if q in used
    }


def change_text(before: float, after: float) -> str:
    """``after`` against ``before`` as a signed percentage; "from 0" when there was nothing to
    compare with."""
    if before:
        return f"{(after - before) / before:+.1%}"
    return "+0.0%" if not after else "from 0"


def summarize(result: SimResult) -> dict:
    """The run's metrics. Job metrics count jobs only; ``utilization`` counts every card held,
    services' replicas included; with services, the ``serving`` keys (sim.services) are added."""
    everything = result.stats
    jobs = [s for s in everything if not s.service]
    done = [s for s in jobs if s.outcome == "succeeded"]
    submit = np.array([s.job.submit_time for s in done])
    start = np.array([s.first_start for s in done])
    end = np.array([s.end for s in done])
    duration = np.array([s.duration_s for s in done])
    jct, wait = end - submit, start - submit
    allocated = sum(s.allocated_card_s for s in jobs)
    held = sum(s.allocated_card_s for s in everything)
    lost = sum(s.lost_card_s for s in jobs)
    useful = sum(s.useful_card_s for s in jobs)
    elapsed = sum((s.end - s.first_start) * s.job.total_cards for s in done)
    first = min((s.job.submit_time for s in everything), default=0.0)  # a replica may come first
    last = max(max((s.end for s in done), default=first), result.serving_s)  # services serve from 0
    window = max(last - first, 1e-9)
    cards = result.cluster.total_cards
    slowdown = np.maximum(1.0, jct / np.maximum(duration, BOUNDED_SLOWDOWN_S)) if len(done) else np.array([])
    shares = tenant_shares(result)
    fairness = [v["used_share"] / v["nominal_share"] for v in shares.values() if v["nominal_share"] > 0]
    frag = np.array([s.fragmented_cards for s in result.samples], dtype=np.float64)
    return {
        "policy": result.policy,
        "cluster": result.cluster.name,
        "jobs": len(done),
        "jobs_open": sum(1 for s in jobs if not s.outcome),
        "jobs_unschedulable": sum(1 for s in jobs if s.outcome == "unschedulable"),
        # which jobs can never run here and why (the first few: a trace may hold thousands)
        "unschedulable_jobs": [
            {"job": job_id, "why": why}
            for job_id, why in list(result.rejected.items())[:UNSCHEDULABLE_LISTED]
        ],
        "jobs_cancelled": sum(1 for s in jobs if s.outcome == "cancelled"),
        "avg_jct_s": _mean(jct),
        "p50_jct_s": _pct(jct, 50),
        "p90_jct_s": _pct(jct, 90),
        "p99_jct_s": _pct(jct, 99),
        "avg_wait_s": _mean(wait),
        "p50_wait_s": _pct(wait, 50),
        "p90_wait_s": _pct(wait, 90),
        "p95_wait_s": _pct(wait, 95),
        "p99_wait_s": _pct(wait, 99),
        "avg_bounded_slowdown": _mean(slowdown),
        "utilization": held / (cards * window),
        "useful_utilization": sum(s.useful_card_s for s in everything) / (cards * window),
        "goodput": useful / allocated if allocated > 0 else 1.0,
        "ettr": useful / elapsed if elapsed > 0 else 1.0,
        "preemptions": sum(s.preemptions for s in jobs),
        "failures": len(result.failures),
        "failure_interruptions": sum(s.failures for s in jobs),
        "lost_card_hours": lost / 3600.0,
        "allocated_card_hours": allocated / 3600.0,
        "avg_fragmented_cards": _mean(frag),
        "jain_fairness": jain(fairness),
        "makespan_s": window,
        "cycles": result.cycles,
        "events": result.events,
        "wall_s": result.wall_s,
    } | (serving_summary(everything, result.services, result.serving_s) if result.services else {})
