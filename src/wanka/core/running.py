"""The running set as a cycle needs it, and an index a long-lived caller keeps up to date.

Opening a session used to walk every running job (its queue, model, expected end, quota usage):
O(running) per cycle however little changed. A caller that runs many cycles over a slowly changing
cluster (the twin, the control plane) keeps a :class:`RunningIndex` instead, adding and removing
jobs as they start and stop, and passes it in the snapshot; the session then copies it in
O(queues + running) dictionary work instead of rebuilding it. Without one, the session builds it.

The index also keeps each job's fixed facts (model, queue, cards, priority, start, expected end,
every task's node and size) as numpy columns, written once when the job starts: the victim pool
and reservations read them as arrays (:meth:`RunningIndex.columns`) instead of walking 50,000 job
objects in Python every cycle. Facts that change while a job runs (attained service, checkpoints)
are read from the jobs when needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from wanka.core.cluster import Cluster
from wanka.core.jobs import Job, checkpoint_facts
from wanka.core.quota import QueueTree
from wanka.core.state import Placement
from wanka.core.whatif import TaskTable


@dataclass(slots=True)
class Running:
    """A job holding cards in a session."""

    job: Job
    placement: Placement
    flavor: int
    queue: int
    end: float  # expected end from its time limit (inf when unknown)
    row: int = -1  # its row in the RunningIndex columns; -1 when not in an index (started this cycle)

    @property
    def cards(self) -> int:
        return self.placement.total_cards

    @property
    def cpus(self) -> int:
        return self.placement.total_cpus

    @property
    def memory(self) -> int:
        return self.placement.total_memory


def effective_time_limit(
    job: Job, tree: QueueTree | None, default_time_limit_s: float | None
) -> float | None:
    """The job's own time limit, else its queue's default (Slurm's DefaultTime, falling back to
    MaxTime), else the policy's default; None when nothing bounds it. Seconds."""
    if job.time_limit_s is not None:
        return job.time_limit_s
    if tree is not None:
        q = tree.index.get(job.queue)
        if q is not None and tree.default_time_limit[q] is not None:
            return tree.default_time_limit[q]
    return default_time_limit_s


def expected_end(
    job: Job, now: float, default_time_limit_s: float | None, tree: QueueTree | None = None
) -> float:
    """When ``job`` is due to end by its effective time limit; inf when unbounded."""
    limit = effective_time_limit(job, tree, default_time_limit_s)
    if limit is None:
        return math.inf
    start = job.start_time if job.start_time is not None else now
    return start + limit


def write_growing(store: dict[str, np.ndarray], name: str, values: np.ndarray, at: int) -> np.ndarray:
    """Write ``values`` at ``at`` of the array ``store[name]`` and return a view of its filled part.
    Room doubles as it runs out (and the dtype widens for longer strings), so appending a few
    values to a long column copies nothing."""
    column = store.get(name)
    end = at + len(values)
    dtype = values.dtype if column is None else np.promote_types(column.dtype, values.dtype)
    if column is None or len(column) < end or dtype != column.dtype:
        grown = np.empty(max(end, 2 * at) + 16, dtype=dtype)
        if column is not None:
            grown[:at] = column[:at]
        store[name] = column = grown
    column[at:end] = values
    return column[:end]


@dataclass(frozen=True, slots=True)
class RunningColumns:
    """The running jobs' fixed facts as arrays, in ``RunningIndex.entries`` order (one row per
    job), and their tasks (one row per task, a job's tasks together in group order). Read-only."""

    flavor: np.ndarray  # int64, index into Cluster.models
    queue: np.ndarray  # int64, index into the QueueTree
    cards: np.ndarray  # int64, cards held
    priority: np.ndarray  # int64
    start: np.ndarray  # float64 seconds, NaN when unknown
    saved: np.ndarray  # float64 seconds, the last checkpoint (NaN: none recorded)
    every: np.ndarray  # float64 seconds, the checkpoint interval (0: none)
    origin: np.ndarray  # float64 seconds, when periodic checkpoints count from (NaN: the start)
    end: np.ndarray  # float64 seconds, expected end (inf when unbounded)
    preemptible: np.ndarray  # bool
    ids: np.ndarray  # str
    position: np.ndarray  # int64 per index row: the job's row here (-1: removed)
    loans: dict[int, str]  # row here -> the waiting job it was backfilled for (Job.preemptible_by)
    task_entry: np.ndarray  # int64, the task's job (row here)
    task_node: np.ndarray  # int64
    task_cards: np.ndarray  # int64
    task_cpus: np.ndarray  # int64
    task_mem: np.ndarray  # int64, GiB


_ENTRY_DTYPES = {
    "flavor": np.int64,
    "queue": np.int64,
    "cards": np.int64,
    "priority": np.int64,
    "start": np.float64,
    "saved": np.float64,
    "every": np.float64,
    "origin": np.float64,
    "end": np.float64,
    "preemptible": bool,
}
_VIEWED = (*_ENTRY_DTYPES, "ids")
_TASK_NAMES = ("task_entry", "task_node", "task_cards", "task_cpus", "task_mem")


class RunningIndex:
    """Running jobs by id with the totals a session starts from: cards held per (queue, cluster
    model), cpus and memory per queue, which jobs are elastic, and the priorities of the
    preemptible ones per queue (so preemption can tell at once when nobody may be evicted).

    The caller adds a job when it starts (after setting ``placement``, ``start_time`` and its
    checkpoint facts) and removes it when it stops; a resized job is removed and added again, and
    so is a job whose priority, preemptibility or checkpoint facts (``last_checkpoint_time``,
    ``checkpoint_interval_s``, ``checkpoint_from``) change while it runs. The snapshot it goes
    into must list exactly the same running jobs.
    """

    compact_after = 1024  # dead rows kept before the columns are compacted (and more than half)

    def __init__(self, cluster: Cluster, tree: QueueTree, default_time_limit_s: float | None = None):
        self.cluster = cluster
        self.tree = tree
        self.default_time_limit_s = default_time_limit_s
        # a job without a time limit of its own: its queue's default, else the policy's
        # (effective_time_limit, per queue; the index is bound to its tree)
        self._limits = [default_time_limit_s if d is None else d for d in tree.default_time_limit]
        self.entries: dict[str, Running] = {}
        self.held: dict[tuple[int, int], int] = {}  # (queue, flavor) -> cards
        self.cpus = [0] * len(tree.names)
        self.memory = [0] * len(tree.names)
        self.elastic: dict[str, Running] = {}
        self.preemptible: dict[int, dict[int, int]] = {}  # queue -> priority -> preemptible jobs
        # the columns: rows appended as jobs start, a removed job's row dead until more than half
        # are (then the live ones move up, in order), so rows stay in ``entries`` order
        self._rows: list[Running | None] = []
        self._columns = {name: np.zeros(16, dtype=dtype) for name, dtype in _ENTRY_DTYPES.items()}
        self._columns["ids"] = np.zeros(16, dtype="<U8")
        self._columns["live"] = np.zeros(16, dtype=bool)  # False: the row's job was removed
        self._tasks = {name: np.zeros(16, dtype=np.int64) for name in _TASK_NAMES}
        self._num_tasks = 0
        self._dead = 0
        self._loans: dict[str, str] = {}
        self._view: RunningColumns | None = None
        self._unrowed = False  # entries (from ``build``) whose rows are not written yet

    @classmethod
    def build(
        cls, cluster: Cluster, tree: QueueTree, jobs, now: float, default_time_limit_s: float | None = None
    ) -> RunningIndex:
        index = cls(cluster, tree, default_time_limit_s)
        index._enter(jobs, now)
        index._unrowed = True  # the columns are filled in bulk when first needed
        return index

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, job: Job, now: float, row: bool = True) -> Running:
        self._write_rows()
        entry = self._enter((job,), now)
        if row:
            self._add_row(entry)
        return entry

    def _enter(self, jobs: Iterable[Job], now: float) -> Running | None:
        """Enter ``jobs`` and count what they hold; the last entry made (None: no jobs). One loop
        for one job or 50,000: the lookups are hoisted out of it."""
        entries, held, cpus, memory = self.entries, self.held, self.cpus, self.memory
        elastic, preemptible = self.elastic, self.preemptible
        queue_of, model_of = self.tree.index, self.cluster.model_index
        limits = self._limits
        entry = None
        for job in jobs:
            placement = job.placement
            if placement is None:
                raise ValueError(f"running job {job.id} has no placement")
            if job.id in entries:
                raise ValueError(f"job {job.id} is already in the running index")
            queue = queue_of.get(job.queue, -1)
            if queue < 0:
                raise ValueError(f"running job {job.id} is in unknown queue {job.queue!r}")
            flavor = model_of[placement.model]
            limit = limits[queue] if job.time_limit_s is None else job.time_limit_s
            end = math.inf if limit is None else (now if job.start_time is None else job.start_time) + limit
            entry = entries[job.id] = Running(job, placement, flavor, queue, end)
            if placement.total_cards:  # held lists only what is held (a CPU-only job holds no card)
                key = (queue, flavor)
                held[key] = held.get(key, 0) + placement.total_cards
            cpus[queue] += placement.total_cpus
            memory[queue] += placement.total_memory
            if job.elastic:
                elastic[job.id] = entry
            if job.preemptible:
                counts = preemptible.get(queue)
                if counts is None:
                    counts = preemptible[queue] = {}
                counts[job.priority] = counts.get(job.priority, 0) + 1
        return entry

    def _write_rows(self) -> None:
        """Write the rows of the jobs ``build`` added, in one pass per column (a cold session that
        never reads the columns never pays for them)."""
        if not self._unrowed:
            return
        self._unrowed = False
        entries = list(self.entries.values())
        first, n = len(self._rows), len(entries)
        for i, entry in enumerate(entries, first):
            entry.row = i
        self._rows += entries
        self._view = None
        jobs = [e.job for e in entries]
        values = dict(zip(("start", "saved", "every", "origin"), checkpoint_facts(jobs), strict=True))
        values |= {
            "flavor": (e.flavor for e in entries),
            "queue": (e.queue for e in entries),
            "cards": (e.placement.total_cards for e in entries),
            "priority": (j.priority for j in jobs),
            "end": (e.end for e in entries),
            "preemptible": (j.preemptible for j in jobs),
        }
        for name, dtype in _ENTRY_DTYPES.items():
            column = np.fromiter(values[name], dtype=dtype, count=n)
            write_growing(self._columns, name, column, first)
        write_growing(self._columns, "ids", np.array([j.id for j in jobs]) if n else np.zeros(0, str), first)
        write_growing(self._columns, "live", np.ones(n, dtype=bool), first)
        self._loans.update((j.id, j.preemptible_by) for j in jobs if j.preemptible_by is not None)
        table = TaskTable(entries)  # the tasks, flattened as a what-if table flattens them
        for name in _TASK_NAMES:
            values = getattr(table, name)
            if name == "task_entry":
                values = values + first
            write_growing(self._tasks, name, values, self._num_tasks)
        self._num_tasks += len(table.task_entry)

    def _add_row(self, entry: Running) -> None:
        job, row = entry.job, len(self._rows)
        entry.row = row
        self._rows.append(entry)
        self._view = None
        nan = math.nan
        values = (
            entry.flavor,
            entry.queue,
            entry.cards,
            job.priority,
            nan if job.start_time is None else job.start_time,
            nan if job.last_checkpoint_time is None else job.last_checkpoint_time,
            job.checkpoint_interval_s or 0.0,
            nan if job.checkpoint_from is None else job.checkpoint_from,
            entry.end,
            job.preemptible,
        )
        columns = self._columns
        if row >= len(columns["live"]):  # out of room: double every column
            for name, column in columns.items():
                columns[name] = np.concatenate([column, np.zeros_like(column, shape=row + 16)])
        for name, value in zip(_ENTRY_DTYPES, values, strict=True):
            columns[name][row] = value
        columns["live"][row] = True
        ids = columns["ids"]
        if len(job.id) > ids.dtype.itemsize // 4:  # a longer id: widen, never truncate
            columns["ids"] = ids = ids.astype(f"<U{len(job.id)}")
        ids[row] = job.id
        if job.preemptible_by is not None:
            self._loans[job.id] = job.preemptible_by
        groups = entry.placement.groups
        tasks = (
            [row] * entry.placement.num_tasks,
            [n for g in groups for n in g.nodes],
            [g.cards_per_task for g in groups for _ in g.nodes],
            [g.cpus for g in groups for _ in g.nodes],
            [g.memory_gib for g in groups for _ in g.nodes],
        )
        for name, values in zip(_TASK_NAMES, tasks, strict=True):
            write_growing(self._tasks, name, np.array(values, dtype=np.int64), self._num_tasks)
        self._num_tasks += len(tasks[0])

    def remove(self, job_id: str) -> None:
        self._write_rows()
        entry = self.entries.pop(job_id)
        key = (entry.queue, entry.flavor)
        # a 0-card job adds 0 and may find its key gone already (another 0-card job's removal)
        left = self.held.get(key, 0) - entry.cards
        if left:
            self.held[key] = left
        else:
            self.held.pop(key, None)
        self.cpus[entry.queue] -= entry.cpus
        self.memory[entry.queue] -= entry.memory
        self.elastic.pop(job_id, None)
        if entry.job.preemptible:
            counts = self.preemptible[entry.queue]
            counts[entry.job.priority] -= 1
            if not counts[entry.job.priority]:
                del counts[entry.job.priority]
        self._columns["live"][entry.row] = False
        self._rows[entry.row] = None
        self._loans.pop(job_id, None)
        self._dead += 1
        self._view = None
        if self._dead > self.compact_after and 2 * self._dead > len(self._rows):
            self._compact()

    def _compact(self) -> None:
        """Drop the dead rows (and their tasks), the live ones keeping their order."""
        n = len(self._rows)
        live = self._columns["live"][:n].copy()
        keep = np.flatnonzero(live)
        new_row = np.cumsum(live) - 1
        tasks = live[self._tasks["task_entry"][: self._num_tasks]]
        for name, column in self._columns.items():  # room kept for 16 more rows, as after a doubling
            self._columns[name] = np.concatenate([column[:n][keep], np.zeros_like(column, shape=16)])
        for name, column in self._tasks.items():
            self._tasks[name] = column[: self._num_tasks][tasks]
        self._tasks["task_entry"] = new_row[self._tasks["task_entry"]]
        self._rows = [self._rows[i] for i in keep.tolist()]
        for row, entry in enumerate(self._rows):
            entry.row = row
        self._num_tasks = len(self._tasks["task_entry"])
        self._dead = 0

    def columns(self) -> RunningColumns:
        """The columns of the jobs in the index now, rows in ``entries`` order (cached until the
        next add or remove; O(running) numpy work, no Python loop over jobs)."""
        if self._view is not None:
            return self._view
        self._write_rows()
        n, nt = len(self._rows), self._num_tasks
        if not n:  # nothing ever added (or everything compacted away): empty columns
            cols = {name: np.zeros(0, dtype=dtype) for name, dtype in _ENTRY_DTYPES.items()}
            empty = np.zeros(0, dtype=np.int64)
            tasks = dict.fromkeys(_TASK_NAMES, empty)
            self._view = RunningColumns(**cols, ids=np.zeros(0, dtype=str), position=empty, loans={}, **tasks)
            return self._view
        live = self._columns["live"][:n]
        if self._dead:
            keep = np.flatnonzero(live)
            position = np.where(live, np.cumsum(live) - 1, -1)
            cols = {name: self._columns[name][:n][keep] for name in _VIEWED}
            task_live = live[self._tasks["task_entry"][:nt]]
            tasks = {name: column[:nt][task_live] for name, column in self._tasks.items()}
            tasks["task_entry"] = position[tasks["task_entry"]]
        else:
            position = np.arange(n, dtype=np.int64)
            cols = {name: self._columns[name][:n] for name in _VIEWED}
            tasks = {name: column[:nt] for name, column in self._tasks.items()}
        for array in (*cols.values(), *tasks.values(), position):
            array.flags.writeable = False
        loans = {int(position[self.entries[j].row]): holder for j, holder in self._loans.items()}
        self._view = RunningColumns(**cols, position=position, loans=loans, **tasks)
        return self._view
