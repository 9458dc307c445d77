"""What-if states: "if these running jobs were gone, what would be free?" as numpy bincounts.

Reservations (which jobs end first) and victim search (which jobs to evict) both ask that question
for a growing prefix of an ordered list of running jobs; flattening the jobs' tasks once into
arrays makes each question a handful of vector operations instead of a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from wanka.core.placement import FreeArrays

if TYPE_CHECKING:
    from wanka.core.running import Running, RunningColumns


T = TypeVar("T")


MAX_REPRIEVE_TRIALS = 32  # what-ifs a reprieve may spend per preemptor (bounds a cycle's cost)


def shortest_prefix(fits: Callable[[int], T | None], lo: int, n: int) -> tuple[int, T]:
    """Smallest k in [lo, n] with ``fits(k)`` not None, and that result.

    ``fits`` must be monotone (once true, true for every larger k) and true at n. Gallops up from
    ``lo`` (the answer is usually near a good lower bound), then bisects: O(log n) calls, no k
    asked twice (each call may be a what-if placement).
    """
    asked: dict[int, T | None] = {}

    def once(k: int) -> T | None:
        if k not in asked:
            asked[k] = fits(k)
        return asked[k]

    hi, step = lo, 1
    while hi < n and once(hi) is None:
        lo, hi, step = hi + 1, min(hi + step, n), step * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if once(mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    found = once(lo)
    if found is None:
        raise ValueError("fits() must hold at n and be monotone")
    return lo, found


class TaskTable:
    """Every task of ``entries`` as parallel arrays (entry index, node, cards, cpus, memory);
    ``size`` is the number of entries (the entry indices run below it)."""

    def __init__(self, entries: Sequence[Running]):
        self.size = n = len(entries)
        # per group, then repeated per task: numpy does the per-task work
        per_entry = np.fromiter((len(e.placement.groups) for e in entries), dtype=np.int64, count=n)
        groups = list(chain.from_iterable(e.placement.groups for e in entries))
        m = len(groups)
        replicas = np.fromiter((len(g.nodes) for g in groups), dtype=np.int64, count=m)
        self.task_entry = np.repeat(np.repeat(np.arange(n, dtype=np.int64), per_entry), replicas)
        self.task_node = np.fromiter(
            chain.from_iterable(g.nodes for g in groups), dtype=np.int64, count=int(replicas.sum())
        )
        self.task_cards = np.repeat(np.fromiter((g.cards_per_task for g in groups), np.int64, m), replicas)
        self.task_cpus = np.repeat(np.fromiter((g.cpus for g in groups), np.int64, m), replicas)
        self.task_mem = np.repeat(np.fromiter((g.memory_gib for g in groups), np.int64, m), replicas)

    @classmethod
    def from_columns(cls, columns: RunningColumns) -> TaskTable:
        """The table of a running index's jobs, from its task columns (no walk over the jobs)."""
        out = cls.__new__(cls)
        out.size = len(columns.flavor)
        out.task_entry = columns.task_entry
        out.task_node = columns.task_node
        out.task_cards = columns.task_cards
        out.task_cpus = columns.task_cpus
        out.task_mem = columns.task_mem
        return out

    @classmethod
    def concat(cls, first: TaskTable, second: TaskTable) -> TaskTable:
        """``first`` then ``second``; entry indices of ``second`` shift by ``first.size``."""
        out = cls.__new__(cls)
        out.size = first.size + second.size
        out.task_entry = np.concatenate([first.task_entry, second.task_entry + first.size])
        out.task_node = np.concatenate([first.task_node, second.task_node])
        out.task_cards = np.concatenate([first.task_cards, second.task_cards])
        out.task_cpus = np.concatenate([first.task_cpus, second.task_cpus])
        out.task_mem = np.concatenate([first.task_mem, second.task_mem])
        return out

    def subset(self, chosen: np.ndarray) -> tuple[TaskTable, np.ndarray]:
        """A table of only the tasks of ``chosen`` entries, and each task's rank within ``chosen``."""
        rank = np.full(self.size, -1, dtype=np.int64)
        rank[chosen] = np.arange(len(chosen))
        task_rank = rank[self.task_entry]
        keep = task_rank >= 0
        sub = TaskTable.__new__(TaskTable)
        sub.size = len(chosen)
        sub.task_entry = task_rank[keep]
        sub.task_node = self.task_node[keep]
        sub.task_cards = self.task_cards[keep]
        sub.task_cpus = self.task_cpus[keep]
        sub.task_mem = self.task_mem[keep]
        return sub, sub.task_entry

    def positions(self, chosen: np.ndarray) -> np.ndarray:
        """Per task: the rank of its entry within ``chosen`` (entry indices in order); len(chosen)
        for tasks of entries not chosen. ``positions < k`` selects the tasks of the first k."""
        rank = np.full(self.size, len(chosen), dtype=np.int64)
        rank[chosen] = np.arange(len(chosen))
        return rank[self.task_entry]

    def free_without(self, free: FreeArrays, task_pos: np.ndarray, k: int) -> FreeArrays:
        """``free`` plus everything the first k chosen entries hold (counts only, no card masks)."""
        return self.free_where(free, task_pos < k)

    def free_where(self, free: FreeArrays, sel: np.ndarray) -> FreeArrays:
        """``free`` plus everything the tasks where ``sel`` holds hold (counts only, no card masks)."""
        nodes = self.task_node[sel]
        n = len(free.cards)
        return FreeArrays(
            free.cards + np.bincount(nodes, self.task_cards[sel], minlength=n).astype(np.int32),
            free.cpus + np.bincount(nodes, self.task_cpus[sel], minlength=n).astype(np.int32),
            free.memory + np.bincount(nodes, self.task_mem[sel], minlength=n).astype(np.int32),
            None,
        )
