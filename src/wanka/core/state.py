"""Free resources per node, and placements (which cards on which node each task holds).

Cards on a node are a 64-bit mask, so a placement names exact device indices for the backend
while the hot path works on per-node counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from wanka.core.cluster import Cluster


@dataclass(frozen=True, slots=True)
class GroupPlacement:
    """Where each replica (task) of one task group runs: node index and card mask per replica."""

    role: str
    nodes: tuple[int, ...]
    masks: tuple[int, ...]  # 0 in what-if placements, where no cards are chosen
    cards_per_task: int = 1
    cpus: int = 0
    memory_gib: int = 0

    @property
    def replicas(self) -> int:
        return len(self.nodes)

    @property
    def cards(self) -> int:
        return self.cards_per_task * len(self.nodes)


@dataclass(frozen=True, slots=True)
class Placement:
    """A job's whole allocation: the accelerator model (flavor) and one entry per task group."""

    model: str
    groups: tuple[GroupPlacement, ...]
    # totals, computed once here so a cycle over 50,000 running jobs never recounts them
    total_cards: int = field(init=False, compare=False)
    total_cpus: int = field(init=False, compare=False)
    total_memory: int = field(init=False, compare=False)
    num_tasks: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_cards", sum(g.cards for g in self.groups))
        object.__setattr__(self, "total_cpus", sum(g.cpus * len(g.nodes) for g in self.groups))
        object.__setattr__(self, "total_memory", sum(g.memory_gib * len(g.nodes) for g in self.groups))
        object.__setattr__(self, "num_tasks", sum(len(g.nodes) for g in self.groups))

    @property
    def size(self) -> tuple[int, int]:
        """How large it is, to compare sizes of one job: cards, then tasks (a group of CPU-only
        tasks, data loaders, grows and shrinks too)."""
        return self.total_cards, self.num_tasks

    def node_set(self) -> set[int]:
        return {n for g in self.groups for n in g.nodes}

    def tasks(self) -> Iterable[tuple[str, int, int, tuple[int, ...]]]:
        """(role, node index, replica index within its group, device indices) for every task."""
        for g in self.groups:
            for i, (node, mask) in enumerate(zip(g.nodes, g.masks, strict=True)):
                yield g.role, node, i, mask_to_devices(mask)


def mask_to_devices(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def take_cards(free_mask: int, count: int, width: int) -> int:
    """Choose ``count`` free cards from ``free_mask``, preferring an aligned block.

    Cards inside a node are wired in groups (two HCCS/XPU-Link halves of 4, 910C die pairs), so a
    2- or 4-card task is given an aligned block when one is free; otherwise the lowest free cards.
    """
    if count == 0:
        return 0
    block = 1 << (count - 1).bit_length()
    if block <= width:
        want = (1 << count) - 1
        for start in range(0, width - block + 1, block):
            chunk = want << start
            if free_mask & chunk == chunk:
                return chunk
    chosen, bit = 0, 0
    while count:
        if free_mask >> bit & 1:
            chosen |= 1 << bit
            count -= 1
        bit += 1
    return chosen


class ClusterState:
    """Free cards, CPUs and memory per node. Mutated only through :meth:`allocate` / :meth:`release`."""

    __slots__ = ("cluster", "free_cards", "free_cpus", "free_mask", "free_memory")

    def __init__(self, cluster: Cluster, free_cards, free_cpus, free_memory, free_mask):
        self.cluster = cluster
        self.free_cards: np.ndarray = free_cards
        self.free_cpus: np.ndarray = free_cpus
        self.free_memory: np.ndarray = free_memory
        self.free_mask: list[int] = free_mask

    @classmethod
    def empty(cls, cluster: Cluster) -> ClusterState:
        full = [(1 << int(c)) - 1 for c in cluster.node_cards]
        return cls(
            cluster,
            cluster.node_cards.copy(),
            cluster.node_cpus.copy(),
            cluster.node_memory.copy(),
            full,
        )

    @classmethod
    def with_placements(cls, cluster: Cluster, placements: Iterable[Placement]) -> ClusterState:
        state = cls.empty(cluster)
        for p in placements:
            state.allocate(p)
        return state

    def copy(self) -> ClusterState:
        return ClusterState(
            self.cluster,
            self.free_cards.copy(),
            self.free_cpus.copy(),
            self.free_memory.copy(),
            list(self.free_mask),
        )

    def allocate(self, placement: Placement) -> None:
        """Take the placement's cards. Raises ValueError (and changes nothing) if any is not free."""
        done: list[tuple[int, int, GroupPlacement]] = []
        for g in placement.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                if mask.bit_count() != g.cards_per_task or self.free_mask[node] & mask != mask:
                    for n, m, gg in reversed(done):
                        self._give_back(n, m, gg)
                    raise ValueError(f"card(s) {mask_to_devices(mask)} on node {node} are not free")
                self.free_mask[node] &= ~mask
                self.free_cards[node] -= g.cards_per_task
                self.free_cpus[node] -= g.cpus
                self.free_memory[node] -= g.memory_gib
                done.append((node, mask, g))

    def _give_back(self, node: int, mask: int, g: GroupPlacement) -> None:
        self.free_mask[node] |= mask
        self.free_cards[node] += g.cards_per_task
        self.free_cpus[node] += g.cpus
        self.free_memory[node] += g.memory_gib

    def release(self, placement: Placement) -> None:
        for g in placement.groups:
            for node, mask in zip(g.nodes, g.masks, strict=True):
                if self.free_mask[node] & mask:
                    raise ValueError(f"card(s) {mask_to_devices(mask)} on node {node} are already free")
                self._give_back(node, mask, g)
