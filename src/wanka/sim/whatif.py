"""A what-if run in a process and a directory of its own: the twin as the console starts it.

``python -m wanka.sim.whatif DIR`` reads ``DIR/input.pickle`` (a :class:`WhatIfInput`, written by
the control plane into its own private directory), builds the synthetic workload when one was asked
for (seconds on 10,000 cards: here, not in the request that started the run), runs each of its runs
through the twin one after the other, and writes:

- ``progress.json`` while it runs (replaced atomically at most twice a second): ``fraction`` of the
  whole (0..1), ``run`` (1-based) of ``runs``, the simulated ``day`` and ``events_per_s``;
- ``report/`` when done: ``report.md``, CSVs and plots, as ``wanka simulate --out`` writes them;
- ``summary.json`` last (its presence means done): the metrics of each run (``wanka.sim.metrics``),
  the notes, the plots' file names and the wall time;
- ``error.txt`` instead, when the run failed (the exception in one line).

The process lowers its own priority (nice 10): the server it serves stays responsive. It stops
when the server that started it is gone (its parent changes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wanka.core import Cluster, CycleConfig, Job, QueueTree, TaskGroup
from wanka.sim.metrics import summarize
from wanka.sim.models import Models
from wanka.sim.report import write_report
from wanka.sim.synthetic import TENANTS, synthetic_month
from wanka.sim.twin import SimConfig, Twin

PROGRESS_EVERY_S = 0.5


@dataclass
class WhatIfRun:
    label: str  # e.g. "wanka (baseline)"
    cluster: Cluster
    queues: QueueTree
    jobs: list[tuple[Job, float]] | None  # (job, duration at full size in s); None: the synthetic ones
    policy: CycleConfig
    # synthetic jobs only: leaf queue of the first run's tree -> the queue they go to in this one
    queue_map: dict[str, str] | None = None


@dataclass(frozen=True)
class SyntheticAsk:
    """The synthetic month (docs/twin.md), built on the first run's cluster and tree."""

    days: float
    load: float
    seed: int


@dataclass
class WhatIfInput:
    title: str
    runs: list[WhatIfRun]
    horizon_s: float  # the simulated period the progress bar measures (runs may go past it)
    config: SimConfig = field(default_factory=SimConfig)
    models: Models = field(default_factory=Models)
    notes: list[str] = field(default_factory=list)
    synthetic: SyntheticAsk | None = None


def leaves_by_share(tree: QueueTree) -> list[tuple[str, str]]:
    """(leaf, organisation) of every leaf queue, the largest nominal quota first."""
    out = []
    for leaf in tree.leaves:
        org = leaf
        while tree.parent[org] >= 0 and tree.parent[tree.parent[org]] >= 0:  # up to the root's child
            org = tree.parent[org]
        out.append((-sum(tree.nominal[leaf]), tree.names[leaf], tree.names[org]))
    return [(name, org) for _, name, org in sorted(out)]


def synthetic_jobs(cluster: Cluster, tree: QueueTree, ask: SyntheticAsk) -> list[tuple[Job, float]]:
    """The synthetic month on this cluster, its tenants' jobs spread over the tree's leaf queues:
    the largest contract to the leaf with the largest nominal quota, and so on round. Its jobs ask
    for the CPUs and memory of full-size nodes (8 cores and 64 GiB a card); on nodes with less per
    card, each task asks for its cards' share of them instead, so the workload tests the cards,
    not the host sizes."""
    leaves = leaves_by_share(tree)
    route = {t: leaves[i % len(leaves)] for i, (t, _, _) in enumerate(sorted(TENANTS, key=lambda t: -t[1]))}
    cards = np.maximum(cluster.node_cards, 1)
    cpus_per_card = float((cluster.node_cpus / cards).max())
    memory_per_card = float((cluster.node_memory / cards).max())

    def fitted(g: TaskGroup) -> TaskGroup:
        cpus = min(g.cpus, int(cpus_per_card * g.cards)) if cpus_per_card > 0 else g.cpus
        memory = min(g.memory_gib, int(memory_per_card * g.cards)) if memory_per_card > 0 else g.memory_gib
        return dataclasses.replace(g, cpus=cpus, memory_gib=memory)

    out = []
    for j, d in synthetic_month(cluster, ask.days, ask.load, ask.seed).jobs:
        queue, org = route[j.tenant]
        out.append(
            (dataclasses.replace(j, queue=queue, tenant=org, groups=tuple(fitted(g) for g in j.groups)), d)
        )
    return out


def _workloads(spec: WhatIfInput) -> tuple[list[list], list[str]]:
    """Each run's jobs (the synthetic month built once, moved to each run's queues) and the notes
    with the synthetic job count; the spec itself is left as stored."""
    if spec.synthetic is None:
        return [run.jobs for run in spec.runs], list(spec.notes)
    first = spec.runs[0]
    jobs = synthetic_jobs(first.cluster, first.queues, spec.synthetic)
    per_run = []
    for run in spec.runs:
        moved = run.queue_map or {}
        per_run.append(
            run.jobs
            if run.jobs is not None
            else [(dataclasses.replace(j, queue=moved.get(j.queue, j.queue)), d) for j, d in jobs]
        )
    notes = list(spec.notes)
    notes.insert(1, f"synthetic jobs: {len(jobs):,}")
    return per_run, notes


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one


def run_directory(out: Path) -> dict:
    """Run the what-if stored in ``out`` and write its report there; returns the summary."""
    with (out / "input.pickle").open("rb") as fh:
        spec: WhatIfInput = pickle.load(fh)  # written by the server, in its own 0700 directory
    started, parent = time.perf_counter(), os.getppid()
    workloads, notes = _workloads(spec)
    results, count = [], len(spec.runs)
    for i, (run, jobs) in enumerate(zip(spec.runs, workloads, strict=True)):
        last = [0.0]
        t0 = time.perf_counter()

        def tick(now: float, events: int, i=i, last=last, t0=t0) -> None:
            if os.getppid() != parent:  # the server died without stopping us: nobody waits
                raise SystemExit(1)
            wall = time.perf_counter()
            if wall - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = wall
            done = min(now / spec.horizon_s, 0.99) if spec.horizon_s > 0 else 0.0
            _write_json(
                out / "progress.json",
                {
                    "fraction": (i + done) / count,
                    "run": i + 1,
                    "runs": count,
                    "day": now / 86400.0,
                    "events_per_s": events / max(wall - t0, 1e-9),
                },
            )

        twin = Twin(run.cluster, run.queues, jobs, run.policy, spec.config, spec.models, tick)
        result = twin.run()
        result.policy = run.label
        results.append(result)
    summaries = [summarize(r) for r in results]
    for r in results:  # jobs that can never run here are a finding, not a silent zero
        if r.rejected:
            reason = Counter(r.rejected.values()).most_common(1)[0][0]
            notes.append(
                f"{r.policy}: {len(r.rejected):,} of {len(r.stats):,} jobs can never run on this cluster "
                f"(most often: {reason})"
            )
    files = write_report(out / "report", spec.title, results, summaries, notes)
    summary = {
        "title": spec.title,
        "notes": notes,
        "results": summaries,
        "plots": [p.name for p in files if p.suffix == ".png"],
        "files": sorted(p.name for p in files),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    _write_json(out / "progress.json", {"fraction": 1.0, "run": count, "runs": count, "day": 0.0})
    _write_json(out / "summary.json", summary)
    return summary


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m wanka.sim.whatif DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    os.nice(10)
    try:
        run_directory(out)
    except Exception as exc:  # the page shows it; the server goes on
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}"[:2000], encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
