"""Cluster spec files: node pools laid out in nested network domains; the built-in presets."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wanka.core.cluster import MAX_CARDS_PER_NODE, Cluster, NodeRecord, NodeState
from wanka.core.hardware import Catalog, Precision, UnknownAccelerator
from wanka.models.errors import SpecError, from_validation_error, load_yaml
from wanka.models.hardware import default_catalog

STRICT = ConfigDict(extra="forbid")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class PoolSpec(BaseModel):
    """``nodes`` identical nodes. ``layout`` says how many members each domain of a tier holds:
    ``{leaf: 25, pod: 10}`` is 25 nodes per leaf switch and 10 leaves per pod. A tier left out
    holds one member (the pool has no such level). Pools never share a domain below the cluster."""

    model_config = STRICT
    name: str = Field(pattern=NAME)
    accelerator: str
    nodes: int = Field(ge=1, le=1_000_000)
    cards_per_node: int = Field(ge=1, le=MAX_CARDS_PER_NODE)
    cpus: int = Field(default=0, ge=0)
    memory_gib: int = Field(default=0, ge=0)
    labels: dict[str, str] = {}
    layout: dict[str, int] = {}
    node_names: list[str] = Field(
        default=[], description="the nodes' own names (e.g. from Slurm); default POOL-0001, POOL-0002, …"
    )

    @field_validator("layout")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        for tier, size in v.items():
            if size < 1:
                raise ValueError(f"{tier}: each domain must hold at least 1 member, got {size}")
        return v


class PublishedCapacity(BaseModel):
    """A capacity figure as its owner publishes it, to compare the model against."""

    model_config = STRICT
    pflops: float = Field(gt=0)
    precision: Precision = Precision.BF16
    source: str
    phases: list[float] = []


class ClusterSpec(BaseModel):
    model_config = STRICT
    name: str = Field(pattern=NAME)
    description: str = ""
    tiers: list[str] = Field(default=[], description="tiers between node and cluster, innermost first")
    pools: list[PoolSpec] = Field(min_length=1)
    node_states: dict[str, NodeState] = {}
    node_domains: dict[str, list[str]] = Field(
        default={},
        description="a node's network domains, one per tier, innermost first (e.g. from Slurm's "
        "topology.conf); they replace what the pool's layout would give that node",
    )
    published: PublishedCapacity | None = None
    notes: list[str] = []

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[str]) -> list[str]:
        for t in v:
            if t in ("node", "cluster"):
                raise ValueError("'node' and 'cluster' are implied; list only the tiers between them")
        if len(set(v)) != len(v):
            raise ValueError(f"tier names must be unique, got {v}")
        return v

    @field_validator("node_states", mode="before")
    @classmethod
    def _states(cls, v):
        if not isinstance(v, dict):
            return v
        out = {}
        for node, state in v.items():
            try:
                out[node] = NodeState[str(state).upper()]
            except KeyError:
                raise ValueError(f"{node}: state {state!r} is not one of up, draining, down") from None
        return out

    @model_validator(mode="after")
    def _consistent(self):
        for i, pool in enumerate(self.pools):
            if pool.node_names and len(pool.node_names) != pool.nodes:
                raise ValueError(
                    f"pools[{i}].node_names: {len(pool.node_names)} names for {pool.nodes} nodes"
                )
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        for i, pool in enumerate(self.pools):
            for tier in pool.layout:
                if tier not in self.tiers:
                    raise ValueError(f"pools[{i}].layout: unknown tier {tier!r}; tiers are {self.tiers}")
        return self


def node_names(pool: PoolSpec) -> list[str]:
    if pool.node_names:
        return list(pool.node_names)
    width = max(4, len(str(pool.nodes)))
    return [f"{pool.name}-{i:0{width}d}" for i in range(1, pool.nodes + 1)]


def build_cluster(spec: ClusterSpec, catalog: Catalog | None = None, source: str = "cluster spec") -> Cluster:
    catalog = catalog or default_catalog()
    problems: list[tuple[str, str]] = []
    records: list[NodeRecord] = []
    unbuilt: set[str] = set()  # nodes of pools refused above: named, so not "no such node" again
    for i, pool in enumerate(spec.pools):
        try:
            acc = catalog.get(pool.accelerator)
        except UnknownAccelerator as exc:
            problems.append((f"pools[{i}].accelerator", str(exc)))
            unbuilt.update(node_names(pool))
            continue
        for n, name in enumerate(node_names(pool)):
            domains, index = [], n
            for tier in spec.tiers:  # innermost first: divide down the layout
                index //= pool.layout.get(tier, 1)
                domains.append(f"{pool.name}-{tier}{index + 1:03d}")
            if name in spec.node_domains:
                domains = list(spec.node_domains[name])
            state = spec.node_states.get(name, NodeState.UP)
            records.append(
                NodeRecord(
                    name,
                    acc,
                    pool.cards_per_node,
                    tuple(domains),
                    pool.cpus,
                    pool.memory_gib,
                    pool.name,
                    state,
                    pool.labels,
                )
            )
    known = {r.name for r in records}
    for node, domains in spec.node_domains.items():
        if node in unbuilt:
            continue
        if node not in known:
            problems.append((f"node_domains.{node}", "no such node"))
        elif len(domains) != len(spec.tiers):
            problems.append((f"node_domains.{node}", f"give one domain per tier ({len(spec.tiers)})"))
    for node in spec.node_states:
        if node not in known and node not in unbuilt:
            problems.append((f"node_states.{node}", "no such node (names are POOL-NNNN)"))
    if problems:
        raise SpecError(source, problems)
    return Cluster(spec.name, ("node", *spec.tiers, "cluster"), records)


def parse_cluster(data: dict, source: str = "cluster spec", catalog: Catalog | None = None) -> Cluster:
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(source, exc, ClusterSpec) from None
    return build_cluster(spec, catalog, source)


def preset_names() -> list[str]:
    folder = resources.files("wanka").joinpath("data/clusters")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def cluster_spec_data(name_or_path: str | Path) -> tuple[dict, str]:
    """The raw spec of a preset name or a YAML file, and where it came from."""
    if str(name_or_path) in preset_names():
        text = (
            resources.files("wanka")
            .joinpath(f"data/clusters/{name_or_path}.yaml")
            .read_text(encoding="utf-8")
        )
        return yaml.safe_load(text), f"preset {name_or_path}"
    path = Path(name_or_path)
    if not path.exists():
        raise SpecError(
            str(name_or_path),
            [("(cluster)", f"neither a preset ({', '.join(preset_names())}) nor an existing file")],
        )
    return load_yaml(path), str(path)


def load_cluster(name_or_path: str | Path, catalog: Catalog | None = None) -> Cluster:
    data, source = cluster_spec_data(name_or_path)
    return parse_cluster(data, source, catalog)


def reference_spec(cards: int) -> dict:
    """The wanka-10k layout (8 cards a node, 25 nodes a leaf, 10 leaves a pod) at another size."""
    data, _ = cluster_spec_data("wanka-10k")
    nodes = -(-cards // 8)
    data["name"] = "wanka-10k" if nodes == 1250 else f"wanka-ref-{nodes * 8}"
    data["description"] = f"{nodes * 8} cards in the wanka-10k layout"
    data["pools"][0]["nodes"] = nodes
    return data
