"""`wanka cluster …` and `wanka catalog`: what a cluster holds and what it can compute."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from wanka.cli.output import console, count, emit_json, fail
from wanka.core import Cluster, NodeState, Precision
from wanka.models.cluster import ClusterSpec, cluster_spec_data, parse_cluster, preset_names
from wanka.models.errors import SpecError
from wanka.models.hardware import default_catalog

app = typer.Typer(
    help="The running cluster's status; cluster presets and spec files.",
    no_args_is_help=True,
    add_completion=False,
)


def _load(name_or_path: str) -> tuple[Cluster, ClusterSpec]:
    try:
        data, source = cluster_spec_data(name_or_path)
        cluster = parse_cluster(data, source)
    except SpecError as exc:
        fail(str(exc))
    return cluster, ClusterSpec.model_validate(data)


def cluster_summary(cluster: Cluster, spec: ClusterSpec) -> dict:
    states = Counter(NodeState(int(s)).name.lower() for s in cluster.node_state)
    tiers = []
    for t, tier in enumerate(cluster.tiers):
        cards = cluster.domain_cards[t]
        tiers.append(
            {
                "tier": tier,
                "domains": cluster.domain_count(t),
                "cards_min": int(cards.min()),
                "cards_max": int(cards.max()),
            }
        )
    pools = []
    for pool in spec.pools:
        acc = default_catalog().get(pool.accelerator)
        pools.append(
            {
                "pool": pool.name,
                "accelerator": acc.id,
                "vendor": acc.vendor,
                "nodes": pool.nodes,
                "cards_per_node": pool.cards_per_node,
                "cards": pool.nodes * pool.cards_per_node,
                "devices": pool.nodes * pool.cards_per_node * acc.devices_per_card,
                "cpus_per_node": pool.cpus,
                "memory_gib_per_node": pool.memory_gib,
                "layout": pool.layout,
            }
        )
    return {
        "name": cluster.name,
        "description": spec.description,
        "tiers": tiers,
        "pools": pools,
        "nodes": cluster.num_nodes,
        "cards": cluster.total_cards,
        "node_states": {s.name.lower(): states.get(s.name.lower(), 0) for s in NodeState},
        "notes": spec.notes,
    }


def capacity_report(cluster: Cluster, spec: ClusterSpec, precision: Precision) -> dict:
    unit = "TOPS" if precision is Precision.INT8 else "TFLOPS"
    pools, total = [], 0.0
    for pool in spec.pools:
        acc = default_catalog().get(pool.accelerator)
        fig = acc.peak[precision]
        cards = pool.nodes * pool.cards_per_node
        per_card = float(fig.value or 0.0)
        pflops = cards * per_card / 1000.0
        total += pflops
        pools.append(
            {
                "pool": pool.name,
                "accelerator": acc.id,
                "cards": cards,
                f"per_card_{unit.lower()}": per_card,
                "pflops": round(pflops, 1),
                "uncertain": fig.uncertain,
                "supported": fig.value is not None,
                "source": fig.source,
            }
        )
    report = {
        "cluster": cluster.name,
        "precision": precision.value,
        "dense": True,
        "pools": pools,
        "total_pflops": round(total, 1),
    }
    if spec.published and spec.published.precision == precision:
        pub = spec.published
        cards = sum(p["cards"] for p in pools)
        per_card = total * 1000.0 / cards if cards else 0.0
        report["published"] = {
            "pflops": pub.pflops,
            "phases": pub.phases,
            "source": pub.source,
            "modelled_vs_published": round(total / pub.pflops - 1.0, 4),
            "implied_cards": round(pub.pflops * 1000.0 / per_card) if per_card else None,
            "implied_devices": round(pub.pflops * 1000.0 / per_card)
            * max(default_catalog().get(spec.pools[0].accelerator).devices_per_card, 1)
            if per_card
            else None,
            "implied_cards_per_phase": [round(p * 1000.0 / per_card) for p in pub.phases] if per_card else [],
        }
    return report


@app.command("status")
def status(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The running cluster, from the server: cards by node state, cards in use, waiting jobs."""
    from wanka.cli.remote import _run, _table, say

    out = _run(lambda c: c.cluster())
    if json_out:
        emit_json(out)
        return
    states = ", ".join(f"{k} {v:,}" for k, v in out["cards_by_state"].items())
    say(f"{out['name']}: {out['cards']:,} cards ({states}); {count(out['pending_jobs'], 'job')} waiting")
    held = sorted(out["allocated_by_tenant"].items())
    _table(f"cards in use: {out['allocated']:,}", ["tenant", "cards"], held)


@app.command("presets")
def presets(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the built-in cluster presets."""
    rows = []
    for name in preset_names():
        cluster, spec = _load(name)
        rows.append(
            {
                "name": name,
                "nodes": cluster.num_nodes,
                "cards": cluster.total_cards,
                "description": spec.description,
            }
        )
    if json_out:
        emit_json(rows)
        return
    table = Table("preset", "nodes", "cards", "description", title="cluster presets")
    for r in rows:
        table.add_row(r["name"], f"{r['nodes']:,}", f"{r['cards']:,}", r["description"])
    console.print(table)


@app.command("show")
def show(
    cluster_ref: str = typer.Argument(
        ..., metavar="PRESET|FILE", help="A preset name or a cluster YAML file."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Pools, network domains, node and card counts."""
    cluster, spec = _load(cluster_ref)
    summary = cluster_summary(cluster, spec)
    if json_out:
        emit_json(summary)
        return
    description = f" — {summary['description']}" if summary["description"] else ""
    console.print(f"[bold]{summary['name']}[/bold]{description}", highlight=False)
    pools = Table(
        "pool",
        "accelerator",
        "nodes",
        "cards/node",
        "cards",
        "devices",
        "CPUs/node",
        "GiB/node",
        title="node pools",
    )
    for p in summary["pools"]:
        pools.add_row(
            p["pool"],
            p["accelerator"],
            f"{p['nodes']:,}",
            str(p["cards_per_node"]),
            f"{p['cards']:,}",
            f"{p['devices']:,}",
            f"{p['cpus_per_node']:,}" if p["cpus_per_node"] else "—",  # 0: not given in the spec
            f"{p['memory_gib_per_node']:,}" if p["memory_gib_per_node"] else "—",
        )
    console.print(pools)
    tiers = Table("tier", "domains", "cards per domain", title="network domains (innermost first)")
    for t in summary["tiers"]:
        size = (
            f"{t['cards_min']:,}"
            if t["cards_min"] == t["cards_max"]
            else f"{t['cards_min']:,}–{t['cards_max']:,}"
        )
        tiers.add_row(t["tier"], f"{t['domains']:,}", size)
    console.print(tiers)
    states = ", ".join(f"{k} {v:,}" for k, v in summary["node_states"].items())
    console.print(f"{summary['nodes']:,} nodes, {summary['cards']:,} cards; node states: {states}")
    for note in summary["notes"]:
        console.print(f"  • {note}")


@app.command("capacity")
def capacity(
    cluster_ref: str = typer.Argument(
        ..., metavar="PRESET|FILE", help="A preset name or a cluster YAML file."
    ),
    precision: Precision = typer.Option(Precision.BF16, "--precision", help="Numeric format (dense peak)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Peak PFLOPS per pool and in total, at a stated precision (dense, vendor peak)."""
    cluster, spec = _load(cluster_ref)
    report = capacity_report(cluster, spec, precision)
    if json_out:
        emit_json(report)
        return
    unit = "TOPS" if precision is Precision.INT8 else "TFLOPS"
    per_card_key = f"per_card_{unit.lower()}"
    table = Table(
        "pool",
        "accelerator",
        "cards",
        f"{unit}/card",
        "PFLOPS" if unit == "TFLOPS" else "POPS",
        title=f"{report['cluster']} capacity at {precision.value} (dense peak)",
    )
    for p in report["pools"]:
        per = (
            "not supported"
            if not p["supported"]
            else f"{p[per_card_key]:g}" + (" (uncertain)" if p["uncertain"] else "")
        )
        table.add_row(p["pool"], p["accelerator"], f"{p['cards']:,}", per, f"{p['pflops']:,.1f}")
    table.add_row("total", "", f"{cluster.total_cards:,}", "", f"[bold]{report['total_pflops']:,.1f}[/bold]")
    console.print(table)
    pub = report.get("published")
    if pub:
        phases = " + ".join(f"{p:,.0f}P" for p in pub["phases"])
        console.print(
            f"Published: {pub['pflops']:,.0f}P ({phases}) at {precision.value} — {pub['source']}\n"
            f"At this catalog's per-card figure that implies {pub['implied_cards']:,} cards "
            f"({pub['implied_devices']:,} devices as software sees them); per phase: "
            f"{', '.join(f'{c:,}' for c in pub['implied_cards_per_phase'])}.\n"
            f"This model holds {cluster.total_cards:,} cards = {report['total_pflops']:,.1f}P "
            f"({pub['modelled_vs_published']:+.1%} vs published)."
        )
    for note in spec.notes:
        console.print(f"  • {note}")


catalog_app = typer.Typer(help="The accelerator catalog.", invoke_without_command=True, add_completion=False)


@catalog_app.callback()
def catalog(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every accelerator model with its dense peaks, memory and software conventions."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for a in default_catalog():
        rows.append(
            {
                "id": a.id,
                "vendor": a.vendor,
                "model": a.model,
                "bf16_tflops": a.peak[Precision.BF16].value,
                "fp8_tflops": a.peak[Precision.FP8].value,
                "memory_gib": a.memory_gib.value,
                "devices_per_card": a.devices_per_card,
                "visible_devices_env": a.visible_devices_env,
                "uncertain": sorted(
                    [p.value for p, f in a.peak.items() if f.uncertain]
                    + [
                        n
                        for n in ("memory_gib", "memory_bw_gbs", "interconnect_gbs", "tdp_w")
                        if getattr(a, n).uncertain
                    ]
                ),
            }
        )
    if json_out:
        emit_json(rows)
        return
    table = Table(
        "id",
        "vendor",
        "bf16 TFLOPS",
        "fp8",
        "memory GiB",
        "dev/card",
        "visibility env",
        "uncertain",
        title="accelerator catalog (dense vendor peaks)",
    )
    for r in rows:
        table.add_row(
            r["id"],
            r["vendor"],
            _num(r["bf16_tflops"]),
            _num(r["fp8_tflops"]),
            _num(r["memory_gib"]),
            str(r["devices_per_card"]),
            r["visible_devices_env"],
            ", ".join(r["uncertain"]),
        )
    console.print(table)


def _num(v) -> str:
    return "—" if v is None else f"{v:g}"
