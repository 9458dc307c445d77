"""A synthetic month of an LLM-era, multi-tenant compute centre.

The shape follows published traces (Acme/InternLM, Helios, Philly, Llama 3's report): most jobs are
small and short (evaluation, notebooks), a few enormous pre-training gangs hold most card-hours for
days, fine-tuning sits between, inference services run for days. Rates are per 10,000 cards per
day and scale with the cluster; at ``load = 1`` the offered work is about three quarters of the
cluster. Every figure is an assumption stated in docs/twin.md, not a fit to one trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wanka.core import (
    PRIORITY_CLASSES,
    Cluster,
    FlavorQuota,
    Job,
    JobKind,
    QueueNode,
    QueueTree,
    TaskGroup,
)

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class JobClass:
    name: str
    kind: JobKind
    per_day: float  # arrivals per day per 10,000 cards at load 1
    sizes: tuple[tuple[int, float], ...]  # (cards, weight)
    median_s: float  # lognormal duration: median and sigma (of the log)
    sigma: float
    max_s: float
    priority_class: str
    tenants: str  # "labs": the large contracts only; "all": anyone
    replicas: tuple[int, int] = (1, 1)  # inference: replicas drawn from this range


CLASSES: tuple[JobClass, ...] = (
    JobClass(
        "pretrain",
        JobKind.TRAINING,
        1.4,
        ((256, 0.30), (512, 0.25), (1024, 0.20), (2048, 0.15), (4096, 0.07), (8192, 0.03)),
        3 * DAY,
        0.6,
        14 * DAY,
        "high",
        "labs",
    ),
    JobClass(
        "finetune",
        JobKind.TRAINING,
        40.0,
        ((8, 0.35), (16, 0.25), (32, 0.20), (64, 0.12), (128, 0.08)),
        6 * HOUR,
        1.0,
        4 * DAY,
        "normal",
        "all",
    ),
    JobClass(
        "eval",
        JobKind.BATCH,
        2000.0,
        ((1, 0.4), (2, 0.2), (4, 0.2), (8, 0.2)),
        30 * 60.0,
        1.0,
        DAY,
        "low",
        "all",
    ),
    JobClass(
        "inference",
        JobKind.INFERENCE,
        5.0,
        ((1, 0.3), (2, 0.3), (4, 0.2), (8, 0.2)),
        5 * DAY,
        0.5,
        30 * DAY,
        "high",
        "all",
        replicas=(2, 8),
    ),
    JobClass(
        "notebook",
        JobKind.INTERACTIVE,
        100.0,
        ((1, 0.6), (2, 0.4)),
        2 * HOUR,
        0.5,
        12 * HOUR,
        "normal",
        "all",
    ),
)

# Twenty tenants of a city compute centre, with the share of the cluster their contract buys.
TENANTS: tuple[tuple[str, float, bool], ...] = (
    ("pengcheng-lab", 0.16, True),
    ("sz-ai-institute", 0.12, True),
    ("llm-startup-a", 0.10, True),
    ("auto-driving-co", 0.08, True),
    ("sustech", 0.06, False),
    ("szu", 0.05, False),
    ("hkust-gz", 0.05, False),
    ("fintech-b", 0.04, False),
    ("bio-pharma-c", 0.04, False),
    ("robotics-d", 0.04, False),
    ("gov-data", 0.04, False),
    ("media-e", 0.03, False),
    ("game-studio-f", 0.03, False),
    ("ecommerce-g", 0.03, False),
    ("edu-platform-h", 0.03, False),
    ("law-ai-i", 0.02, False),
    ("med-imaging-j", 0.02, False),
    ("iot-k", 0.02, False),
    ("translation-l", 0.02, False),
    ("startup-m", 0.02, False),
)


@dataclass(frozen=True)
class SyntheticWorkload:
    jobs: list[tuple[Job, float]]  # (job, duration at full size on the reference card)
    queues: QueueTree
    name: str


SMALL = ("eval", "notebook")  # the classes a job-count target scales


def expected_jobs(cluster: Cluster, days: float, load: float) -> int:
    """How many jobs :func:`synthetic_month` makes on ``cluster`` on average (each class's count is
    Poisson-distributed around its share of this), without making them."""
    biggest = int(cluster.cards_by_model().max())
    rate = sum(c.per_day for c in CLASSES if any(size <= biggest for size, _ in c.sizes))
    return round(rate * cluster.total_cards / 10_000.0 * load * days)


def synthetic_month(
    cluster: Cluster,
    days: float = 30.0,
    load: float = 1.0,
    seed: int = 0,
    jobs: int | None = None,
    same_work: bool = False,
) -> SyntheticWorkload:
    """``jobs``: aim for about this many jobs by scaling only evaluation sweeps and notebooks (the
    classes real traces hold most of their jobs in), leaving the large gangs as ``load`` has them.
    With ``same_work`` those classes' durations shrink by the same factor, so the offered
    card-hours stay those of ``load`` (more, shorter small jobs); without it they add work."""
    if days <= 0 or load <= 0:
        raise ValueError("days and load must be > 0")
    rng = np.random.default_rng(seed)
    scale = cluster.total_cards / 10_000.0 * load
    small_scale = 1.0
    if jobs is not None:
        big = sum(c.per_day for c in CLASSES if c.name not in SMALL) * scale * days
        small = sum(c.per_day for c in CLASSES if c.name in SMALL) * scale * days
        small_scale = max(0.0, (jobs - big) / small)
    biggest = int(cluster.cards_by_model().max())
    node = int(cluster.node_cards.max())
    labs = [t for t, _, lab in TENANTS if lab]
    everyone = [t for t, _, _ in TENANTS]
    contract = np.array([share for _, share, _ in TENANTS])
    raw: list[tuple[float, JobClass, int, int, float, str]] = []
    for cls in CLASSES:
        sizes = [(c, w) for c, w in cls.sizes if c <= biggest]
        if not sizes:
            continue
        count = rng.poisson(cls.per_day * scale * days * (small_scale if cls.name in SMALL else 1.0))
        submits = rng.uniform(0.0, days * DAY, size=count)
        cards = rng.choice([c for c, _ in sizes], size=count, p=_norm([w for _, w in sizes]))
        shrink = small_scale if same_work and cls.name in SMALL and small_scale > 1.0 else 1.0
        durations = np.minimum(
            rng.lognormal(np.log(cls.median_s / shrink), cls.sigma, size=count), cls.max_s / shrink
        )
        replicas = rng.integers(cls.replicas[0], cls.replicas[1] + 1, size=count)
        if cls.tenants == "labs":
            who = rng.choice(labs, size=count)
        else:  # tenants submit in proportion to their contract
            who = rng.choice(everyone, size=count, p=contract / contract.sum())
        raw += zip(submits, [cls] * count, cards, replicas, durations, who, strict=True)
    raw.sort(key=lambda r: (r[0], r[1].name))
    jobs = []
    for i, (submit, cls, cards, replicas, duration, tenant) in enumerate(raw):
        cards, replicas = int(cards), int(replicas)
        if cls.kind is JobKind.INFERENCE:
            group = TaskGroup("server", replicas, cards, (), cpus=4 * cards, memory_gib=32 * cards)
        elif cards > node:
            group = TaskGroup("worker", cards // node, node, (), cpus=8 * node, memory_gib=64 * node)
        else:
            group = TaskGroup("worker", 1, cards, (), cpus=8 * cards, memory_gib=64 * cards)
        pc = PRIORITY_CLASSES[cls.priority_class]
        job = Job(
            id=f"{cls.name}-{i:07d}",
            tenant=tenant,
            queue=tenant,
            groups=(group,),
            name=f"{tenant}/{cls.name}",
            priority=pc.value,
            priority_class=pc.name,
            kind=cls.kind,
            time_limit_s=float(duration * rng.uniform(1.2, 3.0)),  # users over-estimate
            preemptible=pc.preemptible,
            submit_time=float(submit),
        )
        jobs.append((job, float(duration)))
    return SyntheticWorkload(
        jobs, contract_queues(cluster), f"synthetic LLM workload ({days:g} days, load {load:g})"
    )


def contract_queues(cluster: Cluster) -> QueueTree:
    """Each tenant a queue whose nominal quota is its contract's share of every model, weighted by it;
    idle quota is lent to anyone (no lending limit) and borrowing is open: reclaim keeps it fair."""
    flavors = [m.id for m in cluster.models]
    capacity = cluster.cards_by_model(states=(0, 1, 2))
    nodes = [
        QueueNode("cluster", None, {f: FlavorQuota(int(c)) for f, c in zip(flavors, capacity, strict=True)})
    ]
    for tenant, share, _ in TENANTS:
        quota = {f: FlavorQuota(int(c * share)) for f, c in zip(flavors, capacity, strict=True)}
        nodes.append(QueueNode(tenant, "cluster", quota, weight=share))
    return QueueTree(nodes, flavors)


def _norm(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()
