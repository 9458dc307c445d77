"""Reports of twin runs: ``report.md``, ``report.html``, CSVs of metrics, jobs and time series, and plots."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from wanka.sim.metrics import change_text, tenant_shares
from wanka.sim.twin import SimResult

SUMMARY_KEYS = (
    "jobs",
    "avg_jct_s",
    "p50_jct_s",
    "p99_jct_s",
    "avg_wait_s",
    "p99_wait_s",
    "avg_bounded_slowdown",
    "utilization",
    "useful_utilization",
    "goodput",
    "ettr",
    "preemptions",
    "failures",
    "lost_card_hours",
    "avg_fragmented_cards",
    "jain_fairness",
    "makespan_s",
    "wall_s",
)


SERVING_KEYS = (
    "services",
    "services_unschedulable",
    "replicas_submitted",
    "avg_serving_cards",
    "avg_guaranteed_cards",
    "serving_card_hours",
    "guaranteed_card_hours",
    "extra_card_hours",
    "replica_starts",
    "replica_preemptions",
    "replica_failures",
    "scale_events",
    "p50_replica_wait_s",
    "p90_replica_wait_s",
    "demand_covered",
)
TRAINING_KEYS = (
    "jobs",
    "avg_wait_s",
    "p90_wait_s",
    "p99_wait_s",
    "avg_jct_s",
    "preemptions",
    "goodput",
    "ettr",
    "utilization",
)


def write_report(
    out: Path,
    title: str,
    results: list[SimResult],
    summaries: list[dict],
    notes: Sequence[str] = (),
    baselines: Sequence[tuple[SimResult, dict]] = (),
) -> list[Path]:
    """``notes``: lines under the title that say how the runs were set up (e.g. which overheads
    were on). ``baselines``: with services, each run again without them (same order), for the
    section on what serving costs the jobs."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_summary_csv(out, summaries + [b for _, b in baselines])]
    for r in results:
        written += [_jobs_csv(out, r), _series_csv(out, r), _tenants_csv(out, r)]
    plots = [
        _plot_series(out, results, "allocated_cards", "utilisation.png", "cards allocated"),
        _plot_series(out, results, "pending_jobs", "queue.png", "jobs waiting"),
        _plot_wait_cdf(out, results),
        _plot_tenants(out, results[0]),
        _plot_heatmap(out, results[0]),
        _plot_serving(out, results[0], baselines[0][0] if baselines else None),
    ]
    for r in results:
        if r.services:
            written.append(_services_csv(out, r))
    plots = [p for p in plots if p is not None]
    written += plots
    extra = _serving_tables(summaries, [b for _, b in baselines]) if baselines else []
    md = _markdown(title, summaries, [p.name for p in plots], notes, extra)
    (out / "report.md").write_text(md, encoding="utf-8")
    page = _html(title, summaries, [p.name for p in plots], notes, extra)
    (out / "report.html").write_text(page, encoding="utf-8")
    return [out / "report.md", out / "report.html", *written]


def _fmt(key: str, value) -> str:
    if isinstance(value, float):
        if key in ("utilization", "useful_utilization", "goodput", "ettr", "jain_fairness", "demand_covered"):
            return f"{value:.3f}"
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


Table = tuple[str, list[str], list[list[str]]]  # (heading, column names, rows)


def _serving_tables(summaries: list[dict], baselines: list[dict]) -> list[Table]:
    """The serving metrics per policy, and each job metric without and with the services."""
    serving = (
        "Services",
        ["metric", *(s["policy"] for s in summaries)],
        [[key, *(_fmt(key, s[key]) for s in summaries)] for key in SERVING_KEYS],
    )
    rows = []
    for s, b in zip(summaries, baselines, strict=True):
        for key in TRAINING_KEYS:
            rows.append([s["policy"], key, _fmt(key, b[key]), _fmt(key, s[key]), change_text(b[key], s[key])])
    jobs = (
        "What serving costs the jobs",
        ["policy", "metric", "without services", "with services", "change"],
        rows,
    )
    return [serving, jobs]


def _markdown(
    title: str, summaries: list[dict], plots: list[str], notes: Sequence[str], extra: list[Table]
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += [
        "| metric | " + " | ".join(s["policy"] for s in summaries) + " |",
        "| --- |" + " --- |" * len(summaries),
    ]
    for key in SUMMARY_KEYS:
        lines.append(f"| {key} | " + " | ".join(_fmt(key, s[key]) for s in summaries) + " |")
    for heading, columns, rows in extra:
        lines += ["", f"## {heading}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Definitions and model assumptions: docs/twin.md.", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _html(
    title: str, summaries: list[dict], plots: list[str], notes: Sequence[str], extra: list[Table]
) -> str:
    head = "".join(f"<th>{html.escape(s['policy'])}</th>" for s in summaries)
    rows = "".join(
        f"<tr><td>{key}</td>"
        + "".join(f"<td>{html.escape(_fmt(key, s[key]))}</td>" for s in summaries)
        + "</tr>"
        for key in SUMMARY_KEYS
    )
    listed = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    listed = f"<ul>{listed}</ul>" if notes else ""
    imgs = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"></figure>' for p in plots)
    for heading, columns, body in extra:
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        head_row = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        rows += f"</table><h2>{html.escape(heading)}</h2><table><tr>{head_row}</tr>{cells}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:900px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{listed}<table><tr><th>metric</th>{head}</tr>{rows}</table>{imgs}</body></html>"
    )


def _csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _summary_csv(out: Path, summaries: list[dict]) -> Path:
    keys = [k for k, v in summaries[0].items() if not isinstance(v, list | dict)]  # scalars only
    return _csv(out / "summary.csv", keys, ([s.get(k, "") for k in keys] for s in summaries))


def _jobs_csv(out: Path, r: SimResult) -> Path:
    header = [
        "job_id",
        "service",
        "tenant",
        "queue",
        "cards",
        "submit_s",
        "first_start_s",
        "end_s",
        "duration_s",
        "outcome",
        "preemptions",
        "failures",
        "allocated_card_s",
        "lost_card_s",
        "overhead_card_s",
    ]
    rows = (
        [
            s.job.id,
            s.service,
            s.job.tenant,
            s.job.queue,
            s.job.total_cards,
            s.job.submit_time,
            s.first_start,
            s.end,
            s.duration_s,
            s.outcome,
            s.preemptions,
            s.failures,
            round(s.allocated_card_s, 3),
            round(s.lost_card_s, 3),
            round(s.overhead_card_s, 3),
        ]
        for s in r.stats
    )
    return _csv(out / f"jobs_{r.policy}.csv", header, rows)


def _series_csv(out: Path, r: SimResult) -> Path:
    header = ["time_s", "allocated_cards", "pending_jobs", "running_jobs", "down_nodes", "fragmented_cards"]
    header += ["serving_cards", "guaranteed_cards"] if r.services else []
    rows = (
        [s.time, s.allocated_cards, s.pending_jobs, s.running_jobs, s.down_nodes, s.fragmented_cards]
        + ([s.serving_cards, s.guaranteed_cards] if r.services else [])
        for s in r.samples
    )
    return _csv(out / f"timeseries_{r.policy}.csv", header, rows)


def _tenants_csv(out: Path, r: SimResult) -> Path:
    rows = ([q, round(v["used_share"], 5), round(v["nominal_share"], 5)] for q, v in tenant_shares(r).items())
    return _csv(out / f"tenants_{r.policy}.csv", ["queue", "used_share", "nominal_share"], rows)


def _services_csv(out: Path, r: SimResult) -> Path:
    header = [
        "service",
        "queue",
        "cards",
        "min",
        "max",
        "requests",
        "covered",
        "scale_events",
        "replica_starts",
        "peak_desired",
        "unschedulable",
    ]
    rows = (
        [
            s.model.name,
            s.model.queue,
            s.model.cards,
            s.model.policy.min,
            s.model.policy.max,
            round(s.requests),
            round(s.covered),
            s.scale_events,
            s.replicas_started,
            s.peak_desired,
            s.unschedulable,
        ]
        for s in r.services
    )
    return _csv(out / f"services_{r.policy}.csv", header, rows)


def _plot_serving(out: Path, r: SimResult, baseline: SimResult | None) -> Path | None:
    """Cards held by jobs and by services' replicas (guaranteed and extra) over time, and the
    jobs' cards in the same run without services."""
    if not r.services:
        return None
    t = np.array([s.time for s in r.samples]) / 86400.0
    sure = np.array([s.guaranteed_cards for s in r.samples])
    serving = np.array([s.serving_cards for s in r.samples])
    jobs = np.array([s.allocated_cards for s in r.samples]) - serving
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.stackplot(
        t, sure, serving - sure, labels=["replicas: guaranteed", "replicas: extra (preemptible)"], alpha=0.6
    )
    ax.plot(t, jobs, label="jobs", linewidth=1)
    if baseline is not None:
        tb = np.array([s.time for s in baseline.samples]) / 86400.0
        ax.plot(
            tb,
            [s.allocated_cards for s in baseline.samples],
            label="jobs, without services",
            linewidth=1,
            linestyle="--",
        )
    ax.axhline(r.cluster.total_cards, color="grey", linestyle=":", linewidth=1, label="capacity")
    ax.set_xlabel("days")
    ax.set_ylabel(f"cards ({r.policy})")
    ax.legend(fontsize=7)
    return _save(fig, out / "serving.png")


def _plot_series(out: Path, results: list[SimResult], field: str, name: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for r in results:
        t = np.array([s.time for s in r.samples]) / 86400.0
        ax.plot(t, [getattr(s, field) for s in r.samples], label=r.policy, linewidth=1)
    if field == "allocated_cards":
        ax.axhline(results[0].cluster.total_cards, color="grey", linestyle=":", linewidth=1, label="capacity")
    ax.set_xlabel("days")
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(fig, out / name)


def _plot_wait_cdf(out: Path, results: list[SimResult]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        waits = np.sort([s.first_start - s.job.submit_time for s in r.stats if s.first_start is not None])
        if len(waits):
            ax.plot(np.maximum(waits, 1.0), np.arange(1, len(waits) + 1) / len(waits), label=r.policy)
    ax.set_xscale("log")
    ax.set_xlabel("wait until first start (s)")
    ax.set_ylabel("fraction of jobs")
    ax.legend()
    return _save(fig, out / "wait_cdf.png")


def _plot_tenants(out: Path, r: SimResult) -> Path | None:
    shares = tenant_shares(r)
    if not shares:
        return None
    names = list(shares)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.5), 4))
    ax.bar(x - 0.2, [shares[n]["used_share"] for n in names], 0.4, label="used")
    ax.bar(x + 0.2, [shares[n]["nominal_share"] for n in names], 0.4, label="nominal")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"share of card-hours ({r.policy})")
    ax.legend()
    return _save(fig, out / "tenant_share.png")


def _plot_heatmap(out: Path, r: SimResult) -> Path | None:
    """Allocated share of each leaf (columns) grouped by pod (rows), at each chosen instant."""
    if not r.snapshots or len(r.cluster.tiers) < 3:
        return None
    c = r.cluster
    leaf_tier, pod_tier = 1, len(c.tiers) - 2
    instants = sorted(r.snapshots)
    fig, axes = plt.subplots(1, len(instants), figsize=(4 * len(instants), 3.5), squeeze=False)
    for ax, t in zip(axes[0], instants, strict=True):
        free = r.snapshots[t]
        used = np.add.reduceat(c.node_cards - free, c.domain_starts[leaf_tier]) / c.domain_cards[leaf_tier]
        pod_of_leaf = c.domain_of[pod_tier][c.domain_starts[leaf_tier]]
        width = int(np.bincount(pod_of_leaf).max())
        grid = np.full((c.domain_count(pod_tier), width), np.nan)
        for leaf, pod in enumerate(pod_of_leaf):
            grid[pod, leaf - int(np.searchsorted(pod_of_leaf, pod))] = used[leaf]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(f"day {t / 86400:.1f}")
        ax.set_xlabel("leaf in pod")
        ax.set_ylabel(c.tiers[pod_tier])
    fig.colorbar(im, ax=axes[0].tolist(), label="cards allocated")
    return _save(fig, out / "heatmap.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout() if not fig.get_axes() or len(fig.get_axes()) < 3 else None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
