"""`wanka simulate`: replay a workload through the real scheduling core in simulated time."""

from __future__ import annotations

import typer
from rich.table import Table

from wanka.cli.output import console, emit_json, fail
from wanka.core import POLICIES, get_policy
from wanka.models.cluster import load_cluster
from wanka.models.errors import SpecError
from wanka.sim.metrics import summarize
from wanka.sim.replay import tenant_queues, trace_jobs
from wanka.sim.traces import READERS, Trace, TraceError
from wanka.sim.twin import SimConfig, Twin

COLUMNS = (
    ("jobs", "jobs", "{:,}"),
    ("avg_jct_s", "avg JCT s", "{:,.0f}"),
    ("p99_wait_s", "p99 wait s", "{:,.0f}"),
    ("utilization", "util", "{:.1%}"),
    ("ettr", "ETTR", "{:.3f}"),
    ("preemptions", "preempt", "{:,}"),
    ("wall_s", "wall s", "{:.1f}"),
)


def _load_trace(spec: str, skip_bad_rows: bool) -> Trace:
    kind, _, rest = spec.partition(":")
    fmt, _, path = rest.partition(":")
    if kind != "trace" or not path:
        fail(
            f"--workload: expected trace:FORMAT:PATH with FORMAT one of {', '.join(READERS)}, got {spec!r} "
            "(the synthetic month comes with the twin issue)"
        )
    if fmt not in READERS:
        fail(f"--workload: unknown trace format {fmt!r}; formats: {', '.join(READERS)}")
    try:
        return READERS[fmt](path, skip_bad_rows=skip_bad_rows)
    except TraceError as exc:
        fail(f"{exc} (use --skip-bad-rows to skip and count such rows)")
    except OSError as exc:
        fail(f"--workload: cannot read {path}: {exc.strerror}")


def simulate(
    workload: str = typer.Option(..., "--workload", help="trace:FORMAT:PATH (formats: philly, wanka)."),
    cluster_ref: str = typer.Option("philly-2048", "--cluster", help="Preset name or cluster YAML file."),
    policy: str = typer.Option("wanka", "--policy", help="Policy preset."),
    compare: str = typer.Option(
        "", "--compare", help="Comma-separated presets, run on the identical workload."
    ),
    days: float = typer.Option(
        0.0, "--days", min=0.0, help="Only jobs submitted in the first N days (0: all)."
    ),
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="Seconds between scheduling rounds."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count malformed trace rows."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Replay a trace through the real scheduling core and report waits, JCT and utilisation."""
    policies = [p.strip() for p in compare.split(",") if p.strip()] if compare else [policy]
    for p in policies:
        if p not in POLICIES:
            fail(f"unknown policy {p!r}; choose from {', '.join(POLICIES)}")
    try:
        cluster = load_cluster(cluster_ref)
    except SpecError as exc:
        fail(str(exc))
    trace = _load_trace(workload, skip_bad_rows)
    if days:
        trace = Trace(
            [j for j in trace.jobs if j.submit_s < days * 86400.0],
            trace.source,
            trace.skipped,
            trace.problems,
        )
    results = []
    for p in policies:
        jobs = trace_jobs(trace, cluster)  # fresh jobs per policy: runs never share state
        twin = Twin(
            cluster,
            tenant_queues(cluster, [j.queue for j, _ in jobs]),
            jobs,
            get_policy(p),
            SimConfig(cycle_interval_s=interval),
        )
        summary = summarize(twin.run())
        summary["skipped_rows"] = trace.skipped
        results.append(summary)
    if json_out:
        emit_json({"workload": workload, "cluster": cluster.name, "results": results})
        return
    table = Table("policy", *(c[1] for c in COLUMNS), title=f"{len(trace.jobs):,} jobs on {cluster.name}")
    for r in results:
        table.add_row(r["policy"], *(fmt.format(r[key]) for key, _, fmt in COLUMNS))
    console.print(table)
    if trace.skipped:
        console.print(f"skipped {trace.skipped:,} malformed rows, e.g. {trace.problems[0]}")
