"""`wanka bench …`: benchmarks that print figures (they never assert them)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from wanka.cli.output import console, emit_json, fail
from wanka.models.cluster import parse_cluster, reference_spec

app = typer.Typer(help="Benchmarks (`make bench` runs them all).", no_args_is_help=True, add_completion=False)

STANDARD = ((10_000, 10_000, 5_000), (100_000, 100_000, 50_000))  # cards, pending, running
GOALS = {
    "cycle_ms_median_10k": 100.0,
    "placements_per_s": 10_000.0,
    "scale_ratio": 12.0,
    "peak_rss_mb": 2048.0,
}


def machine() -> dict:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
    }


def _run_one(cards: int, pending: int, running: int, runs: int, policy: str) -> dict:
    from wanka.sim.bench_core import bench_cycle

    cluster = parse_cluster(reference_spec(cards), "reference cluster")
    return bench_cycle(cluster, pending=pending, running=running, runs=runs, policy=policy)


@app.command("core")
def core(
    cards: int = typer.Option(
        0, "--cards", help="Cluster size in cards (wanka-10k layout). 0: the two standard scales."
    ),
    pending: int = typer.Option(0, "--pending", help="Waiting jobs (default: as many as cards)."),
    running: int = typer.Option(-1, "--running", help="Running jobs (default: half the pending)."),
    runs: int = typer.Option(7, "--runs", min=1, help="Cycles to time; the median is reported."),
    policy: str = typer.Option("wanka", "--policy", help="Policy preset."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One full scheduling cycle on a busy cluster: median time, placement throughput, peak memory."""
    from wanka.core import POLICIES

    if policy not in POLICIES:
        fail(f"--policy: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if cards < 0 or pending < 0:
        fail("--cards and --pending must be >= 0")
    if cards:
        p = pending or cards
        result = _run_one(cards, p, running if running >= 0 else p // 2, runs, policy)
        results = [result]
    else:
        # each scale in its own process, so peak memory is that scale's own
        results = []
        for c, p, r in STANDARD:
            cmd = [
                sys.executable,
                "-m",
                "wanka.cli.main",
                "bench",
                "core",
                "--cards",
                str(c),
                "--pending",
                str(p),
                "--running",
                str(r),
                "--runs",
                str(runs if c <= 10_000 else max(3, runs // 2)),
                "--policy",
                policy,
                "--json",
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout)["results"][0])
    report = {"benchmark": "core", "machine": machine(), "results": results}
    if len(results) == 2:
        report["scale_ratio"] = round(results[1]["cycle_ms_median"] / results[0]["cycle_ms_median"], 2)
    report["goals"] = GOALS
    if json_out:
        emit_json(report)
        return
    table = Table(
        "cards",
        "pending",
        "running",
        "cycle ms (median)",
        "min–max",
        "kept indexes ms",
        "placements/s",
        "started",
        "stopped",
        "peak RSS MB",
        title=f"wanka bench core — policy {policy}",
    )
    for r in results:
        table.add_row(
            f"{r['cards']:,}",
            f"{r['pending']:,}",
            f"{r['running']:,}",
            f"{r['cycle_ms_median']:.1f}",
            f"{r['cycle_ms_min']:.0f}–{r['cycle_ms_max']:.0f}",
            f"{r['cycle_ms_median_kept_indexes']:.1f}",
            f"{r['placements_per_s']:,.0f}",
            str(r["started"]),
            str(r["stopped"]),
            f"{r['peak_rss_mb']:.0f}",
        )
    console.print(table)
    for r in results:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phase_ms_median"].items())
        console.print(f"  {r['cards']:,} cards — phases (ms): {phases}")
        fill = r["fill_cycle"]
        console.print(
            f"  {r['cards']:,} cards — placement throughput from an empty cluster: "
            f"{fill['tasks_placed']:,} tasks ({fill['cards_placed']:,} cards) "
            f"in {fill['cycle_ms_median']:.0f} ms"
        )
    if "scale_ratio" in report:
        console.print(f"100k / 10k cycle time: {report['scale_ratio']}x (goal <= {GOALS['scale_ratio']}x)")
    m = report["machine"]
    console.print(
        f"goals: 10k cycle <= 100 ms, >= 10,000 placements/s, 100k peak <= 2 GB — "
        f"{m['date']}, {m['cpus']} CPUs, Python {m['python']}"
    )


PHILLY = "shared/traces/philly/philly.csv"


def _philly_path() -> str | None:
    """The shared Philly trace: beside the checkout (../shared) or inside it (shared/)."""
    from pathlib import Path

    here = Path(__file__).resolve()
    for root in [Path.cwd(), *here.parents]:
        for candidate in (root / PHILLY, root.parent / PHILLY):
            if candidate.exists():
                return str(candidate)
    return None


@app.command("twin")
def twin(
    days: float = typer.Option(30.0, "--days", min=0.1, help="Length of the synthetic run."),
    philly: str = typer.Option(
        "", "--philly", help="Path of the Philly trace (default: shared/ beside the repo)."
    ),
    scaling: bool = typer.Option(False, "--scaling", help="Also months of 100k, 300k and 1M jobs (long)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The digital twin: the Philly trace on philly-2048 (tiresias, wanka) and on wanka-10k, and a
    synthetic month on wanka-10k."""
    import resource

    from wanka.models.cluster import load_cluster
    from wanka.sim import scenario as sc
    from wanka.sim.metrics import summarize
    from wanka.sim.models import Models
    from wanka.sim.traces import read_philly
    from wanka.sim.twin import SimConfig

    path = philly or _philly_path()
    if not path:
        fail("--philly: the Philly trace was not found beside the repository; give its path")
    trace = read_philly(path)
    runs = [
        ("philly-2048", "philly", "tiresias", None),
        ("philly-2048", "philly", "wanka", None),
        ("wanka-10k", "philly", "wanka", None),
        ("wanka-10k", "synthetic", "wanka", None),
    ]
    if scaling:  # cost per job should stay about flat as the job count grows (same offered work)
        runs += [("wanka-10k", "synthetic", "wanka", n) for n in (100_000, 300_000, 1_000_000)]
    rows = []
    for cluster_name, workload, policy, jobs in runs:
        cluster = load_cluster(cluster_name)
        if workload == "philly":
            scen = sc.replay(cluster, trace, f"Philly ({len(trace.jobs):,} jobs)")
        else:
            scen = sc.synthetic(cluster, days, 1.0, 0, jobs, same_work=True)
        result = sc.run(scen, policy, SimConfig(), Models())
        m = summarize(result)
        rows.append(
            {
                "cluster": cluster_name,
                "workload": scen.name,
                "policy": policy,
                "jobs": m["jobs"],
                "wall_s": round(m["wall_s"], 2),
                "jobs_per_s": round(m["jobs"] / max(m["wall_s"], 1e-9), 1),
                "cycles": m["cycles"],
                "avg_jct_s": round(m["avg_jct_s"], 1),
                "utilization": round(m["utilization"], 4),
            }
        )
    report = {
        "benchmark": "twin",
        "machine": machine(),
        "results": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    if json_out:
        emit_json(report)
        return
    table = Table(
        "cluster",
        "workload",
        "policy",
        "jobs",
        "wall s",
        "jobs/s",
        "rounds",
        "avg JCT s",
        "util",
        title="wanka bench twin",
    )
    for r in rows:
        table.add_row(
            r["cluster"],
            r["workload"],
            r["policy"],
            f"{r['jobs']:,}",
            f"{r['wall_s']:.1f}",
            f"{r['jobs_per_s']:,.0f}",
            f"{r['cycles']:,}",
            f"{r['avg_jct_s']:,.0f}",
            f"{r['utilization']:.1%}",
        )
    console.print(table)
    console.print(
        f"peak RSS {report['peak_rss_mb']:.0f} MB — goals: Philly on philly-2048 <= 60 s per policy, "
        "on wanka-10k <= 30 s"
    )


@app.command("api")
def api(
    jobs: int = typer.Option(100_000, "--jobs", min=1000, help="Jobs stored for the listing and restart."),
    clients: int = typer.Option(8, "--clients", min=1, max=64, help="Concurrent submitting clients."),
    per_client: int = typer.Option(500, "--per-client", min=1, help="Submissions per client."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The control plane through HTTP on loopback (SQLite): submissions/s and their p99, one page of
    the job listing with 100k jobs stored, restart to the first scheduling decision."""
    from wanka.server.bench import GOALS, bench_api

    out = bench_api(jobs, clients, per_client)
    if json_out:
        emit_json({"machine": machine(), "api": out, "goals": GOALS})
        return
    table = Table(title=f"control plane API ({out['jobs_stored']:,} jobs stored, SQLite)")
    for col in ("figure", "value", "goal"):
        table.add_column(col)
    rows = [
        ("submissions/s", f"{out['submits_per_s']:,.0f} ({out['clients']} clients)", "≥ 1,000"),
        (
            "submit latency p50 / p99",
            f"{out['submit_p50_ms']:.1f} / {out['submit_p99_ms']:.1f} ms",
            "p99 ≤ 50 ms",
        ),
        ("job list, first page", f"{out['list_page_ms']:.1f} ms", "≤ 50 ms"),
        ("job list, page 50,000 deep", f"{out['list_page_deep_ms']:.1f} ms", ""),
        ("job list, pending only", f"{out['list_page_pending_ms']:.1f} ms", ""),
        (
            "restart to first decision",
            f"{out['restart_s']:.2f} s (healthy after {out['restart_to_healthy_s']:.2f} s)",
            "≤ 10 s",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command("cli")
def cli(
    runs: int = typer.Option(21, "--runs", min=3, help="Runs of each command (median, p90)."),
    elements: int = typer.Option(10_000, "--elements", min=2, help="Elements of the job array."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The everyday workflow's waits: `wanka jobs` against a running server (wall time of the
    whole command), `wanka -h`, and one request submitting a 10,000-element job array."""
    from wanka.server.bench_workflow import GOALS, bench_cli

    out = bench_cli(runs, elements)
    if json_out:
        emit_json({"machine": machine(), "cli": out, "goals": GOALS})
        return
    table = Table(title=f"CLI and workflow ({out['runs']} runs each, server on loopback)")
    for col in ("figure", "value", "goal"):
        table.add_column(col)
    table.add_row(
        "`wanka jobs`, whole command",
        f"median {out['cli_jobs_ms_median']:.0f} ms, p90 {out['cli_jobs_ms_p90']:.0f} ms",
        "≤ 300 ms",
    )
    table.add_row("`wanka -h`", f"median {out['cli_help_ms_median']:.0f} ms", "")
    table.add_row(
        f"job array of {out['array_elements']:,} elements, one request",
        f"{out['array_submit_s']:.2f} s",
        "≤ 1 s",
    )
    console.print(table)


@app.command("gateway")
def gateway_bench(
    runs: int = typer.Option(3, "--runs", min=1, max=21, help="Runs (medians are reported)."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, max=60, help="Seconds of each measurement."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The services' gateway through a real server: latency it adds (median) and requests/s one
    server process proxies."""
    from wanka.server.bench_gateway import GOALS, bench_gateway

    out = bench_gateway(runs, seconds)
    if json_out:
        emit_json({"machine": machine(), "gateway": out, "goals": GOALS})
        return
    table = Table(title=f"services' gateway (median of {out['runs']} runs, {out['seconds']:g} s each)")
    for col in ("figure", "value", "goal"):
        table.add_column(col)
    table.add_row(
        "added latency, p50",
        f"{out['added_p50_ms']:.2f} ms ({out['direct_p50_ms']:.2f} direct, {out['gateway_p50_ms']:.2f} via)",
        f"≤ {GOALS['added_p50_ms']:g} ms",
    )
    table.add_row(
        "proxied requests/s",
        f"{out['requests_per_s']:,.0f} ({out['connections']} connections, p50 {out['loaded_p50_ms']:.1f} ms)",
        f"≥ {GOALS['requests_per_s']:,.0f}",
    )
    console.print(table)


@app.command("console")
def console_bench(
    jobs: int = typer.Option(10_000, "--jobs", min=1, max=1_000_000, help="Jobs stored for the jobs page."),
    loads: int = typer.Option(7, "--loads", min=1, max=100, help="Cold loads of each page (median)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The web console in Debian's Chromium: cold load time and weight on the wire of the jobs page
    (10,000 jobs stored) and of the node map (the 10,000-card preset)."""
    from wanka.server.bench_console import CHROMIUM, GOALS, bench_console

    if not Path(CHROMIUM).exists():
        console.print(f"wanka bench console: skipped, no chromium at {CHROMIUM} (Debian's package)")
        return
    out = bench_console(jobs, loads)
    if json_out:
        emit_json({"machine": machine(), "console": out, "goals": GOALS})
        return
    table = Table(title=f"web console, cold loads in Chromium (median of {out['loads']})")
    for col in ("page", "load (median / slowest)", "on the wire", "goal"):
        table.add_column(col)
    for view, label in (
        ("jobs", f"jobs, {out['jobs_stored']:,} stored"),
        ("nodes", f"node map, {out['nodes']:,} nodes"),
    ):
        table.add_row(
            label,
            f"{out[f'{view}_load_ms']:.0f} / {out[f'{view}_load_ms_max']:.0f} ms",
            f"{out[f'{view}_kb']:.0f} KiB in {out[f'{view}_files']} files",
            "≤ 1,000 ms, ≤ 1 MiB",
        )
    console.print(table)


@app.command("local")
def local(
    jobs: int = typer.Option(200, "--jobs", min=1, help="Single-card jobs in the burst."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The server with the local backend: admission-to-process-start latency, and a burst of
    single-card jobs through it (all must succeed)."""
    from wanka.server.bench import LOCAL_GOALS, bench_local

    out = bench_local(jobs)
    if json_out:
        emit_json({"machine": machine(), "local": out, "goals": LOCAL_GOALS})
        return
    _dispatch_table(
        "local backend (8 virtual cards)",
        out,
        ("admission to process start", "median ≤ 100 ms"),
        (f"array of {out['burst_jobs']} single-card jobs", "all succeed"),
    )


def _dispatch_table(title: str, out: dict, latency: tuple[str, str], burst: tuple[str, ...]) -> None:
    """What `wanka.server.bench._dispatch` measured, as (figure, value, goal) rows."""
    table = Table(title=title)
    for col in ("figure", "value", "goal"):
        table.add_column(col)
    median, p90 = out["admission_to_start_ms_median"], out["admission_to_start_ms_p90"]
    table.add_row(latency[0], f"median {median:.1f} ms, p90 {p90:.1f} ms", latency[1])
    states = ", ".join(f"{n} {s}" for s, n in sorted(out["burst_states"].items()))
    dispatched = f"{out['burst_dispatched_per_s']:.1f} jobs/s ({out['burst_dispatch_s']:.1f} s)"
    table.add_row(f"{burst[0]}: dispatched", dispatched, burst[2] if len(burst) > 2 else "")
    rate = f"{out['burst_jobs_per_s']:.1f} jobs/s ({out['burst_wall_s']:.1f} s): {states}"
    table.add_row(f"{burst[0]}: all ended", rate, burst[1])
    for why, n in sorted(out.get("burst_failures", {}).items(), key=lambda kv: -kv[1])[:3]:
        table.add_row(f"{burst[0]}: {n} not succeeded", why, "")
    console.print(table)


@app.command("slurm")
def slurm(
    nodes: int = typer.Option(64, "--nodes", min=1, help="Virtual Slurm nodes."),
    gpus: int = typer.Option(8, "--gpus", min=1, max=64, help="Fake GPUs per node."),
    jobs: int = typer.Option(500, "--jobs", min=1, help="Single-GPU jobs in the burst."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The server with the Slurm backend on a real Slurm started here (root, slurm-wlm and munge
    installed): decision-to-running latency and dispatch throughput."""
    from wanka.server.bench import bench_slurm

    try:
        out = bench_slurm(nodes, gpus, jobs)
    except RuntimeError as exc:
        fail(str(exc), 1)
    if json_out:
        emit_json({"machine": machine(), "slurm": out})
        return
    _dispatch_table(
        f"Slurm backend ({nodes} virtual nodes x {gpus} GPUs, Slurm up in {out['slurm_up_s']:.1f} s)",
        out,
        ("wanka's decision to the task running under Slurm", ""),
        (f"array of {out['burst_jobs']} single-GPU jobs", "", "≥ 50 jobs/s"),
    )


@app.command("k8s")
def k8s(
    nodes: int = typer.Option(
        1250, "--nodes", min=1, max=20_000, help="Fake nodes (1,250 x 8: the 10,000-card preset)."
    ),
    cards: int = typer.Option(8, "--cards", min=1, max=64, help="Cards per node."),
    pods: int = typer.Option(
        1000, "--pods", min=21, max=20_000, help="Single-card runs launched (20 alone, the rest in a burst)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The Kubernetes backend against the kit's real API server (root and the kit: shared/k8s,
    as .ci/setup installs it) with fake nodes: inventory load, decision-to-bound latency and pods
    bound per second."""
    from wanka.server.bench_k8s import GOALS, bench_k8s

    try:
        out = bench_k8s(nodes, cards, pods)
    except RuntimeError as exc:
        fail(str(exc), 1)
    if json_out:
        emit_json({"machine": machine(), "k8s": out, "goals": GOALS})
        return
    table = Table(
        title=f"Kubernetes backend ({nodes} fake nodes x {cards} cards, kit up in {out['kit_up_s']:.1f} s)"
    )
    for col in ("figure", "value", "goal"):
        table.add_column(col)
    table.add_row(
        "inventory load (LIST + watch + cluster spec)",
        f"median {out['inventory_load_s_median'] * 1000:.0f} ms, "
        f"max {out['inventory_load_s_max'] * 1000:.0f} ms",
        "",
    )
    table.add_row("a cordon in Kubernetes seen by wanka", f"median {out['cordon_seen_ms_median']:.1f} ms", "")
    table.add_row(
        "decision to bound, one run alone",
        f"median {out['decision_to_bound_ms_median']:.1f} ms, p90 {out['decision_to_bound_ms_p90']:.1f} ms",
        "",
    )
    table.add_row(
        f"burst of {out['burst_pods']} single-card runs",
        f"{out['pods_bound_per_s']:.0f} pods bound/s ({out['burst_s']:.2f} s); decision to bound median "
        f"{out['burst_decision_to_bound_ms_median']:.0f} ms, "
        f"p90 {out['burst_decision_to_bound_ms_p90']:.0f} ms",
        f"≥ {GOALS['pods_bound_per_s']:.0f} pods/s",
    )
    console.print(table)
