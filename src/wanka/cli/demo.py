"""`wanka version`, `wanka policies` and `wanka demo`: what this build is and what it does."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.table import Table

from wanka import __version__
from wanka.cli.output import console, emit_json


def version() -> None:
    """Print the version."""
    console.print(__version__)


def policies(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The policy presets and what each configures: actions, orders, reservations, preemption."""
    from wanka.core import POLICIES

    rows = [
        {
            "name": name,
            "actions": [a.value for a in cfg.actions],
            "job_order": cfg.job_order.value,
            "queue_order": cfg.queue_order.value,
            "blocking": cfg.blocking,
            "reserve_depth": cfg.reserve_depth,
            "preempt_scope": cfg.preempt_scope.value,
            "preempt_min_runtime_s": cfg.preempt_min_runtime_s,
        }
        for name, cfg in POLICIES.items()
    ]
    if json_out:
        emit_json(rows)
        return
    table = Table(
        "policy",
        "actions",
        "job order",
        "queue order",
        "blocking",
        "reservations",
        "preempt scope",
        "start stands (s)",
        title="policy presets",
    )
    for r in rows:
        table.add_row(
            r["name"],
            " → ".join(r["actions"]),
            r["job_order"],
            r["queue_order"],
            str(r["blocking"]),
            str(r["reserve_depth"]),
            r["preempt_scope"],
            f"{r['preempt_min_runtime_s']:g}",
        )
    console.print(table)
    console.print(
        "start stands: how long a job started while a preemptor waited is spared by it "
        "(docs/policies.md, rule 4)"
    )


def demo(
    pending: int = typer.Option(10_000, "--pending", min=1, help="Waiting jobs in the queue."),
    running: int = typer.Option(5_000, "--running", min=0, help="Running jobs holding cards."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic queue."),
    twin_days: float = typer.Option(
        30.0, "--twin-days", min=0.0, help="Days of the twin comparison (0: skip)."
    ),
    twin_load: float = typer.Option(
        1.0, "--twin-load", min=0.01, help="Arrival rate of the twin's month (1: ~0.94 of the cluster)."
    ),
    out: Path = typer.Option(Path("reports/demo"), "--out", help="Where the twin's report goes."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One scheduling cycle on wanka-10k, then a month of the twin: a cycle with a realistic
    multi-tenant queue, then the digital twin over the default synthetic month on the same
    cluster, fifo vs slurm vs wanka."""
    from wanka.core import POLICIES, get_policy, run_cycle
    from wanka.models.cluster import load_cluster
    from wanka.sim.workload import busy_cluster

    c = load_cluster("wanka-10k")
    w = busy_cluster(c, pending=pending, running=running, seed=seed)
    snap = w.snapshot
    free = int(snap.state.free_cards.sum())
    sizes = Counter(_bucket(j.total_cards) for j in snap.pending)
    comparison = []
    main_result = None
    for name in POLICIES:
        t = time.perf_counter()
        result = run_cycle(snap, get_policy(name))
        ms = (time.perf_counter() - t) * 1000.0
        if name == "wanka":
            main_result, main_ms = result, ms
        comparison.append(
            {
                "policy": name,
                "started": len(result.starts),
                "cards_started": sum(d.placement.total_cards for d in result.starts),
                "backfilled": sum(1 for d in result.starts if d.backfilled),
                "stopped": len(result.stops),
                "reservations": len(result.reservations),
                "cycle_ms": round(ms, 1),
            }
        )
    assert main_result is not None
    by_tenant: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    jobs = {j.id: j for j in [*snap.pending, *snap.running]}
    for d in main_result.starts:
        row = by_tenant[jobs[d.job_id].tenant]
        row[0] += 1
        row[1] += d.placement.total_cards
    for d in main_result.stops:
        by_tenant[jobs[d.job_id].tenant][2] += 1
    res = main_result.reservations[0] if main_result.reservations else None
    summary = {
        "cluster": {"name": c.name, "nodes": c.num_nodes, "cards": c.total_cards, "tiers": list(c.tiers)},
        "queue": {
            "pending": len(snap.pending),
            "running": len(snap.running),
            "free_cards": free,
            "pending_by_size": dict(sorted(sizes.items(), key=lambda kv: _bucket_order(kv[0]))),
        },
        "wanka": {
            "cycle_ms": round(main_ms, 1),
            "started": len(main_result.starts),
            "stopped": len(main_result.stops),
            "by_tenant": {
                t: {"started": v[0], "cards": v[1], "stopped": v[2]} for t, v in sorted(by_tenant.items())
            },
            "head_reservation": None
            if res is None
            else {
                "job": res.job_id,
                "cards": jobs[res.job_id].total_cards,
                "starts_in_s": None if res.start is None else round(res.start - snap.now),
                "nodes": len(res.nodes),
            },
            "unschedulable": len(main_result.unschedulable),
        },
        "policies": comparison,
    }
    if json_out:
        if twin_days > 0:
            summary["twin"] = _twin_demo(c, twin_days, twin_load, seed, out, quiet=True)
        emit_json(summary)
        return
    console.print(
        f"[bold]{c.name}[/bold]: {c.num_nodes:,} nodes, {c.total_cards:,} cards, tiers {' → '.join(c.tiers)}"
    )
    console.print(
        f"queue: {len(snap.pending):,} waiting, {len(snap.running):,} running, {free:,} cards free; "
        f"waiting by size: " + ", ".join(f"{k} {v:,}" for k, v in summary["queue"]["pending_by_size"].items())
    )
    t = Table("tenant", "jobs started", "cards", "stopped", title=f"one wanka cycle: {main_ms:.0f} ms")
    for tenant, v in sorted(by_tenant.items()):
        t.add_row(tenant, str(v[0]), str(v[1]), str(v[2]))
    console.print(t)
    if res is not None:
        console.print(
            f"head of the queue: {res.job_id} ({jobs[res.job_id].total_cards:,} cards) is reserved "
            f"{len(res.nodes)} nodes, "
            + (
                "start unknown (jobs it waits for give no time limit)"
                if res.start is None
                else f"estimated start in {res.start - snap.now:,.0f} s"
            )
            + "; "
            "backfill may not delay it"
        )
    cmp = Table(
        "policy",
        "started",
        "cards",
        "backfilled",
        "stopped",
        "cycle ms",
        title="the same snapshot, every preset",
    )
    for r in comparison:
        cmp.add_row(
            r["policy"],
            str(r["started"]),
            f"{r['cards_started']:,}",
            str(r["backfilled"]),
            str(r["stopped"]),
            f"{r['cycle_ms']:.0f}",
        )
    console.print(cmp)
    if twin_days > 0:
        twin = _twin_demo(c, twin_days, twin_load, seed, out, quiet=False)
        t = Table(
            "policy",
            "jobs",
            "avg JCT h",
            "p99 wait h",
            "util",
            "goodput",
            "preempt",
            "failures",
            title=f"the digital twin: {twin['workload']}, Llama 3 failure rate ({twin['wall_s']:.0f} s)",
        )
        for r in twin["results"]:
            t.add_row(
                r["policy"],
                f"{r['jobs']:,}",
                f"{r['avg_jct_s'] / 3600:,.1f}",
                f"{r['p99_wait_s'] / 3600:,.1f}",
                f"{r['utilization']:.1%}",
                f"{r['goodput']:.3f}",
                f"{r['preemptions']:,}",
                f"{r['failures']:,}",
            )
        console.print(t)
        console.print(f"report: {twin['report']} (and report.html, CSVs, plots)")
    console.print(
        "next: `wanka cluster show wanka-10k`, `wanka cluster capacity shenzhen-14000p`, "
        "`wanka simulate --help`, `make bench`"
    )


def _twin_demo(cluster, days: float, load: float, seed: int, out: Path, quiet: bool) -> dict:
    """The digital twin over the same cluster: fifo, slurm and wanka side by side, Llama 3 failures."""
    from wanka.cli.output import errors
    from wanka.sim import scenario as sc
    from wanka.sim.metrics import summarize
    from wanka.sim.models import FailureModel, Models
    from wanka.sim.report import write_report
    from wanka.sim.twin import SimConfig

    scen = sc.synthetic(cluster, days, load, seed)
    heat = tuple(days * 86400.0 * f for f in (0.25, 0.5, 0.75))
    started = time.perf_counter()
    message = f"the twin: {days:g} days of {cluster.name} at load {load:g}, fifo / slurm / wanka side by side"
    if not quiet and not errors.is_terminal:  # no spinner to show (make demo piped, CI): say it once
        errors.print(
            f"{message} (a month: 6 minutes on 2 idle cores, up to 15 on busy ones) ...",
            markup=False,
            highlight=False,
        )
    with nullcontext() if quiet or not errors.is_terminal else errors.status(message):
        results = sc.run_parallel(
            [(scen, p) for p in ("fifo", "slurm", "wanka")],
            SimConfig(seed=seed),
            Models(failures=FailureModel.preset("llama3")),
            heat,
        )
    summaries = [summarize(r) for r in results]
    files = write_report(out, f"wanka demo — {scen.name} on {cluster.name}", results, summaries)
    return {
        "workload": scen.name,
        "wall_s": round(time.perf_counter() - started, 1),
        "report": str(files[0]),
        "results": summaries,
    }


_BUCKETS = ((1, "1"), (4, "2–4"), (8, "8"), (64, "16–64"), (512, "128–512"), (1 << 30, "1024+"))


def _bucket(cards: int) -> str:
    return next(label for limit, label in _BUCKETS if cards <= limit)


def _bucket_order(label: str) -> int:
    return [lab for _, lab in _BUCKETS].index(label)
