"""The cluster as the scheduler sees it: nodes in nested network domains, held as numpy arrays.

A node sits in one domain per tier, innermost first: ``node`` → an interconnect domain (an HCCS
super-node, say) → leaf switch → pod/spine → ``cluster``. Nodes are stored sorted by their domain
path, so every domain at every tier is a *contiguous range* of node indices; a per-domain sum is one
``np.add.reduceat`` and the children of a domain are a contiguous range of the tier below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from wanka.core.hardware import Accelerator, Precision

MAX_CARDS_PER_NODE = 64  # card sets are 64-bit masks


class NodeState(IntEnum):
    """UP takes new work; DRAINING keeps what runs but takes nothing new; DOWN has failed."""

    UP = 0
    DRAINING = 1
    DOWN = 2


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node as given to :meth:`Cluster.build`.

    ``domains`` names the node's domain at each tier between ``node`` and ``cluster``, innermost
    first (one name per tier). Names need only be unique within their parent domain.
    """

    name: str
    accelerator: Accelerator
    cards: int
    domains: tuple[str, ...]
    cpus: int = 0
    memory_gib: int = 0
    pool: str = "default"
    state: NodeState = NodeState.UP
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeKinds:
    """Node shapes of one model: parallel int64 arrays, one row per distinct shape."""

    cards: np.ndarray
    cpus: np.ndarray
    memory: np.ndarray  # GiB
    count: np.ndarray  # nodes of that shape

    def total(self, per_node: np.ndarray) -> int:
        """``per_node`` (one value per shape) summed over every node."""
        return int((per_node * self.count).sum(dtype=np.int64))


class Cluster:
    """Static structure of a cluster. Free resources live in :class:`wanka.core.state.ClusterState`.

    Attributes (N nodes, T tiers, tier 0 = node, tier T-1 = cluster):
        node_cards, node_cpus, node_memory: capacity per node.
        node_model: index into ``models`` per node.
        node_state: :class:`NodeState` per node (int8; callers may update it between cycles).
        domain_of[t]: domain index of every node at tier t.
        domain_starts[t]: first node index of each domain at tier t (for ``np.add.reduceat``).
        child_range[t]: (first, last+1) child-domain indices at tier t-1 for each domain at tier t.
    """

    def __init__(self, name: str, tiers: Sequence[str], nodes: Sequence[NodeRecord]):
        if len(tiers) < 2 or tiers[0] != "node" or tiers[-1] != "cluster":
            raise ValueError("tiers must start with 'node' and end with 'cluster'")
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"tier names must be unique: {list(tiers)}")
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        inner = len(tiers) - 2
        for rec in nodes:
            if len(rec.domains) != inner:
                raise ValueError(f"node {rec.name!r} names {len(rec.domains)} domains; tiers need {inner}")
            if not 0 < rec.cards <= MAX_CARDS_PER_NODE:
                raise ValueError(f"node {rec.name!r}: cards must be 1..{MAX_CARDS_PER_NODE}, got {rec.cards}")
        self.name = name
        self.tiers = tuple(tiers)
        # Sort by path outermost-first so each domain is contiguous; stable keeps the given order inside.
        order = sorted(range(len(nodes)), key=lambda i: tuple(reversed(nodes[i].domains)))
        self.nodes: tuple[NodeRecord, ...] = tuple(nodes[i] for i in order)
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        self.node_names = names
        self.node_index = {n: i for i, n in enumerate(names)}

        models: dict[str, int] = {}
        for rec in self.nodes:
            models.setdefault(rec.accelerator.id, len(models))
        self.models: tuple[Accelerator, ...] = tuple(
            next(r.accelerator for r in self.nodes if r.accelerator.id == mid) for mid in models
        )
        self.model_index = models
        n = len(self.nodes)
        self.node_cards = np.array([r.cards for r in self.nodes], dtype=np.int32)
        self.node_cpus = np.array([r.cpus for r in self.nodes], dtype=np.int32)
        self.node_memory = np.array([r.memory_gib for r in self.nodes], dtype=np.int32)
        self.node_model = np.array([models[r.accelerator.id] for r in self.nodes], dtype=np.int16)
        self.node_state = np.array([int(r.state) for r in self.nodes], dtype=np.int8)

        self.domain_of: list[np.ndarray] = [np.arange(n, dtype=np.int32)]
        self.domain_names: list[list[str]] = [names]
        self.domain_starts: list[np.ndarray] = [np.arange(n, dtype=np.int64)]
        for t in range(1, len(self.tiers)):
            keys = [tuple(reversed(r.domains[t - 1 :])) for r in self.nodes]  # path from the outside in
            idx = np.zeros(n, dtype=np.int32)
            starts, dnames = [0], [self._domain_label(t, keys[0])]
            for i in range(1, n):
                if keys[i] != keys[i - 1]:
                    starts.append(i)
                    dnames.append(self._domain_label(t, keys[i]))
                idx[i] = len(starts) - 1
            self.domain_of.append(idx)
            self.domain_starts.append(np.array(starts, dtype=np.int64))
            self.domain_names.append(dnames)
        # one past the last node of each domain
        self.domain_ends = [np.append(st[1:], n).astype(np.int64) for st in self.domain_starts]
        self.child_range: list[np.ndarray | None] = [None]
        for t in range(1, len(self.tiers)):
            # children of domain d at tier t: the tier t-1 domains whose first node lies inside d
            parent_of_child = self.domain_of[t][self.domain_starts[t - 1]]
            first = np.searchsorted(parent_of_child, np.arange(len(self.domain_starts[t])), side="left")
            last = np.searchsorted(parent_of_child, np.arange(len(self.domain_starts[t])), side="right")
            self.child_range.append(np.stack([first, last], axis=1))
        self._capacity: dict[Precision, float] = {}
        self._kinds: dict[int, NodeKinds] = {}
        self.domain_cards = [np.add.reduceat(self.node_cards.astype(np.int64), s) for s in self.domain_starts]

    def become(self, other: Cluster) -> None:
        """Take ``other``'s structure in place: everything holding this cluster sees the new
        inventory. Node indices change with it; callers re-map what they keep by node name."""
        self.__dict__ = other.__dict__  # one swap, not attribute by attribute

    def _domain_label(self, tier: int, key: tuple[str, ...]) -> str:
        return "cluster" if self.tiers[tier] == "cluster" else "/".join(key)

    # --- sizes -------------------------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def total_cards(self) -> int:
        return int(self.node_cards.sum())

    def domain_count(self, tier: int) -> int:
        return len(self.domain_starts[tier])

    def cards_by_model(self, states: Sequence[NodeState] = (NodeState.UP, NodeState.DRAINING)) -> np.ndarray:
        """Cards per model index on nodes in the given states."""
        keep = np.isin(self.node_state, [int(s) for s in states])
        return np.bincount(
            self.node_model[keep], weights=self.node_cards[keep], minlength=len(self.models)
        ).astype(np.int64)

    def node_kinds(self, model: int) -> NodeKinds:
        """The distinct (cards, CPUs, memory) among the nodes of ``model`` (an index into
        ``models``), whatever their state, and how many nodes have each: a 10,000-node cluster has
        a handful, so checks over every node of a model run over these rows instead. Cached."""
        kinds = self._kinds.get(model)
        if kinds is None:
            on = self.node_model == model
            rows = np.stack([self.node_cards[on], self.node_cpus[on], self.node_memory[on]], axis=1)
            unique, count = np.unique(rows.astype(np.int64), axis=0, return_counts=True)
            kinds = self._kinds[model] = NodeKinds(unique[:, 0], unique[:, 1], unique[:, 2], count)
        return kinds

    def capacity_pflops(self, precision: Precision | str = Precision.BF16) -> float:
        """Peak PFLOPS of every card at ``precision`` (dense). Cached: every cycle asks for it."""
        key = Precision(precision)
        if key not in self._capacity:
            per_model = np.array([m.tflops(key) for m in self.models], dtype=np.float64)
            self._capacity[key] = float((per_model[self.node_model] * self.node_cards).sum() / 1000.0)
        return self._capacity[key]
