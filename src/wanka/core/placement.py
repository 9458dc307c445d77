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

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
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
    per_node: int = 0  # at most this many of the group's tasks on one node (0: no limit)


@dataclass(slots=True)
class FreeArrays:
    """Free resources to place against (the live state, or a hypothetical future one)."""

    cards: np.ndarray
    cpus: np.ndarray
    memory: np.ndarray
    masks: list[int] | None  # None for what-if states where only counts matter


def task_capacity(
    free: FreeArrays, usable: np.ndarray, req: GroupRequest, already: np.ndarray | None = None
) -> np.ndarray:
    """Tasks of ``req`` each node can host now (0 on nodes that are not usable). ``already``: tasks
    of the same group each node holds (an elastic group growing): they count against spreading's
    one per node and ``per_node``."""
    if req.cards > 0:
        cap = free.cards // req.cards
    else:
        cap = np.full(len(free.cards), req.replicas, dtype=np.int32)
    if req.cpus > 0:
        cap = np.minimum(cap, free.cpus // req.cpus)
    if req.memory_gib > 0:
        cap = np.minimum(cap, free.memory // req.memory_gib)
    limit = 1 if req.spread else req.per_node
    if limit:
        cap = np.minimum(cap, limit if already is None else np.maximum(limit - already, 0))
    return np.where(usable, cap, 0)


def place_group(
    cluster: Cluster,
    free: FreeArrays,
    usable: np.ndarray,
    req: GroupRequest,
    strategy: PlacementStrategy = PlacementStrategy.TOPOLOGY,
    already: np.ndarray | None = None,
) -> list[int] | None:
    """Node index per task for one group (elastic groups get as many as fit, >= min), or None.
    ``already``: as :func:`task_capacity`'s (the tasks a growing group holds per node)."""
    cap = task_capacity(free, usable, req, already)
    total = int(cap.sum())
    if total < req.min_replicas:
        return None
    want = min(req.replicas, total)
    if want == 0:
        return []
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
    only the nodes matter (what-if placements for reservations and victim search).

    A gang of several groups chooses its network domain as a whole: the smallest domain (tier by
    tier from the node up, tightest first) in which every group's minimum fits together, never one
    domain per group. Inside it every group first gets its minimum, then elastic groups grow with
    what is left there, so one elastic group never takes room another group of the gang needs. An
    elastic gang starts at the largest size it can be placed at, whole or grown (not in a what-if:
    there only where its minimum goes matters)."""
    choose_cards = choose_cards and free.masks is not None
    if not choose_cards:  # a what-if asks where the minimum goes: room freed for growth is waste
        groups = [g if g.min_replicas == g.replicas else replace(g, replicas=g.min_replicas) for g in groups]
    if len(groups) == 1:
        req = groups[0]
        if not choose_cards:  # a what-if: only which nodes matter, no per-task work
            nodes = place_group(cluster, free, usable, req, strategy)
            if nodes is None:
                return None
            return Placement(
                model,
                (
                    GroupPlacement(
                        req.role, tuple(nodes), (0,) * len(nodes), req.cards, req.cpus, req.memory_gib
                    ),
                ),
            )
        return _place_groups(cluster, free, usable, model, groups, strategy, choose_cards)
    grown = _place_in_domains(cluster, free, usable, model, groups, strategy, choose_cards)
    extra = sum(g.replicas - g.min_replicas for g in groups)
    if not choose_cards or not extra or grown is None:
        return grown
    # the largest size placed whole, in the smallest domain that holds it (Kueue's partial
    # admission searches the count down from the full one), against the minimum grown in the
    # smallest domain that holds the minimum: the larger wins, the tighter one on a tie
    if grown.num_tasks == sum(g.replicas for g in groups):
        return grown

    def whole(more: list[int]) -> Placement | None:  # each group at its minimum plus more[i]
        sized = [
            replace(g, replicas=g.min_replicas + e, min_replicas=g.min_replicas + e)
            for g, e in zip(groups, more, strict=True)
        ]
        return _place_in_domains(cluster, free, usable, model, sized, strategy, choose_cards)

    # group by group, in the job's order: the most extra tasks it can be placed whole with, the
    # groups before it fixed (a binary search each), so one group that cannot grow does not hold
    # back the others
    more, best = [0] * len(groups), None
    for i, g in enumerate(groups):
        lo, hi = 1, g.replicas - g.min_replicas
        while lo <= hi:
            mid = (lo + hi) // 2
            more[i] = mid
            found = whole(more)
            if found is not None:
                lo, best = mid + 1, found
            else:
                hi = mid - 1
        more[i] = lo - 1
    return best if best is not None and best.size > grown.size else grown


def _place_in_domains(
    cluster: Cluster,
    free: FreeArrays,
    usable: np.ndarray,
    model: str,
    groups: list[GroupRequest],
    strategy: PlacementStrategy,
    choose_cards: bool,
) -> Placement | None:
    """A gang of several groups in the first domain (tightest first) where an order of its groups,
    or failing those an arrangement, places it."""
    orders = _group_orders(groups)
    for within in _gang_domains(cluster, free, usable, groups, strategy):
        for order in orders:
            placement = _place_groups(cluster, free, within, model, groups, strategy, choose_cards, order)
            if placement is not None:
                return placement
        packed, _ = pack_minimums(free, within, groups)  # no order fits: try arrangements
        if packed is not None:
            return _placement_of(cluster, free, model, groups, packed, choose_cards)
    return None


def _placement_of(
    cluster: Cluster,
    free: FreeArrays,
    model: str,
    groups: list[GroupRequest],
    nodes: list[list[int]],
    choose_cards: bool,
) -> Placement:
    """The placement of ``nodes`` (node per task, per group), with cards chosen when asked (tasks
    sharing a node get different cards). Elastic groups stay at the tasks given."""
    taken: dict[int, int] = {}
    out = []
    for g, at in zip(groups, nodes, strict=True):
        masks = []
        for node in at:
            mask = 0
            if choose_cards:
                mask = take_cards(
                    free.masks[node] & ~taken.get(node, 0), g.cards, int(cluster.node_cards[node])
                )
                taken[node] = taken.get(node, 0) | mask
            masks.append(mask)
        out.append(GroupPlacement(g.role, tuple(at), tuple(masks), g.cards, g.cpus, g.memory_gib))
    return Placement(model, tuple(out))


def _group_orders(groups: list[GroupRequest]) -> list[tuple[int, ...]]:
    """The orders a multi-group gang's groups are placed in, until one fits: larger tasks first
    (first-fit decreasing: small ones fill the gaps big ones leave), then the heaviest in CPUs, then
    in memory, then (three groups at most) every other order. Each group takes the tightest room
    it fits, so one order can strand another group where a different order places them all: a
    master of 4 cards and two workers of 3 on nodes with 6 and 4 free cards fit only workers
    first."""
    n = len(groups)
    keys = (
        lambda i: -groups[i].cards,
        lambda i: -groups[i].cpus,
        lambda i: -groups[i].memory_gib,
    )
    orders = [tuple(sorted(range(n), key=key)) for key in keys]
    if n <= 3:
        orders += list(itertools.permutations(range(n)))
    return list(dict.fromkeys(orders))  # distinct, first found first


# bounds a multi-group gang's placement cost on a fragmented cluster: the tightest domains of a
# tier first, then the loosest (bounds are no packing: tight domains that pass them and still do
# not hold the gang must not hide a loose one that does)
_DOMAINS_TRIED_PER_TIER = 4
_DOMAINS_TRIED_IN_FULL = 16  # up to this many candidates in a tier, every one is tried


def domains_around(cluster: Cluster, nodes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Node index ranges [first, last + 1) of the domains that hold every one of ``nodes``,
    tightest first: from the smallest tier at which they share one domain up to the cluster."""
    for t in range(len(cluster.tiers)):
        of = {int(cluster.domain_of[t][n]) for n in nodes}
        if len(of) == 1:
            d = of.pop()
            yield int(cluster.domain_starts[t][d]), int(cluster.domain_ends[t][d])


def _gang_domains(
    cluster: Cluster, free: FreeArrays, usable: np.ndarray, groups: list[GroupRequest], strategy
) -> Iterator[np.ndarray]:
    """Usable-node masks of the domains worth trying for a multi-group gang, smallest tier first and
    tightest domain first within a tier. A domain qualifies when each group's minimum fits it on its
    own, the gang's minimum cards fit its free cards, and its nodes can hold that many of the
    gang's tasks together (necessary, not sufficient: the groups share nodes, so each is then tried
    for real). The whole cluster comes last. Only a few domains of a tier are tried (the tightest,
    then the loosest), so a domain that cannot hold the gang should fail these bounds, not use up
    a try."""
    if strategy is PlacementStrategy.TOPOLOGY:
        caps = [task_capacity(free, usable, replace(g, replicas=g.min_replicas)) for g in groups]
        tasks = sum(g.min_replicas for g in groups)
        resources = [
            (free.cards, [g.cards for g in groups]),
            (free.cpus, [g.cpus for g in groups]),
            (free.memory, [g.memory_gib for g in groups]),
        ]
        # the gang's tasks a node can hold together: no more than each group's alone summed, nor,
        # in each resource, more than the smallest asks its free amount covers (8 free cards hold
        # one of a 4-card master and 6-card workers, not two; 12 free CPUs one 8-CPU task)
        together = np.add.reduce([cap.astype(np.int64) for cap in caps])
        counts = [g.min_replicas for g in groups]
        for have, asks in resources:
            smallest_first = np.cumsum(np.sort(np.repeat(np.asarray(asks, dtype=np.int64), counts)))
            together = np.minimum(together, np.searchsorted(smallest_first, have, side="right"))
        # a node with no room for any of the gang's tasks holds none of its cards, CPUs or memory:
        # a domain whose free resources lie in such crumbs must not pass for one that holds it
        room = np.logical_or.reduce([task_capacity(free, usable, replace(g, replicas=1)) > 0 for g in groups])
        wants = [
            (
                np.where(room, have, 0).astype(np.int64),
                sum(g.min_replicas * a for g, a in zip(groups, asks, strict=True)),
            )
            for have, asks in resources
        ]
        for t in range(len(cluster.tiers) - 1):
            starts = cluster.domain_starts[t]
            free_cards = np.add.reduceat(wants[0][0], starts)  # tightest domain first
            ok = np.add.reduceat(together, starts) >= tasks
            for have, want in wants:
                ok &= np.add.reduceat(have, starts) >= want
            for cap, g in zip(caps, groups, strict=True):
                ok &= np.add.reduceat(cap.astype(np.int64), starts) >= g.min_replicas
            candidates = np.flatnonzero(ok)
            candidates = candidates[np.argsort(free_cards[candidates], kind="stable")]
            if len(candidates) > _DOMAINS_TRIED_IN_FULL:
                candidates = np.r_[
                    candidates[:_DOMAINS_TRIED_PER_TIER], candidates[-_DOMAINS_TRIED_PER_TIER:][::-1]
                ]
            for d in candidates:
                within = np.zeros_like(usable)
                lo, hi = int(starts[d]), int(cluster.domain_ends[t][d])
                within[lo:hi] = usable[lo:hi]
                yield within
    yield usable


def _place_groups(
    cluster: Cluster,
    free: FreeArrays,
    usable: np.ndarray,
    model: str,
    groups: list[GroupRequest],
    strategy: PlacementStrategy,
    choose_cards: bool,
    order: tuple[int, ...] = (0,),
) -> Placement | None:
    """Every group's minimum on ``usable`` nodes, then the elastic groups' extra tasks there, groups
    taken in ``order`` (:func:`_group_orders`); None if a minimum does not fit. ``free`` is restored
    before returning."""
    multi = len(groups) > 1  # later groups must see earlier groups' tasks as taken
    placed: list[list[int]] = [[] for _ in groups]
    masks: list[list[int]] = [[] for _ in groups]
    taken: list[tuple[int, int, GroupRequest]] = []
    first = [replace(g, replicas=g.min_replicas) for g in groups] if multi else groups
    try:
        for phase, reqs in enumerate((first, groups) if multi else (first,)):
            for gi in order:
                req = reqs[gi]
                already = None
                if phase == 1:  # the elastic groups grow with what the minimums left
                    extra = req.replicas - req.min_replicas
                    if extra <= 0:
                        continue
                    req = replace(req, replicas=extra, min_replicas=0)
                    if req.spread or req.per_node:  # the minimum's tasks count against the limit
                        already = np.bincount(placed[gi], minlength=len(free.cards))
                nodes = place_group(cluster, free, usable, req, strategy, already)
                if nodes is None:
                    if phase == 1:
                        continue
                    return None
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
                    masks[gi].append(mask)
                    taken.append((node, mask, req))
                placed[gi].extend(nodes)
        return Placement(
            model,
            tuple(
                GroupPlacement(g.role, tuple(n), tuple(m), g.cards, g.cpus, g.memory_gib)
                for g, n, m in zip(groups, placed, masks, strict=True)
            ),
        )
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


#: Bounds of the exhaustive search for a gang's minimums (:func:`pack_minimums`): it runs only where
#: it stays cheap, and gives up past this many steps (then nothing is concluded).
PACK_MAX_NODES = 64
PACK_MAX_TASKS = 32
PACK_STEPS = 4_000


def pack_minimums(
    free: FreeArrays, usable: np.ndarray, groups: list[GroupRequest], steps: int = PACK_STEPS
) -> tuple[list[list[int]] | None, bool]:
    """Every group's minimum on ``usable`` nodes by a bounded exhaustive search: (node per task,
    per group; None when none was found) and whether the search was complete (False: too large, or
    out of steps, so None proves nothing).

    Placing group by group, each task on the tightest node, can strand a group where another
    arrangement holds them all (masters of 5 cards and workers of 3 on nodes with 7, 7 and 8
    free); this tries arrangements, hardest tasks first, the tasks of one group on nodes in
    ascending order and nodes alike in what they have left tried once."""
    nodes = np.flatnonzero(usable & (free.cards >= min(g.cards for g in groups)))
    tasks = sorted(
        (gi for gi, g in enumerate(groups) for _ in range(g.min_replicas)),
        key=lambda gi: (-groups[gi].cards, -groups[gi].cpus, -groups[gi].memory_gib, gi),
    )
    if len(nodes) > PACK_MAX_NODES or len(tasks) > PACK_MAX_TASKS:
        return None, False
    cards = free.cards[nodes].astype(np.int64).tolist()
    cpus = free.cpus[nodes].astype(np.int64).tolist()
    memory = free.memory[nodes].astype(np.int64).tolist()
    limit = [1 if g.spread else (g.per_node or len(tasks)) for g in groups]
    count = [[0] * len(groups) for _ in nodes]
    chosen: list[int] = []
    left = [steps]

    def place(t: int) -> bool:
        if t == len(tasks):
            return True
        left[0] -= 1
        if left[0] < 0:
            raise _OutOfSteps
        gi = tasks[t]
        g = groups[gi]
        first = chosen[-1] if t and tasks[t - 1] == gi else 0  # a group's tasks are interchangeable
        seen = set()
        for i in range(first, len(nodes)):
            if (
                cards[i] < g.cards
                or cpus[i] < g.cpus
                or memory[i] < g.memory_gib
                or count[i][gi] >= limit[gi]
            ):
                continue
            alike = (cards[i], cpus[i], memory[i], tuple(count[i]))
            if alike in seen:
                continue
            seen.add(alike)
            cards[i] -= g.cards
            cpus[i] -= g.cpus
            memory[i] -= g.memory_gib
            count[i][gi] += 1
            chosen.append(i)
            if place(t + 1):
                return True
            chosen.pop()
            cards[i] += g.cards
            cpus[i] += g.cpus
            memory[i] += g.memory_gib
            count[i][gi] -= 1
        return False

    try:
        found = place(0)
    except _OutOfSteps:
        return None, False
    if not found:
        return None, True
    out: list[list[int]] = [[] for _ in groups]
    for gi, i in zip(tasks, chosen, strict=True):
        out[gi].append(int(nodes[i]))
    return out, True


class _OutOfSteps(Exception):
    pass
