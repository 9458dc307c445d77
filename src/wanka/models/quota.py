"""Queue/quota files: cluster → organisation → team queue, per accelerator model."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wanka.core.cluster import Cluster
from wanka.core.hardware import UnknownAccelerator
from wanka.core.jobs import PRIORITY_CLASSES
from wanka.core.quota import FlavorQuota, QueueNode, QueueTree, QuotaError
from wanka.models.bounds import MAX_SECONDS, NAME_LEN
from wanka.models.errors import SpecError, from_validation_error, load_yaml
from wanka.models.hardware import default_catalog

STRICT = ConfigDict(extra="forbid")
MAX_CARDS = 10_000_000  # quota figures: far above any cluster, well inside the core's int64 sums
#: What a queue may use when no document grants more: critical jobs are never preempted, so only an
#: admin grants them (Kubernetes keeps system-critical classes to kube-system the same way)
DEFAULT_PRIORITY_CLASSES = frozenset(c for c in PRIORITY_CLASSES if c != "critical")


class QuotaSpec(BaseModel):
    model_config = STRICT
    nominal: int = Field(default=0, ge=0, le=MAX_CARDS)
    borrowing_limit: int | None = Field(default=None, ge=0, le=MAX_CARDS)
    lending_limit: int | None = Field(default=None, ge=0, le=MAX_CARDS)


class QueueSpec(BaseModel):
    """A team queue (leaf) or, with ``queues``, an organisation. ``quota`` maps an accelerator
    model to its quota; an organisation's nominal includes its queues' nominal."""

    model_config = STRICT
    name: str = Field(max_length=NAME_LEN, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    weight: float = Field(default=1.0, gt=0, le=1e6)
    quota: dict[str, QuotaSpec] = Field(default={}, max_length=64)
    queues: list[QueueSpec] = Field(default=[], max_length=1000)
    default_time_limit_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds a job without a time limit may run here (Slurm's DefaultTime; default: "
        "its parent's, else max_time_limit_s)",
    )
    max_time_limit_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="the longest time limit a job here may ask for, in seconds (Slurm's MaxTime; "
        "default: its parent's)",
    )
    priority_classes: list[str] | None = Field(
        default=None,
        max_length=len(PRIORITY_CLASSES),
        description="classes this queue's jobs may use (default: its parent's; at the top, every "
        "class but critical, which an admin grants)",
    )

    @field_validator("priority_classes")
    @classmethod
    def _known_classes(cls, v: list[str] | None) -> list[str] | None:
        for name in v or ():
            if name not in PRIORITY_CLASSES:
                raise ValueError(
                    f"unknown priority class {name!r}; choose from {', '.join(PRIORITY_CLASSES)}"
                )
        return v


ROOT_QUEUE = "cluster"  # the quota tree's root: the whole cluster; no queue or tenant is named so


def sub_queue_names(body: dict) -> set[str]:
    """Every queue name of a quota document below its organisations (the organisations' own names
    are not included). Bounded by the document's own size; no validation."""
    names: set[str] = set()
    todo = [q for o in body.get("organisations") or [] if isinstance(o, dict) for q in o.get("queues") or []]
    while todo:
        q = todo.pop()
        if isinstance(q, dict):
            names.add(str(q.get("name")))
            todo.extend(q.get("queues") or [])
    return names


class QueueTreeSpec(BaseModel):
    model_config = STRICT
    organisations: list[QueueSpec] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self):
        seen: set[str] = set()

        def walk(q: QueueSpec):
            if q.name in seen or q.name == "cluster":
                raise ValueError(f"queue name {q.name!r} is used twice (or is the reserved root 'cluster')")
            seen.add(q.name)
            for c in q.queues:
                walk(c)

        for org in self.organisations:
            walk(org)
        return self


def build_queue_tree(spec: QueueTreeSpec, cluster: Cluster, source: str = "queues") -> QueueTree:
    """The root ``cluster`` holds every card of the cluster; what no organisation was given stays in
    the root's pool, which every queue may borrow from (within its borrowing limit)."""
    catalog = default_catalog()
    flavors = [m.id for m in cluster.models]
    capacity = dict(zip(flavors, (int(x) for x in cluster.cards_by_model(states=(0, 1, 2))), strict=True))
    nodes = [QueueNode("cluster", None, {f: FlavorQuota(capacity[f]) for f in flavors})]
    problems: list[tuple[str, str]] = []

    def walk(q: QueueSpec, parent: str, where: str):
        quotas = {}
        for model, qs in q.quota.items():
            try:
                acc = catalog.get(model)
            except UnknownAccelerator as exc:
                problems.append((f"{where}.quota.{model}", str(exc)))
                continue
            if acc.id not in flavors:
                problems.append(
                    (f"{where}.quota.{model}", f"this cluster has no {acc.id}; it has {', '.join(flavors)}")
                )
                continue
            quotas[acc.id] = FlavorQuota(qs.nominal, qs.borrowing_limit, qs.lending_limit)
        if (
            q.default_time_limit_s is not None
            and q.max_time_limit_s is not None
            and q.default_time_limit_s > q.max_time_limit_s
        ):
            problems.append((f"{where}.default_time_limit_s", "must not exceed max_time_limit_s"))
        nodes.append(QueueNode(q.name, parent, quotas, q.weight, q.default_time_limit_s, q.max_time_limit_s))
        for i, child in enumerate(q.queues):
            walk(child, q.name, f"{where}.queues[{i}]")

    for i, org in enumerate(spec.organisations):
        walk(org, "cluster", f"organisations[{i}]")
    if problems:
        raise SpecError(source, problems)
    try:
        return QueueTree(nodes, flavors)
    except QuotaError as exc:
        raise SpecError(source, [("organisations", str(exc))]) from exc


def granted_priority_classes(spec: QueueTreeSpec) -> dict[str, frozenset[str]]:
    """Queue name -> the priority classes its jobs may use: its own list, else its parent's, else
    :data:`DEFAULT_PRIORITY_CLASSES`."""
    out: dict[str, frozenset[str]] = {}

    def walk(q: QueueSpec, inherited: frozenset[str]):
        mine = inherited if q.priority_classes is None else frozenset(q.priority_classes)
        out[q.name] = mine
        for child in q.queues:
            walk(child, mine)

    for org in spec.organisations:
        walk(org, DEFAULT_PRIORITY_CLASSES)
    return out


def parse_queue_tree(data: dict, cluster: Cluster, source: str = "queues") -> QueueTree:
    try:
        spec = QueueTreeSpec.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(source, exc, QueueTreeSpec) from None
    return build_queue_tree(spec, cluster, source)


def load_queue_tree(path: str | Path, cluster: Cluster) -> QueueTree:
    return parse_queue_tree(load_yaml(path), cluster, str(path))
