"""What-ifs on the live cluster: the twin (``wanka.sim``) run on this server's cluster and quota tree,
in the background, one at a time, with a progress bar and a report (docs/console.md, "Twin reports").

A what-if compares a baseline (the cluster, quota tree and policy in force) with one change: more
cards, another policy preset or another quota document. Its workload is either the cluster's own
history (every job submitted in the last ``days`` that ever ran, with the time it held its cards) or
the synthetic LLM month (docs/twin.md) spread over the tree's leaf queues.

Each run lives in ``HOME/twin/ID/`` (0700, the server's alone): ``request.json`` (what was asked,
by whom, when), ``input.pickle`` (built here: the cluster, the trees, and the history's jobs or what
the synthetic month is to be; the child builds that, which takes seconds on 10,000 cards), and what
:mod:`wanka.sim.whatif` writes as it runs.
The run is a child process (``python -m wanka.sim.whatif``) in a session of its own, so cancelling
it or stopping the server stops it by its pid; a run whose process is gone without a summary (the
server was killed) is reported as interrupted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import pickle
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.core import POLICIES, Cluster, CycleConfig, Job, NodeState, QueueTree, get_policy
from wanka.core.config import with_las_thresholds
from wanka.models.quota import parse_queue_tree
from wanka.server import tables
from wanka.server.loop import core_job, server_policy
from wanka.server.trees import default_queue, quota_body
from wanka.sim.models import FailureModel, Models
from wanka.sim.synthetic import expected_jobs
from wanka.sim.twin import SimConfig
from wanka.sim.whatif import SyntheticAsk, WhatIfInput, WhatIfRun, leaves_by_share

DAY = 86400.0
MAX_HISTORY_DAYS = 90.0
MAX_SYNTHETIC_DAYS = 30.0
MAX_HISTORY_JOBS = 200_000  # the newest, when a window holds more
MAX_JOBS = 200_000  # in one what-if (a synthetic month at load 5 on 10,000 cards makes 320,000)
HISTORY_CHUNK = 2_000  # job rows read at once
MAX_EXTRA_CARDS = 100_000
KEEP_RUNS = 20  # finished runs kept on disk; older ones are deleted when a new one starts
RUN_ID = re.compile(r"[0-9]{10}-[0-9a-f]{8}")
FILE_NAME = re.compile(r"[A-Za-z0-9_.+() -]{1,120}\.(png|csv|md)")  # a report's (labels name CSVs)


class WhatIfIn(BaseModel):
    """A what-if as the operator asks for it. Every number bounded; errors name the field."""

    model_config = ConfigDict(extra="forbid")
    workload: Literal["history", "synthetic"] = "history"
    days: float = Field(7.0, gt=0, le=MAX_HISTORY_DAYS, description="history: look back; synthetic: simulate")
    load: float = Field(1.0, ge=0.05, le=5.0, description="synthetic: scales its arrival rates")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    change: Literal["none", "cards", "policy", "quotas"] = "none"
    cards: int = Field(0, ge=0, le=MAX_EXTRA_CARDS, description="change=cards: cards added")
    policy: str = Field("", max_length=40, description="change=policy: the preset to compare")
    quotas: dict | None = None  # change=quotas: the document (already parsed and checked)
    failures: Literal["none", "llama3", "shenzhen"] = "none"

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value and value not in POLICIES:
            raise ValueError(f"one of {', '.join(POLICIES)}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> WhatIfIn:
        if self.workload == "synthetic" and self.days > MAX_SYNTHETIC_DAYS:
            raise ValueError(f"days: the synthetic workload runs at most {MAX_SYNTHETIC_DAYS:g} days")
        if self.change == "cards" and self.cards < 1:
            raise ValueError("cards: how many cards to add (1 or more) when the change is cards")
        if self.change == "policy" and not self.policy:
            raise ValueError(
                f"policy: the preset to compare when the change is policy ({', '.join(POLICIES)})"
            )
        if self.change == "quotas" and self.quotas is None:
            raise ValueError("quotas: the quota document to compare when the change is quotas")
        return self


class Busy(Exception):
    """A what-if is running already: one at a time (each keeps a core busy)."""


class NoHistory(ValueError):
    """The look-back window holds no job that ever ran."""


class TooLarge(ValueError):
    """The workload asked for holds more than :data:`MAX_JOBS` jobs."""


# --- the input: the live cluster, its trees and a workload ---------------------------------------


def history_jobs(session: Session, tree: QueueTree, days: float, now: float) -> list[tuple[Job, float]]:
    """(job, duration) for each job submitted in the last ``days`` that ever ran (the newest
    :data:`MAX_HISTORY_JOBS`), oldest first, times from the first submit. Duration: a job that
    succeeded, its last run (a restart starts again); one that ended otherwise or still runs, the
    time its runs held cards (so far). The job's own task groups, priority class and time limit;
    its queue, or its tenant's default one when the tree in force has no such leaf any more. Rows
    are read in chunks: a spec can be large (its env), and only the core's view of it is kept."""
    t = tables.Job
    ids = session.scalars(
        select(t.id)
        .where(t.submit_time >= now - days * DAY, t.runs > 0)
        .order_by(t.id.desc())
        .limit(MAX_HISTORY_JOBS)
    ).all()[::-1]
    out: list[tuple[Job, float]] = []
    t0 = None
    for first in range(0, len(ids), HISTORY_CHUNK):
        chunk = ids[first : first + HISTORY_CHUNK]
        held: dict[int, list[tuple[float, float]]] = {}
        runs = session.execute(
            select(tables.JobRun.job_id, tables.JobRun.start, func.coalesce(tables.JobRun.end, now))
            .where(tables.JobRun.job_id.in_(chunk))
            .order_by(tables.JobRun.job_id, tables.JobRun.run)
        )
        for job_id, start, end in runs:
            held.setdefault(job_id, []).append((start, end))
        rows = session.execute(
            select(t.id, t.spec, t.queue, t.state, t.submit_time, tables.Tenant.name, t.service_id)
            .join(tables.Tenant, tables.Tenant.id == t.tenant_id)
            .where(t.id.in_(chunk))
            .order_by(t.id)
        )
        for job_id, spec, queue, state, submit, tenant, service_id in rows:
            spans = held.get(job_id)
            if not spans:
                continue
            t0 = submit if t0 is None else t0
            if state == "succeeded":
                duration = spans[-1][1] - spans[-1][0]
            else:
                duration = sum(end - start for start, end in spans)
            if not (queue in tree.index and tree.is_leaf(queue)):
                queue = default_queue(tree, tenant)
            job = core_job(job_id, spec, queue, max(0.0, submit - t0), service_id)
            job = dataclasses.replace(job, tenant=tenant)
            out.append((job, max(duration, 1.0)))
    return out


def grown(cluster: Cluster, cards: int) -> Cluster:
    """The cluster with at least ``cards`` more cards: nodes like its first one, in new leaf domains
    as full as its first one, under one new domain at each tier above."""
    first = cluster.nodes[0]
    nodes = math.ceil(cards / first.cards)
    per_leaf = int((cluster.domain_of[1] == cluster.domain_of[1][0]).sum()) if len(cluster.tiers) > 2 else 1
    added = []
    for i in range(nodes):
        leaf = f"what-if-{cluster.tiers[1]}-{i // per_leaf}"
        domains = (leaf, *(f"what-if-{tier}" for tier in cluster.tiers[2:-1]))[: len(first.domains)]
        added.append(dataclasses.replace(first, name=f"what-if-{i}", domains=domains, state=NodeState.UP))
    live = [
        dataclasses.replace(rec, state=NodeState(int(s)))
        for rec, s in zip(cluster.nodes, cluster.node_state, strict=True)
    ]
    return Cluster(f"{cluster.name} +{nodes * first.cards} cards", cluster.tiers, live + added)


def build_input(
    session: Session, cluster: Cluster, policy: CycleConfig, ask: WhatIfIn, now: float | None = None
) -> WhatIfInput:
    """The baseline and the what-if, ready for the twin. NoHistory when the window holds no job."""
    now = time.time() if now is None else now
    cluster = copy.copy(cluster)  # its node states as they are now (drained and down nodes stay out)
    cluster.node_state = cluster.node_state.copy()
    body = quota_body(session)
    tree = parse_queue_tree(body, cluster, "the quota tree in force")
    if ask.workload == "history":
        jobs = history_jobs(session, tree, ask.days, now)
        if not jobs:
            raise NoHistory(
                f"days: no job submitted in the last {ask.days:g} days ever ran; try the synthetic workload"
            )
        workload = f"the last {ask.days:g} days of this cluster ({len(jobs):,} jobs)"
        horizon = ask.days * DAY
        models = Models(FailureModel.preset(ask.failures)).without_overheads()  # measured times hold them
    else:
        synthetic = SyntheticAsk(ask.days, ask.load, ask.seed)
        expected = expected_jobs(cluster, ask.days, ask.load)
        if expected > MAX_JOBS:
            raise TooLarge(
                f"days: about {expected:,} jobs at load {ask.load:g} over {ask.days:g} days on this "
                f"cluster; at most {MAX_JOBS:,} in one what-if: fewer days or a lower load"
            )
        jobs = None  # built by the what-if's own process: seconds on 10,000 cards
        workload = f"synthetic LLM workload ({ask.days:g} days, load {ask.load:g})"
        horizon = ask.days * DAY
        models = Models(FailureModel.preset(ask.failures))
    runs = [WhatIfRun(f"{policy.name} (baseline)", cluster, tree, jobs, policy)]
    if ask.change == "cards":
        bigger = grown(cluster, ask.cards)
        runs.append(
            WhatIfRun(
                f"{policy.name} (+{ask.cards:,} cards)",
                bigger,
                parse_queue_tree(body, bigger, "the quota tree in force"),
                jobs,
                policy,
            )
        )
    elif ask.change == "policy":
        other = server_policy(with_las_thresholds(get_policy(ask.policy), _las(policy)))
        runs.append(WhatIfRun(f"{ask.policy} (policy)", cluster, tree, jobs, other))
    elif ask.change == "quotas":
        new_tree = parse_queue_tree(ask.quotas, cluster, "the what-if quota document")
        if jobs is None:
            moved = {leaf: _routed(leaf, org, new_tree) for leaf, org in leaves_by_share(tree)}
            runs.append(WhatIfRun(f"{policy.name} (new quotas)", cluster, new_tree, None, policy, moved))
        else:
            moved_jobs = [
                (dataclasses.replace(j, queue=_routed(j.queue, j.tenant, new_tree)), d) for j, d in jobs
            ]
            runs.append(WhatIfRun(f"{policy.name} (new quotas)", cluster, new_tree, moved_jobs, policy))
    notes = [
        f"workload: {workload}",
        f"cluster: {cluster.name}, {cluster.total_cards:,} cards as they are now "
        f"({int((cluster.node_state != NodeState.UP).sum())} node(s) drained or down stay so)",
        f"failures: {ask.failures}; "
        + (
            "measured run times (they hold their overheads)"
            if ask.workload == "history"
            else models.describe_overheads()
        ),
    ]
    return WhatIfInput(
        f"What-if on {cluster.name}: {runs[-1].label if len(runs) > 1 else 'baseline only'}",
        runs,
        horizon,
        SimConfig(cycle_interval_s=60.0, seed=ask.seed),
        models,
        notes,
        synthetic if ask.workload == "synthetic" else None,
    )


def _las(policy: CycleConfig) -> tuple[float, ...] | None:
    """The LAS queue limits the operator set for the server (``--las-thresholds``), which the
    compared preset gets too; None when the server runs its preset's own (each keeps its own)."""
    preset = POLICIES.get(policy.name)
    return None if preset is not None and preset.las == policy.las else policy.las.thresholds


def _routed(queue: str, tenant: str, tree: QueueTree) -> str:
    """Where a job of ``queue`` goes in ``tree``: the same leaf when there is one, else its
    tenant's default queue there."""
    return queue if queue in tree.index and tree.is_leaf(queue) else default_queue(tree, tenant)


# --- the runs: child processes and their directories ---------------------------------------------


class WhatIfRuns:
    """The what-ifs of this server, in ``root`` (one directory each, newest last)."""

    def __init__(self, root: Path, keep: int = KEEP_RUNS):
        self.root, self.keep = root, keep
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def check_free(self) -> None:
        """Busy when a what-if runs (asked before its input is built, and again at start)."""
        if any(p.poll() is None for p in list(self._procs.values())):
            raise Busy("a what-if is running; wait for it or cancel it")

    def start(self, inputs: WhatIfInput, request: dict, by: str) -> str:
        """Start a run in the background; Busy when one runs. Returns its id. Writes its input
        (megabytes for a large cluster): call it off the event loop."""
        with self._lock:
            self.check_free()
            self._tidy()
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            run_id = f"{int(time.time()):010d}-{secrets.token_hex(4)}"
            out = self.root / run_id
            out.mkdir(mode=0o700)
            record = {
                "id": run_id,
                "by": by,
                "started_at": time.time(),
                "request": request,
                "title": inputs.title,
            }
            (out / "request.json").write_text(json.dumps(record), encoding="utf-8")
            progress = {"fraction": 0.0, "run": 1, "runs": len(inputs.runs), "day": 0.0}
            (out / "progress.json").write_text(json.dumps(progress), encoding="utf-8")
            with (out / "input.pickle").open("wb") as fh:
                pickle.dump(inputs, fh, protocol=pickle.HIGHEST_PROTOCOL)
            env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
            with (out / "stderr.txt").open("wb") as err:
                self._procs[run_id] = subprocess.Popen(
                    # isolated (-I): no PYTHON* variables, no user site, and neither the working
                    # directory nor any path a tenant could write on sys.path (hostile review)
                    [sys.executable, "-I", "-m", "wanka.sim.whatif", str(out)],
                    cwd=out,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={**env, "MPLBACKEND": "Agg"},
                    start_new_session=True,  # its own group: cancel stops it and anything it started
                    close_fds=True,
                )
            return run_id

    def _tidy(self) -> None:
        """Reap finished children; delete the oldest finished runs beyond ``keep``."""
        for run_id, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[run_id]
        finished = [d for d in self._dirs() if d.name not in self._procs]
        for d in finished[: max(0, len(finished) - self.keep + 1)]:
            shutil.rmtree(d, ignore_errors=True)

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.iterdir() if d.is_dir() and RUN_ID.fullmatch(d.name))

    def runs(self) -> list[dict]:
        """Every run kept, newest first (as :meth:`get` describes them)."""
        return [self.get(d.name) for d in reversed(self._dirs())]

    def get(self, run_id: str) -> dict:
        """The run's record: ``request.json``'s fields, ``state`` (running, done, failed, cancelled,
        interrupted), ``progress`` (0..1, run, runs, day), ``summary`` when done, ``error`` when
        failed. KeyError for an id that names no run."""
        if not RUN_ID.fullmatch(run_id) or not (self.root / run_id / "request.json").is_file():
            raise KeyError(run_id)
        out = self.root / run_id
        record = json.loads((out / "request.json").read_text(encoding="utf-8"))
        proc = self._procs.get(run_id)
        alive = proc is not None and proc.poll() is None
        record["progress"] = _json(out / "progress.json") or {
            "fraction": 0.0,
            "run": 1,
            "runs": 1,
            "day": 0.0,
        }
        if (out / "summary.json").is_file():
            record["state"], record["summary"] = "done", _json(out / "summary.json")
        elif (out / "cancelled").exists():
            record["state"] = "cancelled"
        elif alive:
            record["state"] = "running"
        elif (out / "error.txt").is_file():
            record["state"], record["error"] = (
                "failed",
                (out / "error.txt").read_text(encoding="utf-8")[:2000],
            )
        elif proc is not None:
            record["state"], record["error"] = "failed", _tail(out / "stderr.txt")
        else:
            record["state"] = "interrupted"  # no process of this server's: it stopped mid-run
        return record

    def cancel(self, run_id: str) -> bool:
        """Stop a running what-if (SIGTERM to its group); False when it was not running."""
        with self._lock:
            proc = self._procs.get(run_id)
            if proc is None or proc.poll() is not None:
                return False
            (self.root / run_id / "cancelled").touch()
            _stop(proc)
            return True

    def file(self, run_id: str, name: str) -> Path:
        """A file of a finished run's report (a plot, a CSV or the Markdown); KeyError otherwise."""
        record = self.get(run_id)
        if (
            record["state"] != "done"
            or not FILE_NAME.fullmatch(name)
            or name not in record["summary"]["files"]
        ):
            raise KeyError(name)
        return self.root / run_id / "report" / name

    def stop(self) -> None:
        """Stop every running what-if (the server is stopping)."""
        with self._lock:
            for proc in self._procs.values():
                if proc.poll() is None:
                    _stop(proc)
            self._procs.clear()


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session and group (start_new_session)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "the run stopped without a report"
    return (lines[-1] if lines else "the run stopped without a report")[:2000]
