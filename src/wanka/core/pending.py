"""The waiting queue as a cycle needs it, and an index a long-lived caller keeps up to date.

Every cycle used to sort the whole waiting queue, judge every waiting job's feasibility and build
per-queue lists: O(waiting) Python work per cycle, which dominated a month of the twin whenever
thousands of jobs waited (fifo's head-of-line blocking, an overloaded cluster). A caller that runs
many cycles keeps a :class:`PendingIndex` instead, adding a job when it starts waiting and removing
it when it starts or leaves, and passes it in the snapshot. The index keeps:

- the jobs sorted by a key that does not change while they wait: the policy's own order for
  ``fifo``, ``priority``, ``shortest`` and ``priority_las`` (a waiting job attains no service, and
  that order has no starvation promotion), so a cycle walks only as far as it starts or reserves
  jobs; submit order for ``las`` and ``multifactor`` (which the session still sorts every cycle,
  because their keys move with time and usage);
- the same order per queue, for fair-share interleaving;
- each job's feasibility verdict, judged once when it is added (it depends only on the cluster's
  nodes and the queue tree, which the index is bound to);
- the same order per number of cards needed, so backfill walks only the jobs that could fit in the
  free cards.

Without an index, the session builds one from ``snapshot.pending``: the same code path, so a cycle
with and without a kept index decides identically.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import repeat
from operator import attrgetter, itemgetter

import numpy as np

from wanka.core.cluster import Cluster
from wanka.core.config import JobOrder
from wanka.core.fairshare import las_queue, las_queues
from wanka.core.feasibility import Feasibility, check_feasibility, check_time_limit
from wanka.core.jobs import Job, las_services
from wanka.core.quota import QueueTree

#: Shapes whose verdicts an index keeps at most (then it forgets them all and judges afresh).
MAX_VERDICTS = 10_000

#: Orders whose key is fixed while a job waits: the index keeps the queue in that order.
STATIC_ORDERS = (JobOrder.FIFO, JobOrder.PRIORITY, JobOrder.SHORTEST, JobOrder.PRIORITY_LAS)


def static_key(job: Job, order: JobOrder, las_thresholds: tuple[float, ...] = ()) -> tuple:
    """The job's place in ``order`` (for dynamic orders, submit order); ties by submit time, then id.
    The same key :meth:`wanka.core.ordering.Ordering.sort` sorts by, as a tuple."""
    if order is JobOrder.PRIORITY:
        primary = -float(job.priority)
    elif order is JobOrder.PRIORITY_LAS:
        las = las_queue(job.las_service, las_thresholds)
        primary = -(job.priority - las / (len(las_thresholds) + 1))
    elif order is JobOrder.SHORTEST:
        primary = math.inf if job.time_limit_s is None else float(job.time_limit_s)
    else:
        primary = 0.0
    return (primary, float(job.submit_time), job.id)


def feasibility_shape(job: Job) -> tuple:
    """What a feasibility verdict (and its reason's words) depends on: jobs of one shape share it.
    Every field :func:`check_feasibility` reads but the time limit, which is checked job by job:
    the queue, the kind (an inference job's replicas go one per node) and the gang in tasks, not in
    cards (a CPU-only gang of 1,000 is not one of 1)."""
    if len(job.groups) == 1:
        return (job.queue, job.kind, _GROUP_SHAPE(job.groups[0]))
    return (job.queue, job.kind, job.groups)


# a one-group job's shape, read in C (a tuple of fields, never equal to a tuple of TaskGroups)
_GROUP_SHAPE = attrgetter(
    "role", "replicas", "min_replicas", "cards", "accelerators", "cpus", "memory_gib", "tasks_per_node"
)


_ID, _QUEUE, _SUBMIT = attrgetter("id"), attrgetter("queue"), attrgetter("submit_time")
_PRIORITY, _MIN_CARDS = attrgetter("priority"), attrgetter("min_cards")


def _bulk_keys(
    jobs: list[Job], order: JobOrder, las_thresholds: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """The parts of every job's :func:`static_key` (primary and submit time as float64 arrays, the
    ids) and the permutation that sorts the keys: the same float arithmetic, in numpy, and the
    same order, without a Python step per key. :func:`_keys` makes the tuples."""
    n = len(jobs)
    submit = np.fromiter(map(_SUBMIT, jobs), dtype=np.float64, count=n)
    if order is JobOrder.PRIORITY:
        primary = -np.fromiter(map(_PRIORITY, jobs), dtype=np.float64, count=n)
    elif order is JobOrder.PRIORITY_LAS:
        las = las_queues(las_services(jobs), las_thresholds)
        priority = np.fromiter(map(_PRIORITY, jobs), dtype=np.float64, count=n)
        primary = -(priority - las / (len(las_thresholds) + 1))
    elif order is JobOrder.SHORTEST:
        primary = np.fromiter(
            (math.inf if j.time_limit_s is None else j.time_limit_s for j in jobs), dtype=np.float64, count=n
        )
    else:
        primary = np.zeros(n)
    ids = list(map(_ID, jobs))
    perm = np.lexsort((submit, primary))
    # ties on (primary, submit) are broken by id, as the tuples compare: sort each run of them
    tied = np.flatnonzero((primary[perm[1:]] == primary[perm[:-1]]) & (submit[perm[1:]] == submit[perm[:-1]]))
    perm = perm.tolist()
    if len(tied):
        run_start = tied[np.diff(tied, prepend=-2) != 1].tolist()  # first pair of each run
        run_end = (tied[np.diff(tied, append=n + 2) != 1] + 2).tolist()
        for a, b in zip(run_start, run_end, strict=True):
            perm[a:b] = sorted(perm[a:b], key=ids.__getitem__)
    return primary, submit, ids, perm


def _keys(primary: np.ndarray, submit: np.ndarray, ids: list[str]) -> list[tuple]:
    """The :func:`static_key` tuples of :func:`_bulk_keys`' parts, in the same order."""
    return list(zip(primary.tolist(), submit.tolist(), ids, strict=True))


def _gather(items: list, rows: np.ndarray | list[int]) -> list:
    """``[items[i] for i in rows]`` at C speed."""
    if len(rows) == 1:
        return [items[int(rows[0])]]
    return list(itemgetter(*(rows.tolist() if isinstance(rows, np.ndarray) else rows))(items))


class _Sorted:
    """Jobs in key order: parallel lists, bisect to insert and remove (memmove, no Python loop).

    A part split from a bulk build may be unmade: ``keys`` and ``jobs`` None, and ``rows`` each
    job's place in the whole index's order, ascending, which orders them as their keys would. A
    cycle reads it through the rows; the index makes it before its first change."""

    __slots__ = ("jobs", "keys", "rows")

    def __init__(self):
        self.keys: list[tuple] | None = []
        self.jobs: list[Job] | None = []
        self.rows: list[int] | None = None

    def add(self, key: tuple, job: Job) -> None:
        if not self.keys or key > self.keys[-1]:  # the common case: a new arrival goes last
            self.keys.append(key)
            self.jobs.append(job)
            return
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.jobs.insert(i, job)

    def remove(self, key: tuple) -> Job:
        i = bisect_left(self.keys, key)
        job = self.jobs[i]
        del self.keys[i]
        del self.jobs[i]
        return job


class PendingIndex:
    """Waiting jobs in a fixed order, per queue, with their feasibility verdicts.

    The caller adds a job when it starts to wait (on submit, and again when it is requeued) and
    removes it when it starts or leaves the queue; a job whose priority, time limit, queue or
    shape changes while it waits is removed and added again. The snapshot it goes into must list
    exactly the same waiting jobs.
    """

    def __init__(
        self,
        cluster: Cluster,
        tree: QueueTree,
        order: JobOrder,
        jobs: Iterable[Job] = (),
        las_thresholds: tuple[float, ...] = (),
    ):
        self.cluster = cluster
        self.tree = tree
        self.order = order
        self.las_thresholds = las_thresholds  # the policy's, for ``priority_las`` keys
        self.ordered = order in STATIC_ORDERS  # True: ``jobs`` is already in the policy's order
        self._all = _Sorted()
        self._key: dict[str, tuple] = {}
        # per queue and per cards needed: built on first use (a one-cycle index may never need
        # them), then kept up to date
        self._by_queue: dict[int, _Sorted] | None = None
        self._by_need: dict[int, _Sorted] | None = None
        self._verdicts: dict[tuple, Feasibility] = {}
        self.rejected: dict[str, str] = {}  # waiting jobs that can never run: id -> why
        self._needs: dict[int, int] = {}  # min_cards -> how many feasible jobs need that many
        self.version = 0  # bumped on every change: results computed from the index can check it
        # each job's queue index and cards needed, in the index's order, while nothing changed
        # since the bulk build: read in the caller's order, which is the order the objects lie in
        # memory (read in key order, the same fields cost ~3x: a cache miss per job)
        self._bulk_parts: tuple[np.ndarray, np.ndarray] | None = None
        # the key parts of the bulk build (_bulk_keys) while the key tuples are not made (the whole
        # order's ``keys`` None meanwhile): a cycle over a cold index never needs them (100,000
        # tuples and a dictionary of them: ~8% of a cold cycle); a caller that adds and removes
        # makes them once (_make_keys)
        self._unmade: tuple[np.ndarray, np.ndarray, list[str], list[int]] | None = None
        jobs = list(jobs)
        if jobs:  # in bulk: numpy keys and one sort instead of an insertion per job
            primary, submit, ids, perm = _bulk_keys(jobs, order, las_thresholds)
            if len(set(ids)) != len(jobs):
                raise ValueError("a job is listed twice")
            self._all.keys, self._all.jobs = None, _gather(jobs, perm)
            self._unmade = (primary, submit, ids, perm)
            n, index = len(jobs), tree.index
            queue = np.fromiter(map(index.get, map(_QUEUE, jobs), repeat(-1)), dtype=np.int64, count=n)
            need = np.fromiter(map(_MIN_CARDS, jobs), dtype=np.int64, count=n)
            self._bulk_parts = (queue[perm], need[perm])
            self._judge_all(jobs, need)

    def __len__(self) -> int:
        return len(self._all.jobs)

    def __contains__(self, job_id: str) -> bool:
        self._make_keys()
        return job_id in self._key

    def _make_keys(self) -> None:
        """Make what a bulk build left unmade (the key tuples, the splits' lists) before the
        index first changes or is asked by id."""
        if self._unmade is None:
            return
        primary, submit, ids, perm = self._unmade
        self._unmade = None
        keys = _keys(primary, submit, ids)
        self._key = dict(zip(ids, keys, strict=True))
        self._all.keys = _gather(keys, perm)
        for parts in (self._by_queue, self._by_need):
            for part in (parts or {}).values():
                part.keys, part.jobs = _gather(self._all.keys, part.rows), _gather(self._all.jobs, part.rows)
                part.rows = None

    def _walk(self, part: _Sorted) -> Iterable[Job]:
        """A part's jobs in order, read through its rows while it is unmade."""
        return part.jobs if part.rows is None else map(self._all.jobs.__getitem__, part.rows)

    @property
    def jobs(self) -> list[Job]:
        """Every waiting job in the index's order. Read only: the index owns this list."""
        return self._all.jobs

    def queue_jobs(self) -> dict[int, Iterable[Job]]:
        """Waiting jobs per queue index (-1: unknown queue), each in the index's order, to be
        walked before the index next changes. Read only."""
        if self._by_queue is None:
            if self._bulk_parts is not None:
                self._by_queue = self._split(self._bulk_parts[0])
            else:
                index = self.tree.index
                self._by_queue = self._split([index.get(q, -1) for q in map(_QUEUE, self._all.jobs)])
        return {q: self._walk(s) for q, s in self._by_queue.items() if s.jobs or s.rows}

    def _split(self, parts: list[int] | np.ndarray) -> dict[int, _Sorted]:
        """The jobs grouped by ``parts`` (one value per job, in the index's order), each group in
        the index's order, groups in order of first appearance. A stable numpy sort and C-level
        gathers: no Python step per job. Unmade parts (rows only) while the keys are unmade: a
        cycle walks only the first jobs of most parts."""
        if not len(parts):
            return {}
        values = np.asarray(parts, dtype=np.int64)
        perm = np.argsort(values, kind="stable")
        starts = np.flatnonzero(np.diff(values[perm], prepend=values[perm[:1]] - 1))
        groups = np.split(perm, starts[1:])
        groups.sort(key=lambda g: g[0])  # first appearance: stable, so g[0] is each group's first
        out: dict[int, _Sorted] = {}
        for rows in groups:
            part = out[int(values[rows[0]])] = _Sorted()
            if self._all.keys is None:
                part.keys, part.jobs, part.rows = None, None, rows.tolist()
            else:
                part.keys, part.jobs = _gather(self._all.keys, rows), _gather(self._all.jobs, rows)
        return out

    def add(self, job: Job) -> None:
        self._make_keys()
        if job.id in self._key:
            raise ValueError(f"job {job.id} is already in the pending index")
        key = static_key(job, self.order, self.las_thresholds)
        self._key[job.id] = key
        self._all.add(key, job)
        if self._by_queue is not None:
            self._by_queue.setdefault(self.tree.index.get(job.queue, -1), _Sorted()).add(key, job)
        if self._by_need is not None:
            self._by_need.setdefault(job.min_cards, _Sorted()).add(key, job)
        self._judge(job)
        self._bulk_parts = None
        self.version += 1

    def _judge(self, job: Job) -> None:
        self._judge_all((job,))

    def _judge_all(self, jobs: Iterable[Job], need: np.ndarray | None = None) -> None:
        """Judge whether each job can ever run here (once per shape: :func:`feasibility_shape`);
        count the feasible ones by cards needed (``need``: each job's ``min_cards``, when read
        already), record why the others cannot."""
        jobs = list(jobs)
        shapes = list(map(feasibility_shape, jobs))
        verdicts = self._verdicts
        if len(verdicts) > MAX_VERDICTS:  # shapes are the users' to choose: keep the cache bounded
            verdicts.clear()
        one_of = dict(zip(shapes, jobs, strict=True))  # one job of each shape
        for shape, job in one_of.items():
            if shape not in verdicts:
                verdicts[shape] = check_feasibility(self.cluster, self.tree, job, time_limit=False)
        needs = self._needs
        if self.tree.limits_time:  # limits vary job by job: never shared
            judged = [
                (check_time_limit(self.tree, j) or v) if v.ok and j.time_limit_s is not None else v
                for j, v in zip(jobs, map(verdicts.__getitem__, shapes), strict=True)
            ]
            feasible = Counter(j.min_cards for j, v in zip(jobs, judged, strict=True) if v.ok)
            for need, count in feasible.items():
                needs[need] = needs.get(need, 0) + count
            self.rejected.update((j.id, v.reason) for j, v in zip(jobs, judged, strict=True) if not v.ok)
            return
        bad = {shape for shape in one_of if not verdicts[shape].ok}
        if not bad and need is not None:  # every job feasible: count the needs read at build
            values, counts = np.unique(need, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                needs[value] = needs.get(value, 0) + count
            return
        # a shape fixes both the verdict and the cards needed: count jobs per shape (in C), not
        # per job in Python
        for shape, count in Counter(shapes).items():
            if verdicts[shape].ok:
                value = one_of[shape].min_cards
                needs[value] = needs.get(value, 0) + count
        if bad:
            self.rejected.update(
                (j.id, verdicts[shape].reason) for shape, j in zip(shapes, jobs, strict=True) if shape in bad
            )

    def get(self, job_id: str) -> Job:
        """The waiting job ``job_id`` (KeyError when it is not waiting)."""
        self._make_keys()
        key = self._key[job_id]
        return self._all.jobs[bisect_left(self._all.keys, key)]

    def remove(self, job_id: str) -> Job:
        self._make_keys()
        key = self._key.pop(job_id)
        job = self._all.remove(key)
        if self._by_queue is not None:
            self._by_queue[self.tree.index.get(job.queue, -1)].remove(key)
        if self._by_need is not None:
            self._by_need[job.min_cards].remove(key)
        if self.rejected.pop(job_id, None) is None:
            need = job.min_cards
            left = self._needs[need] - 1
            if left:
                self._needs[need] = left
            else:
                del self._needs[need]
        self._bulk_parts = None
        self.version += 1
        return job

    def smallest_need(self) -> int:
        """Fewest cards any feasible waiting job needs (a huge number when none waits)."""
        return min(self._needs, default=1 << 62)

    def needing_at_most(self, cards: int) -> Iterator[Job]:
        """Waiting jobs that need at most ``cards`` cards, in the index's order, lazily: the jobs
        that need more are never touched."""
        if self._by_need is None:
            if self._bulk_parts is not None:
                self._by_need = self._split(self._bulk_parts[1])
            else:
                self._by_need = self._split(list(map(_MIN_CARDS, self._all.jobs)))
        buckets = [b for need, b in self._by_need.items() if need <= cards and (b.jobs or b.rows)]
        if len(buckets) == 1:
            return iter(self._walk(buckets[0]))
        if all(b.rows is not None for b in buckets):  # unmade: merge places in the whole order
            return map(self._all.jobs.__getitem__, heapq.merge(*(b.rows for b in buckets)))
        merged = heapq.merge(*(zip(b.keys, b.jobs, strict=True) for b in buckets))
        return (job for _, job in merged)  # keys are unique: jobs are never compared

    def __iter__(self) -> Iterator[Job]:
        return iter(self._all.jobs)
