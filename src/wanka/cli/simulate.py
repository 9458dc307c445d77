"""`wanka simulate`: the digital twin — a workload through the real scheduling core in simulated time."""

from __future__ import annotations

import math
import re
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wanka.cli.output import console, emit_json, errors, fail
from wanka.core import LAS_ORDERS, POLICIES, Cluster, CycleConfig, get_policy
from wanka.core.config import parse_las_thresholds, with_las_thresholds
from wanka.models.cluster import cluster_spec_data, parse_cluster
from wanka.models.errors import SpecError, from_validation_error, load_yaml
from wanka.models.quota import load_queue_tree
from wanka.models.service import load_simulated_services
from wanka.sim import scenario as sc
from wanka.sim.metrics import change_text, summarize
from wanka.sim.models import LLAMA3_CAUSES, CheckpointModel, FailureModel, Models, PerformanceModel
from wanka.sim.report import write_report
from wanka.sim.services import DiurnalLoad, ServiceModel, check_services, synthetic_services
from wanka.sim.traces import READERS, TraceError, select_tenants
from wanka.sim.twin import SimConfig

DAY = 86400.0
COLUMNS = (  # (metric key, heading, format, divisor): times shown in hours, --json keeps seconds
    ("jobs", "jobs", "{:,}", 1),
    ("avg_jct_s", "avg JCT h", "{:,.1f}", 3600.0),
    ("p99_wait_s", "p99 wait h", "{:,.1f}", 3600.0),
    ("utilization", "util", "{:.1%}", 1),
    ("goodput", "goodput", "{:.3f}", 1),
    ("ettr", "ETTR", "{:.3f}", 1),
    ("preemptions", "preempt", "{:,}", 1),
    ("failures", "failures", "{:,}", 1),
    ("wall_s", "wall s", "{:.1f}", 1),
)


def _cell(summary: dict, key: str, fmt: str, divisor: float) -> str:
    value = summary[key]
    return fmt.format(value / divisor if divisor != 1 else value)


class CauseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cause: str
    weight: float = Field(gt=0)
    repair_s: float = Field(ge=0)


class FailureSpec(BaseModel):
    """A failure-model file: ``daily_rate_per_card`` (failures per card per day), optional ``causes``
    (default: Llama 3's mix and repair times) and ``hot_spares``."""

    model_config = ConfigDict(extra="forbid")
    name: str = "custom"
    daily_rate_per_card: float = Field(ge=0)
    causes: list[CauseSpec] = []
    hot_spares: int = Field(default=0, ge=0)


def _failures(spec: str, hot_spares: int) -> FailureModel:
    if spec in ("none", "llama3", "shenzhen"):
        return FailureModel.preset(spec, hot_spares)
    path = Path(spec)
    if not path.exists():
        fail(f"--failures: {spec!r} is neither none, llama3, shenzhen nor an existing file")
    try:
        f = FailureSpec.model_validate(load_yaml(path))
    except ValidationError as exc:
        fail(str(from_validation_error(str(path), exc)))
    except SpecError as exc:
        fail(str(exc))
    causes = tuple((c.cause, c.weight, c.repair_s) for c in f.causes) or LLAMA3_CAUSES
    return FailureModel(f.name, f.daily_rate_per_card / DAY, causes, hot_spares or f.hot_spares)


def _finite(value: float) -> float:
    """Click's float ranges let NaN and inf through (no comparison fails on them): refuse them."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    return value


def _las_thresholds(text: str) -> tuple[float, ...] | None:
    """A named set (core.config.LAS_THRESHOLDS) or ascending card-seconds, comma-separated."""
    if not text:
        return None
    try:
        return parse_las_thresholds(text)
    except ValueError as exc:
        fail(f"--las-thresholds: {exc}")


def _policy(name: str, las_thresholds: tuple[float, ...] | None) -> CycleConfig:
    """The preset, with the LAS thresholds given (if any) when it orders jobs by LAS."""
    return with_las_thresholds(get_policy(name), las_thresholds)


def _cluster(ref: str, cards: int = 0) -> tuple[Cluster, dict]:
    try:
        data, source = cluster_spec_data(ref)
        if cards:
            data = _resized(data, cards)
            source = f"{source} resized to {cards:,} cards"
        return parse_cluster(data, source), data
    except SpecError as exc:
        fail(str(exc))


def _resized(spec: dict, cards: int) -> dict:
    """The spec with its first pool grown or shrunk (whole nodes) so the cluster holds ``cards``."""
    pools = [dict(p) for p in spec["pools"]]
    first, others = pools[0], sum(p["nodes"] * p["cards_per_node"] for p in pools[1:])
    per_node = first["cards_per_node"]
    nodes, rest = divmod(cards - others, per_node)
    if nodes < 1 or rest or first.get("node_names"):
        fail(
            f"--cards: {cards:,} is not the other pools' {others:,} cards plus whole nodes of "
            f"{per_node} in pool {first['name']!r}"
            + (" (whose nodes are named one by one)" if first.get("node_names") else "")
        )
    first["nodes"] = nodes
    return {**spec, "name": f"{spec['name']}-at-{cards}", "pools": pools}


def _scenario(
    workload: str,
    cluster: Cluster,
    days: float,
    load: float,
    seed: int,
    skip: bool,
    jobs: int = 0,
    same_work: bool = False,
    tenants: str = "",
) -> sc.Scenario:
    kind, _, rest = workload.partition(":")
    if kind == "synthetic":
        if rest not in ("", "month"):
            fail(f"--workload: unknown synthetic workload {rest!r}; available: month")
        if tenants:
            fail("--tenants: only for a trace (synthetic tenants have contracts, not a trace's rows)")
        return sc.synthetic(cluster, days or 30.0, load, seed, jobs or None, same_work)
    fmt, _, path = rest.partition(":")
    if kind != "trace" or not path:
        fail(
            f"--workload: expected synthetic:month or trace:FORMAT:PATH (formats: {', '.join(READERS)}), "
            f"got {workload!r}"
        )
    if fmt not in READERS:
        fail(f"--workload: unknown trace format {fmt!r}; formats: {', '.join(READERS)}")
    try:
        trace = READERS[fmt](path, skip_bad_rows=skip)
    except TraceError as exc:
        fail(f"{exc} (--skip-bad-rows skips and counts such rows)" if exc.in_row else str(exc))
    except OSError as exc:
        fail(f"--workload: cannot read {path}: {exc.strerror}")
    name = Path(path).name
    if tenants:
        try:
            trace = select_tenants(trace, [t.strip() for t in tenants.split(",") if t.strip()])
        except ValueError as exc:
            fail(f"--tenants: {exc}")
        name += f", tenants {', '.join(sorted({j.tenant for j in trace.jobs}))}"
    if days:
        trace = replace(trace, jobs=[j for j in trace.jobs if j.submit_s < days * DAY])
    return sc.replay(cluster, trace, f"{fmt} trace {name} ({len(trace.jobs):,} jobs)")


def _what_if(change: str, base: sc.Scenario, spec: dict, policy: str) -> tuple[sc.Scenario, str, str]:
    """'cards+=N' (more nodes in the first pool), 'policy=NAME' or 'quotas=FILE'."""
    if m := re.fullmatch(r"\s*cards\s*\+=\s*(\d+)\s*", change):
        data = {**spec, "pools": [dict(p) for p in spec["pools"]]}
        pool = data["pools"][0]
        pool["nodes"] += -(-int(m.group(1)) // pool["cards_per_node"])
        return base.on_cluster(parse_cluster(data, "what-if")), policy, f"cards+={m.group(1)}"
    if m := re.fullmatch(r"\s*policy\s*=\s*(\S+)\s*", change):
        if m.group(1) not in POLICIES:
            fail(f"--what-if: unknown policy {m.group(1)!r}; choose from {', '.join(POLICIES)}")
        return base, m.group(1), f"policy={m.group(1)}"
    if m := re.fullmatch(r"\s*quotas\s*=\s*(\S+)\s*", change):
        try:
            tree = load_queue_tree(m.group(1), base.cluster)
        except SpecError as exc:
            fail(str(exc))
        changed = sc.Scenario(
            base.name, base.cluster, tree, base.make_jobs, lambda c, t=tree: t, base.skipped_rows
        )
        return changed, policy, f"quotas={m.group(1)}"
    fail(f"--what-if: expected 'cards+=N', 'policy=NAME' or 'quotas=FILE', got {change!r}")


def simulate(
    cluster_ref: str = typer.Option("wanka-10k", "--cluster", help="Preset name or cluster YAML file."),
    cards: int = typer.Option(
        0, "--cards", min=0, help="Resize the cluster's first pool (whole nodes) to this many cards in all."
    ),
    workload: str = typer.Option(
        "synthetic:month",
        "--workload",
        help=f"synthetic:month, or trace:FORMAT:PATH (formats: {', '.join(READERS)}; see docs/twin.md).",
    ),
    policy: str = typer.Option("wanka", "--policy", help="Policy preset."),
    compare: str = typer.Option(
        "", "--compare", help="Comma-separated presets, run on the identical workload."
    ),
    days: float = typer.Option(
        0.0,
        "--days",
        min=0.0,
        max=3660.0,
        callback=_finite,
        help="Days to simulate, at most 3,660 (synthetic: 30; traces: all).",
    ),
    tenants: str = typer.Option(
        "",
        "--tenants",
        help="Trace: replay only these tenants (Philly: virtual clusters), comma-separated; "
        "'busiest' is the one asking for the most card-hours.",
    ),
    load: float = typer.Option(
        1.0, "--load", min=0.01, max=100.0, callback=_finite, help="Scales the synthetic arrival rates."
    ),
    jobs: int = typer.Option(0, "--jobs", min=0, help="Synthetic: about this many jobs (more small ones)."),
    same_work: bool = typer.Option(
        False, "--same-work", help="With --jobs: the extra small jobs are shorter, so the offered work stays."
    ),
    failures: str = typer.Option(
        "none", "--failures", help="none, llama3, shenzhen, or a failure-model YAML file."
    ),
    hot_spares: int = typer.Option(
        0, "--hot-spares", min=0, help="Idle nodes that replace failed ones at once."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the synthetic workload and the failures."),
    interval: float = typer.Option(
        60.0, "--interval", min=1.0, max=86400.0, callback=_finite, help="Seconds between scheduling rounds."
    ),
    what_if: str = typer.Option(
        "", "--what-if", help="'cards+=N', 'policy=NAME' or 'quotas=FILE': run both."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write report.md/.html, CSVs and plots here."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count malformed trace rows."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes for several runs (0: one per core)."),
    las_thresholds: str = typer.Option(
        "",
        "--las-thresholds",
        help="LAS queue limits (card-seconds) for every preset that orders by LAS (wanka, wanka-las, "
        "tiresias): e.g. 3250,7200, "
        f"or one of {', '.join(sc.LAS_THRESHOLDS)} (default: each preset's own; wanka 3600,36000, "
        "the others 3600).",
    ),
    checkpoint_write: float = typer.Option(
        CheckpointModel().write_s,
        "--checkpoint-write-s",
        min=0.0,
        max=86400.0,
        callback=_finite,
        help="Cost of one checkpoint write, seconds, at most a day (0: off).",
    ),
    restart: float = typer.Option(
        CheckpointModel().restart_s,
        "--restart-s",
        min=0.0,
        max=86400.0,
        callback=_finite,
        help="Delay before a stopped job computes again, seconds, at most a day (0: off).",
    ),
    topology_penalty: float = typer.Option(
        PerformanceModel().topology_penalty,
        "--topology-penalty",
        min=0.0,
        max=10.0,
        callback=_finite,
        help="Extra run time per network tier a gang spans beyond the one it needs (0.1 = 10%, at most "
        "10; 0: off).",
    ),
    services: str = typer.Option(
        "",
        "--services",
        help="Run services beside the jobs: a YAML file of service specs with request curves, or "
        "'synthetic' (60 per 10,000 cards); each policy also runs without them, to compare.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Replay a month (or a trace) through the real core (the scheduling core in simulated time);
    compare policies and what-ifs."""
    policies = [p.strip() for p in compare.split(",") if p.strip()] if compare else [policy]
    for p in policies:
        if p not in POLICIES:
            fail(f"unknown policy {p!r}; choose from {', '.join(POLICIES)}")
    thresholds = _las_thresholds(las_thresholds)
    cluster, spec = _cluster(cluster_ref, cards)
    base = _scenario(workload, cluster, days, load, seed, skip_bad_rows, jobs, same_work, tenants)
    models = Models(
        failures=_failures(failures, hot_spares),
        checkpoints=CheckpointModel(write_s=checkpoint_write, restart_s=restart),
        performance=PerformanceModel(topology_penalty=topology_penalty),
    )
    horizon = (days or 30.0) * DAY
    # services serve the simulated period: the days asked for, else until the last arrival
    serving_until = horizon if days or workload.startswith("synthetic") else None
    config = SimConfig(cycle_interval_s=interval, seed=seed, services_until_s=serving_until)
    named: list[tuple[str, sc.Scenario, str]] = [(p, base, p) for p in policies]
    if what_if:
        changed, p2, label = _what_if(what_if, base, spec, policies[0])
        named = [(f"{policies[0]} (baseline)", base, policies[0]), (f"{p2} ({label})", changed, p2)]
    runs = [(label, scen, _policy(p, thresholds)) for label, scen, p in named]
    fleet = _services(services, base, cluster, seed) if services else ()
    for label, scen, _ in runs if fleet else ():
        try:  # a what-if may change the queues the services name
            check_services(fleet, scen.queues)
        except ValueError as exc:
            fail(f"--services with {label}: {exc}")
    if fleet:  # each run with the services, then the same without them: what serving costs
        runs = [(label, replace(scen, services=fleet), pol) for label, scen, pol in runs] + [
            (f"{label} (no services)", scen, pol) for label, scen, pol in runs
        ]
    las = sorted({r[2].las.thresholds for r in runs if r[2].job_order in LAS_ORDERS})
    if thresholds is not None and not las:
        fail("--las-thresholds: none of the policies run orders jobs by LAS (tiresias does)")
    notes = [models.describe_overheads()]
    notes += [f"LAS thresholds (card-seconds): {', '.join(f'{t:g}' for t in ts)}" for ts in las]
    started = time.perf_counter()
    heat = tuple(horizon * f for f in (0.25, 0.5, 0.75))
    if len(runs) > 1 and workers != 1:
        # independent runs, one process each: the same results as one after another, sooner
        status = nullcontext() if json_out else errors.status(f"running {len(runs)} simulations side by side")
        with status:
            results = sc.run_parallel(
                [(scen, pol) for _, scen, pol in runs], config, models, heat, workers or None
            )
    else:
        results = [
            _run_with_progress(label, scen, pol, config, models, horizon, heat, json_out)
            for label, scen, pol in runs
        ]
    summaries = []
    for (label, scen, _), result in zip(runs, results, strict=True):
        result.policy = label
        summary = summarize(result)
        summary["skipped_rows"] = scen.skipped_rows
        summaries.append(summary)
    baselines: list[dict] = []
    baseline_results: list = []
    if fleet:
        half = len(runs) // 2
        results, baseline_results = results[:half], results[half:]
        summaries, baselines = summaries[:half], summaries[half:]
    report = {
        "workload": base.name,
        "cluster": cluster.name,
        "failures": models.failures.name,
        "overheads": models.overheads(),
        **({"las_thresholds": [list(ts) for ts in las]} if las else {}),
        "seed": seed,
        "results": summaries,
        **({"services_file": services, "without_services": baselines} if fleet else {}),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    if out is not None:
        title = f"wanka simulate — {base.name} on {cluster.name}"
        files = write_report(
            out, title, results, summaries, notes, list(zip(baseline_results, baselines, strict=True))
        )
        report["report"] = str(files[0])
    if json_out:
        emit_json(report)
        return
    table = Table(
        "policy",
        *(c[1] for c in COLUMNS),
        title=f"{base.name} on {cluster.name}, failures: {models.failures.name}",
    )
    for r in summaries:
        table.add_row(r["policy"], *(_cell(r, key, fmt, div) for key, _, fmt, div in COLUMNS))
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    for r in summaries:  # a job that can never run is said so, with why, not only counted
        if r["jobs_unschedulable"]:
            first = r["unschedulable_jobs"][0]
            console.print(
                f"[yellow]{r['policy']}: {r['jobs_unschedulable']} job(s) can never run here[/], e.g. "
                f"{first['job']}: {first['why']}",
                highlight=False,
            )
    if fleet:
        _print_serving(summaries, baselines)
    if what_if:
        _print_delta(summaries)
    if out is not None:
        console.print(f"report: {report['report']} (and report.html, CSVs, plots in {out})")


def _run_with_progress(label, scen, pol, config, models, horizon: float, heat, quiet: bool):
    """One run with a progress bar of simulated days and events per second (on stderr)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("day {task.fields[day]:.1f}"),
        TextColumn("{task.fields[rate]:,.0f} events/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, disable=quiet, transient=True) as bar:
        task = bar.add_task(label, total=horizon, day=0.0, rate=0.0)
        t0 = time.perf_counter()

        def tick(now: float, events: int) -> None:
            rate = events / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=min(now, horizon), day=now / DAY, rate=rate)

        return sc.run(scen, pol, config, models, tick, heat)


def _print_delta(summaries: list[dict]) -> None:
    a, b = summaries
    table = Table("metric", "baseline", "what-if", "change", title="what-if against baseline")
    for key, name, fmt, div in COLUMNS:
        if key == "wall_s":
            continue
        table.add_row(name, _cell(a, key, fmt, div), _cell(b, key, fmt, div), change_text(a[key], b[key]))
    console.print(table)


SERVING = (  # (metric key, heading, format, divisor)
    ("services", "services", "{:,}", 1),
    ("avg_serving_cards", "cards held, avg", "{:,.0f}", 1),
    ("avg_guaranteed_cards", "never preempted, avg", "{:,.0f}", 1),
    ("extra_card_hours", "extra card-hours", "{:,.0f}", 1),
    ("replica_preemptions", "extras preempted", "{:,}", 1),
    ("p90_replica_wait_s", "p90 replica wait s", "{:,.0f}", 1),
    ("demand_covered", "demand covered", "{:.1%}", 1),
)
TRAINING = (  # what serving costs the jobs: (metric key, heading, format, divisor)
    ("avg_wait_s", "avg wait min", "{:,.1f}", 60.0),
    ("p90_wait_s", "p90 wait min", "{:,.1f}", 60.0),
    ("avg_jct_s", "avg JCT h", "{:,.1f}", 3600.0),
    ("preemptions", "jobs preempted", "{:,}", 1),
    ("utilization", "util (all cards)", "{:.1%}", 1),
)


def _services(ref: str, base: sc.Scenario, cluster: Cluster, seed: int) -> tuple[ServiceModel, ...]:
    """--services: 'synthetic', or a file of service specs with their request curves."""
    if ref == "synthetic":
        models = synthetic_services(base.queues, int(cluster.node_cards.max()), cluster.total_cards, seed)
    else:
        if not Path(ref).is_file():
            fail(f"--services: {ref!r} is neither 'synthetic' nor an existing file")
        try:
            specs = load_simulated_services(ref).services
        except SpecError as exc:
            fail(str(exc))
        models = [
            ServiceModel(
                name=s.name,
                queue=s.tenant if s.queue == "default" else s.queue,
                policy=s.policy(),
                load=DiurnalLoad(
                    s.load.peak_rps, s.load.trough_rps, s.load.peak_hour, s.load.weekend, s.load.noise
                ),
                cards=s.cards,
                tenant=s.tenant,
                priority_class=s.priority_class,
                cpus=s.cpus,
                memory_gib=s.memory_gib,
                accelerators=tuple(s.accelerators),
                startup_s=s.startup_s,
                latency_s=s.load.latency_s,
            )
            for s in specs
        ]
        for i, (spec, model) in enumerate(zip(specs, models, strict=True)):
            try:
                check_services([model], base.queues)
            except ValueError as exc:  # name the file and the field, as a spec error does
                field = "queue" if spec.queue != "default" else "tenant"
                fail(f"{ref}: services[{i}].{field}: {exc}")
    try:
        check_services(models, base.queues)
    except ValueError as exc:
        fail(f"--services: {exc}")
    return tuple(models)


def _print_serving(summaries: list[dict], baselines: list[dict]) -> None:
    table = Table("policy", *(c[1] for c in SERVING), title="services (replicas set by the autoscaler)")
    for r in summaries:
        table.add_row(r["policy"], *(_cell(r, key, fmt, div) for key, _, fmt, div in SERVING))
    console.print(table)
    table = Table(
        "policy", "metric", "without services", "with services", "change", title="what serving costs the jobs"
    )
    for r, b in zip(summaries, baselines, strict=True):
        for key, name, fmt, div in TRAINING:
            change = change_text(b[key], r[key])
            table.add_row(r["policy"], name, _cell(b, key, fmt, div), _cell(r, key, fmt, div), change)
    console.print(table)
    for r in summaries[:1]:
        for svc in r["unschedulable"]:
            console.print(f"[yellow]service {svc['service']} never ran:[/] {svc['why']}", highlight=False)
