"""Where a gang goes: the smallest network domain that can hold it, best-fit inside.

For one task group of ``replicas`` tasks of ``cards`` cards, each node can host
``cap = min(free_cards // cards, free_cpus // cpus, free_memory // memory)`` tasks. Summing ``cap``
per domain (``np.add.reduceat`` over contiguous node ranges) at each tier, from the node upwards,
finds the smallest tier with a domain that holds the whole gang; among those domains the one with
the least room wins (best fit keeps the big domains whole). Inside it, tasks go to the children
that hold the remainder best: a child that can take everything left (the tightest such), otherwise
the roomiest child, recursively down to nodes. A job that fits one node never straddles two.

Replicas of an inference service are *spread*: one per node, over as many leaf domains as possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from wanka.core.cluster import Cluster
from wanka.core.state import GroupPlacement, Placement, take_cards


class PlacementStrategy(Enum):
    TOPOLOGY = "topology"  # smallest domain, best fit inside (default)
    FIRST_FIT = "first_fit"  # lowest node indices first, topology-blind (baseline)


@dataclass(frozen=True, slots=True)
class GroupRequest:
    role: str
    replicas: int
    min_replicas: int
    cards: int
    cpus: int
    memory_gib: int
    spread: bool = False


@dataclass(slots=True)
class FreeArrays:
    """Free resources to place against (the live state, or a hypothetical future one)."""

    cards: np.ndarray
    cpus: np.ndarray
    memory: np.ndarray
    masks: list[int] | None  # None for what-if states where only counts matter


def task_capacity(free: FreeArrays, usable: np.ndarray, req: GroupRequest) -> np.ndarray:
    """Tasks of ``req`` each node can host now (0 on nodes that are not usable)."""
    if req.cards > 0:
        cap = free.cards // req.cards
    else:
        cap = np.full(len(free.cards), req.replicas, dtype=np.int32)
    if req.cpus > 0:
        cap = np.minimum(cap, free.cpus // req.cpus)
    if req.memory_gib > 0:
        cap = np.minimum(cap, free.memory // req.memory_gib)
    if req.spread:
        cap = np.minimum(cap, 1)
    return np.where(usable, cap, 0)


def place_group(
    cluster: Cluster,
    free: FreeArrays,
    usable: np.ndarray,
    req: GroupRequest,
    strategy: PlacementStrategy = PlacementStrategy.TOPOLOGY,
) -> list[int] | None:
    """Node index per task for one group (elastic groups get as many as fit, >= min), or None."""
    cap = task_capacity(free, usable, req)
    total = int(cap.sum())
    if total < req.min_replicas:
        return None
    want = min(req.replicas, total)
    if strategy is PlacementStrategy.FIRST_FIT:
        return _first_fit(cap, want)
    if req.spread:
        return _spread(cluster, cap, want)
    caps = [cap]  # per-domain capacity, tier by tier, computed only as far as needed
    for t in range(len(cluster.tiers)):
        if t > 0:
            caps.append(np.add.reduceat(caps[-1], cluster.child_range[t][:, 0]))
        dom_cap = caps[t]
        room = np.where(dom_cap >= want, dom_cap, _never(dom_cap))
        best = int(np.argmin(room))
        if dom_cap[best] >= want:
            nodes: list[int] = []
            _descend(cluster, caps, t, best, want, nodes)
            return nodes
    return None  # unreachable: the cluster tier holds `total` >= want


_NEVER: dict[np.dtype, int] = {}


def _never(arr: np.ndarray) -> int:
    """Sentinel larger than any capacity, in the array's own dtype (a wider one would wrap)."""
    value = _NEVER.get(arr.dtype)
    if value is None:
        value = _NEVER[arr.dtype] = int(np.iinfo(arr.dtype).max)
    return value


def _descend(
    cluster: Cluster, caps: list[np.ndarray], tier: int, domain: int, need: int, out: list[int]
) -> None:
    if tier == 0:
        out.extend([domain] * need)
        return
    lo, hi = (int(x) for x in cluster.child_range[tier][domain])
    child = caps[tier - 1][lo:hi].copy()
    if need >= int(child.sum()):
        # the whole domain: every task every node in it can host, in one step (a 1,000-node gang
        # would otherwise cost a thousand small numpy calls)
        first = int(cluster.domain_starts[tier][domain])
        last = int(cluster.domain_ends[tier][domain])
        out.extend(np.repeat(np.arange(first, last), caps[0][first:last]).tolist())
        return
    while need > 0:
        enough = child >= need
        if enough.any():
            pick = int(np.argmin(np.where(enough, child, _never(child))))
            _descend(cluster, caps, tier - 1, lo + pick, need, out)
            return
        pick = int(np.argmax(child))
        take = int(child[pick])
        _descend(cluster, caps, tier - 1, lo + pick, take, out)
        child[pick] = 0
        need -= take


def _first_fit(cap: np.ndarray, want: int) -> list[int]:
    nodes: list[int] = []
    for node in np.flatnonzero(cap):
        take = min(int(cap[node]), want - len(nodes))
        nodes.extend([int(node)] * take)
        if len(nodes) == want:
            break
    return nodes


def _spread(cluster: Cluster, cap: np.ndarray, want: int) -> list[int]:
    """One replica per node, round-robin over leaf-level domains so one switch failure hurts least:
    the first node of every domain (largest domains first), then the second of every domain, …"""
    tier = 1 if len(cluster.tiers) > 2 else 0
    nodes = np.flatnonzero(cap)
    dom = cluster.domain_of[tier][nodes]  # nodes are sorted by domain: each domain is one run
    starts = np.flatnonzero(np.r_[True, dom[1:] != dom[:-1]])
    sizes = np.diff(np.r_[starts, len(nodes)])
    run = np.repeat(np.arange(len(starts)), sizes)
    depth = np.arange(len(nodes)) - starts[run]
    bucket = np.empty(len(starts), dtype=np.int64)
    bucket[np.argsort(-sizes, kind="stable")] = np.arange(len(starts))
    order = np.lexsort((bucket[run], depth))
    return nodes[order[:want]].tolist()


def place_gang(
    cluster: Cluster,
    free: FreeArrays,
    usable: np.ndarray,
    model: str,
    groups: list[GroupRequest],
    strategy: PlacementStrategy = PlacementStrategy.TOPOLOGY,
    choose_cards: bool = True,
) -> Placement | None:
    """All groups or nothing. ``free`` is left unchanged either way.

    With ``choose_cards`` the exact cards are picked (aligned blocks first); without, masks are 0 and
    only the nodes matter (what-if placements for reservations and victim search)."""
    choose_cards = choose_cards and free.masks is not None
    multi = len(groups) > 1  # later groups must see earlier groups' tasks as taken
    if not choose_cards and not multi:  # a what-if: only which nodes matter, no per-task work
        req = groups[0]
        nodes = place_group(cluster, free, usable, req, strategy)
        if nodes is None:
            return None
        return Placement(
            model,
            (GroupPlacement(req.role, tuple(nodes), (0,) * len(nodes), req.cards, req.cpus, req.memory_gib),),
        )
    placed: list[GroupPlacement] = []
    taken: list[tuple[int, int, GroupRequest]] = []
    try:
        for req in groups:
            nodes = place_group(cluster, free, usable, req, strategy)
            if nodes is None:
                return None
            masks = []
            for node in nodes:
                mask = 0
                if choose_cards:
                    # tasks sharing a node must get different cards, so the mask is updated as we go
                    mask = take_cards(free.masks[node], req.cards, int(cluster.node_cards[node]))
                    free.masks[node] &= ~mask
                if multi:
                    free.cards[node] -= req.cards
                    free.cpus[node] -= req.cpus
                    free.memory[node] -= req.memory_gib
                masks.append(mask)
                taken.append((node, mask, req))
            placed.append(
                GroupPlacement(req.role, tuple(nodes), tuple(masks), req.cards, req.cpus, req.memory_gib)
            )
        return Placement(model, tuple(placed))
    finally:
        for node, mask, req in taken:
            if choose_cards:
                free.masks[node] |= mask
            if multi:
                free.cards[node] += req.cards
                free.cpus[node] += req.cpus
                free.memory[node] += req.memory_gib


def needed_tier(cluster: Cluster, placement: Placement) -> int:
    """The tier of the smallest domain that contains every node of ``placement``."""
    nodes = np.fromiter(placement.node_set(), dtype=np.int64)
    for t in range(len(cluster.tiers)):
        if len(np.unique(cluster.domain_of[t][nodes])) == 1:
            return t
    return len(cluster.tiers) - 1
