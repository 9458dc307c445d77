"""Hierarchical quotas: cluster → organisation → team queue, per accelerator model.

Semantics follow Kueue's hierarchical cohorts (nominal quota, borrowing limit, lending limit),
with one convention change made for operators: a node's ``nominal`` is its *total* quota including
its children's. Internally each node keeps only its own extra part, ``nominal - sum(children)``.

Per flavor f (an accelerator model) and node n:

* ``guaranteed(n)`` = ``subtree(n) - lending_limit(n)`` (0 without a lending limit): the part n
  never lends; nobody else can use it even when idle.
* ``subtree(n)`` = own extra quota + the lendable part of every child:
  ``own(n) + sum(subtree(c) - guaranteed(c))``.
* ``usage(n)`` for a leaf is the cards its jobs hold; for an inner node it is what its children
  use *beyond* their guarantees, ``sum(max(0, usage(c) - guaranteed(c)))``.
* Invariant kept by admission: for every inner node p, ``usage(p) <= subtree(p)`` (nobody lends
  more than it may), and for every node with a borrowing limit the subtree's total usage stays
  within ``nominal + borrowing_limit``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

UNLIMITED = 1 << 60


@dataclass(frozen=True, slots=True)
class FlavorQuota:
    nominal: int = 0
    borrowing_limit: int | None = None  # None: may borrow whatever its parent can give
    lending_limit: int | None = None  # None: all of its idle quota may be lent


@dataclass(frozen=True, slots=True)
class QueueNode:
    name: str
    parent: str | None
    quotas: Mapping[str, FlavorQuota] = field(default_factory=dict)
    weight: float = 1.0  # fair-share weight among siblings
    # Slurm's partition DefaultTime / MaxTime, in seconds (None: inherit the parent's; none at the top)
    default_time_limit_s: float | None = None
    max_time_limit_s: float | None = None


class QuotaError(ValueError):
    pass


class QueueTree:
    """Static quota tree. Node 0 is the root (the cluster). Usage lives in :class:`QuotaUsage`."""

    def __init__(self, nodes: Sequence[QueueNode], flavors: Sequence[str]):
        roots = [n for n in nodes if n.parent is None]
        if len(roots) != 1:
            raise QuotaError(f"a queue tree needs exactly one root, got {[n.name for n in roots]}")
        by_name = {n.name: n for n in nodes}
        if len(by_name) != len(nodes):
            raise QuotaError("queue names must be unique")
        for n in nodes:
            if n.parent is not None and n.parent not in by_name:
                raise QuotaError(f"queue {n.name!r}: parent {n.parent!r} does not exist")
            if n.weight <= 0:
                raise QuotaError(f"queue {n.name!r}: weight must be > 0")
            for f in n.quotas:
                if f not in flavors:
                    raise QuotaError(f"queue {n.name!r}: unknown flavor {f!r}; cluster has {sorted(flavors)}")
        # breadth-first order: parents before children
        order: list[QueueNode] = [roots[0]]
        for node in order:
            order.extend(c for c in nodes if c.parent == node.name)
        if len(order) != len(nodes):
            raise QuotaError("queue tree has a cycle")
        self.flavors = list(flavors)
        self.flavor_index = {f: i for i, f in enumerate(self.flavors)}
        self.names = [n.name for n in order]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.parent = [-1 if n.parent is None else self.index[n.parent] for n in order]
        self.children: list[list[int]] = [[] for _ in order]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)
        # breadth-first: a parent's depth is known before its children's
        self.depth = [0] * len(order)
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.depth[i] = self.depth[p] + 1
        # ancestor[d][i]: node i's ancestor at depth d (i itself at its own depth; -1 below it)
        self.ancestor = np.full((max(self.depth) + 1, len(order) + 1), -1, dtype=np.int64)
        for i in range(len(order)):
            node = i
            while node >= 0:
                self.ancestor[self.depth[node], i] = node
                node = self.parent[node]
        self.weight = [n.weight for n in order]
        nf = len(self.flavors)
        q = len(order)
        self.nominal = [[0] * nf for _ in range(q)]
        self.borrowing_limit = [[UNLIMITED] * nf for _ in range(q)]
        self.lending_limit: list[list[int | None]] = [[None] * nf for _ in range(q)]
        for i, n in enumerate(order):
            for f, fq in n.quotas.items():
                k = self.flavor_index[f]
                if fq.nominal < 0 or (fq.borrowing_limit or 0) < 0 or (fq.lending_limit or 0) < 0:
                    raise QuotaError(f"queue {n.name!r} flavor {f!r}: quotas must be >= 0")
                self.nominal[i][k] = fq.nominal
                if fq.borrowing_limit is not None:
                    self.borrowing_limit[i][k] = fq.borrowing_limit
                self.lending_limit[i][k] = fq.lending_limit
        self.own = [[0] * nf for _ in range(q)]
        for i in range(q):
            for k in range(nf):
                kids = sum(self.nominal[c][k] for c in self.children[i])
                if kids > self.nominal[i][k] and self.parent[i] >= 0:
                    raise QuotaError(
                        f"queue {self.names[i]!r} flavor {self.flavors[k]!r}: children's nominal quota "
                        f"({kids}) exceeds its own ({self.nominal[i][k]})"
                    )
                self.own[i][k] = max(0, self.nominal[i][k] - kids)
        # subtree quota and guarantees, leaves first
        self.subtree = [[0] * nf for _ in range(q)]
        self.guaranteed = [[0] * nf for _ in range(q)]
        for i in reversed(range(q)):
            for k in range(nf):
                sub = self.own[i][k] + sum(
                    self.subtree[c][k] - self.guaranteed[c][k] for c in self.children[i]
                )
                self.subtree[i][k] = sub
                lend = self.lending_limit[i][k]
                self.guaranteed[i][k] = max(0, sub - lend) if lend is not None and self.parent[i] >= 0 else 0
        # time limits, inherited down the tree (parents come first in `order`)
        self.default_time_limit: list[float | None] = [None] * q
        self.max_time_limit: list[float | None] = [None] * q
        for i, n in enumerate(order):
            p = self.parent[i]
            most = (
                n.max_time_limit_s
                if n.max_time_limit_s is not None
                else (self.max_time_limit[p] if p >= 0 else None)
            )
            default = (
                n.default_time_limit_s
                if n.default_time_limit_s is not None
                else (self.default_time_limit[p] if p >= 0 else None)
            )
            if default is None or (most is not None and default > most):
                default = most  # Slurm: a job without a limit gets DefaultTime, else MaxTime
            self.max_time_limit[i] = most
            self.default_time_limit[i] = default
        self.limits_time = any(m is not None for m in self.max_time_limit)
        self.leaves = [i for i in range(q) if not self.children[i]]
        # Slurm-style normalised shares: product down the path of weight / sum of sibling weights
        self.norm_share = [1.0] * q
        for i in range(1, q):
            p = self.parent[i]
            siblings = sum(self.weight[c] for c in self.children[p])
            self.norm_share[i] = self.norm_share[p] * self.weight[i] / siblings

    @classmethod
    def flat(cls, flavors: Sequence[str], capacity: Mapping[str, int], queues: Sequence[str] = ("default",)):
        """A root holding the whole cluster and queues without quota of their own (they borrow all)."""
        root = QueueNode("cluster", None, {f: FlavorQuota(int(capacity.get(f, 0))) for f in flavors})
        return cls([root, *(QueueNode(q, "cluster") for q in queues)], flavors)

    def is_leaf(self, name: str) -> bool:
        return not self.children[self.index[name]]


class QuotaUsage:
    """Usage per tree node and flavor, in Kueue's accounting (see module docstring)."""

    __slots__ = ("total", "tree", "usage")

    def __init__(self, tree: QueueTree):
        self.tree = tree
        nf = len(tree.flavors)
        self.usage = [[0] * nf for _ in tree.names]
        self.total = [[0] * nf for _ in tree.names]  # plain subtree totals, for reporting and checks

    def copy(self) -> QuotaUsage:
        other = QuotaUsage.__new__(QuotaUsage)
        other.tree = self.tree
        other.usage = [row[:] for row in self.usage]
        other.total = [row[:] for row in self.total]
        return other


def available(usage: QuotaUsage, node: int, flavor: int, root: bool = True) -> int:
    """Cards of ``flavor`` that ``node`` can still be given now.

    Its unused guarantee plus what its parent can give, capped by its borrowing limit. May be
    negative after capacity was removed (over-admission); callers treat <= 0 as "nothing".
    ``root=False``: what the quotas allow, room aside. The root's pool is the cluster's capacity
    unless lending limits withhold guarantees from it; as the whole capacity it is used up exactly
    as the cards are (room, which placement judges), so then it bounds nothing here. Withheld, it
    bounds by what is left of it but for what the other organisations draw (their cards are room
    too; what this one draws itself, and the guarantees withheld, are quota).
    """
    tree = usage.tree
    parent = tree.parent[node]
    u = usage.usage[node][flavor]
    if parent < 0:
        return tree.subtree[node][flavor] - u if root else UNLIMITED
    g = tree.guaranteed[node][flavor]
    if not root and tree.parent[parent] < 0:  # the root's pool, as this organisation sees it
        pool = tree.subtree[parent][flavor]
        from_parent = pool - max(0, u - g) if pool < tree.nominal[parent][flavor] else UNLIMITED
    else:
        from_parent = available(usage, parent, flavor, root)
    limit = tree.borrowing_limit[node][flavor]
    if limit < UNLIMITED:
        stored_in_parent = tree.subtree[node][flavor] - g
        used_in_parent = max(0, u - g)
        from_parent = min(from_parent, stored_in_parent - used_in_parent + limit)
    return max(0, g - u) + from_parent


def potential_available(tree: QueueTree, node: int, flavor: int) -> int:
    """The most ``node`` could ever hold of ``flavor`` if nothing else ran (for never-fits checks)."""
    parent = tree.parent[node]
    if parent < 0:
        return tree.subtree[node][flavor]
    most = tree.guaranteed[node][flavor] + potential_available(tree, parent, flavor)
    limit = tree.borrowing_limit[node][flavor]
    if limit < UNLIMITED:
        most = min(most, tree.subtree[node][flavor] + limit)
    return most


def add_usage(usage: QuotaUsage, node: int, flavor: int, amount: int) -> None:
    """Add (or, with a negative amount, remove) leaf usage and bubble the part beyond each guarantee up.

    After the call ``usage[node] == before + amount`` and every ancestor's usage again equals the
    sum of its children's usage beyond their guarantees.
    """
    tree = usage.tree
    n = node
    while n >= 0:
        usage.total[n][flavor] += amount
        n = tree.parent[n]
    while node >= 0 and amount:
        before = usage.usage[node][flavor]
        after = before + amount
        usage.usage[node][flavor] = after
        g = tree.guaranteed[node][flavor]
        amount = max(0, after - g) - max(0, before - g)
        node = tree.parent[node]


def cohort_side(tree: QueueTree, q: int, w: int) -> int:
    """The node on ``w``'s side just below the lowest common ancestor of ``q`` and ``w`` (``w``
    itself for siblings, its organisation for queues of different organisations): where Kueue's
    hierarchical cohorts judge whether ``w`` runs on quota lent from ``q``'s side."""
    mine, node = set(), q
    while node >= 0:
        mine.add(node)
        node = tree.parent[node]
    child, node = w, tree.parent[w]
    while node >= 0 and node not in mine:
        child, node = node, tree.parent[node]
    return child


def borrowed(usage: QuotaUsage, node: int, flavor: int) -> int:
    """Cards the subtree at ``node`` holds beyond its own nominal quota (0 when within it)."""
    return max(0, usage.total[node][flavor] - usage.tree.nominal[node][flavor])


def path_up(tree: QueueTree, node: int, top: int) -> list[int]:
    """``node`` and its ancestors up to ``top`` (inclusive; ``top`` must be one of them)."""
    path = [node]
    while node != top:
        node = tree.parent[node]
        path.append(node)
    return path


def taken_on_paths(
    tree: QueueTree, leaf: np.ndarray, top: np.ndarray, cards: np.ndarray, left_of: Callable[[int], int]
) -> np.ndarray:
    """A bool mask over victims (in victim order, ``leaf`` each one's queue, ``top`` the node up to
    which its queue's path is judged, -1: never taken): those taken so that no node on any victim's
    path gives more than ``left_of(node)`` cards. Every node judges, together, all the victims whose
    paths pass through it (:func:`taken_per_side`), deepest first; a victim a node passes is not
    offered to the nodes above it (so a queue's own limit narrows the choice before its parent
    chooses among what is left). No side of the tree, at any level, is taken below its nominal."""
    taken = top >= 0
    if not taken.any():
        return taken
    depth = np.asarray([*tree.depth, 0], dtype=np.int64)  # the last slot stands for -1
    top_depth, leaf_depth = depth[top], depth[leaf]
    for d in range(int(leaf_depth[taken].max()), int(top_depth[taken].min()) - 1, -1):
        on = taken & (top_depth <= d) & (leaf_depth >= d)
        if not on.any():
            continue
        nodes = tree.ancestor[d][leaf[on]]
        left = np.zeros(len(tree.names) + 1, dtype=np.int64)
        for node in np.unique(nodes).tolist():
            left[node] = max(0, left_of(node))
        taken[on] = taken_per_side(nodes, cards[on], left)
    return taken


def taken_in_order(cards: np.ndarray, left: int) -> np.ndarray:
    """A bool mask over ``cards``: those a walk in order takes while each fits in what is ``left``,
    passing those that do not (the loop ``if c <= left: take; left -= c``, in numpy). Each round
    takes the longest prefix that fits; the first one past it no longer fits, and nor does anything
    as large, so rounds are at most the distinct sizes."""
    taken = np.zeros(len(cards), dtype=bool)
    at = np.flatnonzero(cards <= left)
    while len(at):
        held = np.cumsum(cards[at])
        n = int(np.searchsorted(held, left, side="right"))
        taken[at[:n]] = True
        left -= int(held[n - 1])
        rest = at[n:]
        at = rest[cards[rest] <= left]
    return taken


def taken_per_side(of: np.ndarray, cards: np.ndarray, left: np.ndarray) -> np.ndarray:
    """A bool mask over victims (in victim order): per side, those taken in order while each fits
    in what is ``left`` of it (:func:`taken_in_order`). ``of`` is each victim's side (-1: none,
    never taken), ``left`` the cards each side may give (one slot per side, plus a last one)."""
    taken = np.zeros(len(of), dtype=bool)
    sides = of >= 0
    if not sides.any():
        return taken
    held = np.bincount(of[sides], weights=cards[sides], minlength=len(left))
    whole = sides.copy()
    # the side gives more than all its victims hold; one that gives nothing (borrows nothing) gives
    # no victim either, not even one holding no cards of the model (CPU-only tasks)
    whole[sides] = (held[of[sides]] <= left[of[sides]]) & (left[of[sides]] > 0)
    taken |= whole
    for side in np.flatnonzero((left > 0) & (held > left)).tolist():
        at = np.flatnonzero(of == side)
        taken[at[taken_in_order(cards[at], int(left[side]))]] = True
    return taken
