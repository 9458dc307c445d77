"""A realistic snapshot of a busy multi-tenant cluster: what one scheduling cycle faces.

Sizes follow the shape of published LLM-era traces (most jobs are one node or less, a long tail of
large gangs carries most of the card-hours; Acme/Helios report >50% single-GPU jobs and
multi-thousand-card pre-training): the mix below is a documented assumption, not a fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wanka.core import (
    PRIORITY_CLASSES,
    Cluster,
    ClusterState,
    FlavorQuota,
    Job,
    JobKind,
    JobState,
    QueueNode,
    QueueTree,
    QueueUsage,
    Snapshot,
    TaskGroup,
)
from wanka.core.placement import FreeArrays, GroupRequest, place_gang

# (cards, probability) for waiting jobs: 1 card up to 2,048-card gangs
PENDING_SIZES = (
    (1, 0.40),
    (2, 0.12),
    (4, 0.10),
    (8, 0.14),
    (16, 0.07),
    (32, 0.05),
    (64, 0.04),
    (128, 0.03),
    (256, 0.02),
    (512, 0.015),
    (1024, 0.01),
    (2048, 0.005),
)
# running jobs are mostly small (the big ones are placed first, separately)
RUNNING_SIZES = ((1, 0.75), (2, 0.20), (4, 0.05))
PRIORITY_MIX = (("high", 0.10), ("normal", 0.70), ("low", 0.15), ("best-effort", 0.05))
DAY = 86400.0


@dataclass(frozen=True)
class Workload:
    snapshot: Snapshot


def tenant_tree(cluster: Cluster, tenants: list[str]) -> QueueTree:
    """Each tenant an organisation with one team queue and an equal nominal share of every model."""
    flavors = [m.id for m in cluster.models]
    cap = cluster.cards_by_model()
    nodes = [QueueNode("cluster", None, {f: FlavorQuota(int(c)) for f, c in zip(flavors, cap, strict=True)})]
    for t in tenants:
        share = {f: FlavorQuota(int(c) // len(tenants)) for f, c in zip(flavors, cap, strict=True)}
        nodes.append(QueueNode(t, "cluster", share))
        nodes.append(QueueNode(f"{t}-main", t, share))
    return QueueTree(nodes, flavors)


def _job(
    rng: np.random.Generator, jid: str, tenant: str, cards: int, now: float, model: str, running: bool
) -> Job:
    pclass = PRIORITY_CLASSES[rng.choice([p for p, _ in PRIORITY_MIX], p=[w for _, w in PRIORITY_MIX])]
    if cards >= 8:
        group = TaskGroup("worker", cards // 8, 8, (model,), cpus=16, memory_gib=128)
    else:
        group = TaskGroup("worker", 1, cards, (model,), cpus=2 * cards, memory_gib=16 * cards)
    kind = JobKind.TRAINING
    if cards <= 2 and rng.random() < 0.15:
        kind = JobKind.INFERENCE
        group = TaskGroup("server", int(rng.integers(1, 4)), cards, (model,), cpus=4, memory_gib=32)
    # time limits: hours for small jobs, days for large gangs (lognormal spread)
    scale = 3600.0 * (2.0 + 8.0 * np.log2(cards + 1))
    limit = float(min(14 * DAY, rng.lognormal(np.log(scale), 0.8)))
    submit = now - float(rng.uniform(0, DAY if not running else 3 * DAY))
    job = Job(
        id=jid,
        tenant=tenant,
        queue=f"{tenant}-main",
        groups=(group,),
        name=f"{kind.value}-{jid}",
        priority=pclass.value,
        priority_class=pclass.name,
        kind=kind,
        time_limit_s=limit,
        preemptible=pclass.preemptible,
        checkpoint_interval_s=1800.0 if cards >= 8 else None,
        submit_time=submit,
    )
    if running:
        job.state = JobState.RUNNING
        job.start_time = submit + float(rng.uniform(0, now - submit))
        job.time_limit_s = max(limit, now - job.start_time + 60.0)
        job.attained_service = (now - job.start_time) * job.total_cards
    return job


def busy_cluster(
    cluster: Cluster,
    pending: int = 10_000,
    running: int = 5_000,
    tenants: int = 20,
    seed: int = 0,
    now: float = 30 * DAY,
) -> Workload:
    """A snapshot with ``running`` jobs holding most cards and ``pending`` jobs waiting."""
    rng = np.random.default_rng(seed)
    names = [f"tenant-{i:02d}" for i in range(1, tenants + 1)]
    model = cluster.models[0].id
    state = ClusterState.empty(cluster)
    free = FreeArrays(state.free_cards, state.free_cpus, state.free_memory, state.free_mask)
    usable = cluster.node_model == 0
    running_jobs: list[Job] = []
    # a few large gangs hold a fifth of the cards; many small jobs fill most of the rest
    big_budget = cluster.total_cards // 5
    sizes = [2048, 1024, 512, 256, 128]
    i = 0
    while big_budget > 0 and len(running_jobs) < running:
        cards = sizes[i % len(sizes)]
        i += 1
        if cards > big_budget:
            if cards == sizes[-1]:
                break
            continue
        big_budget -= cards
        _place_running(rng, cluster, state, free, usable, running_jobs, names, cards, now, model)
    small_sizes = [c for c, _ in RUNNING_SIZES]
    small_p = [p for _, p in RUNNING_SIZES]
    target_free = int(cluster.total_cards * 0.02)
    while len(running_jobs) < running and int(state.free_cards.sum()) > target_free:
        cards = int(rng.choice(small_sizes, p=small_p))
        if not _place_running(rng, cluster, state, free, usable, running_jobs, names, cards, now, model):
            break
    sizes_p = [p for _, p in PENDING_SIZES]
    pend = [
        _job(
            rng,
            f"p{k:06d}",
            names[int(rng.integers(len(names)))],
            int(rng.choice([c for c, _ in PENDING_SIZES], p=sizes_p)),
            now,
            model,
            False,
        )
        for k in range(pending)
    ]
    usage = {
        f"{t}-main": QueueUsage(compute=float(rng.uniform(0, 5e6)), cpu=0.0, memory=0.0, as_of=now)
        for t in names
    }
    snap = Snapshot(now, cluster, state, tenant_tree(cluster, names), pend, running_jobs, usage)
    return Workload(snap)


def _place_running(rng, cluster, state, free, usable, out, names, cards, now, model) -> bool:
    job = _job(rng, f"r{len(out):06d}", names[int(rng.integers(len(names)))], cards, now, model, True)
    g = job.groups[0]
    req = GroupRequest(
        g.role, g.replicas, g.gang_min, g.cards, g.cpus, g.memory_gib, job.kind is JobKind.INFERENCE
    )
    placement = place_gang(cluster, free, usable, model, [req])
    if placement is None:
        return False
    state.allocate(placement)
    job.placement = placement
    out.append(job)
    return True
