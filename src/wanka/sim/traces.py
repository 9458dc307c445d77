"""Trace readers. Each yields :class:`TraceJob` rows with submit times in seconds from the trace's start.

Formats (columns, units, what is assumed) are in docs/twin.md. A malformed row raises
:class:`TraceError` naming the file, line and column — or, with ``skip_bad_rows``, is skipped and
counted.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from wanka.core.eligibility import DependencyKind, format_dependencies, parse_array, parse_dependencies

MAX_ARRAY_ELEMENTS = 100_000  # elements of one array row
# bounds on a row's numbers, so a typo cannot hang the twin or overflow an array: the largest
# clusters hold ~100,000 cards; the longest jobs in public traces run for weeks; Unix times of
# this millennium stay below 1e11 s
MAX_CARDS = 1_000_000  # cards (or instances) one row may ask for
MAX_DURATION_S = 3660 * 86400.0  # ten years
MAX_TIME_S = 1e11  # a time stamp or offset, seconds
MAX_SPAN_S = 3660 * 86400.0  # from the first submit to the last


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: str
    submit_s: float
    duration_s: float  # run time at the requested size on the trace's own hardware
    cards: int
    tenant: str
    queue: str
    dependency: str = ""  # as sbatch --dependency, naming other rows' job ids (core.eligibility)
    array: str = ""  # as sbatch --array: the row stands for one job per index


@dataclass
class Trace:
    jobs: list[TraceJob]
    source: str
    skipped: int = 0  # malformed rows skipped (with --skip-bad-rows)
    problems: list[str] = field(default_factory=list)  # first few skipped rows, for the report
    filtered: int = 0  # well-formed rows that are not card jobs (CPU-only, never scheduled, unfinished)
    lines: dict[str, int] = field(default_factory=dict)  # job id -> the line (or row) it was read from


class NotACardJob(Exception):
    """A well-formed row that the twin does not replay (counted in ``Trace.filtered``)."""


class TraceError(ValueError):
    """One line: the file, the line (or Parquet row) and the column, each named once, then what is
    wrong. Row parsers raise it without a place (``path`` empty, ``line`` 0); the reader adds it.
    ``line`` 0 or an empty ``column`` means the problem is not in one row or column."""

    def __init__(self, path: str, line: int, column: str, message: str, unit: str = "line"):
        self.path, self.line, self.column, self.unit = path, line, column, unit
        self.in_row = False  # a bad row, which ``skip_bad_rows`` would skip (not a bad file)
        self.message = " ".join(message.split())  # one line, whatever the cause's text held
        where = [path] if path else []
        if line:
            where.append(f"{unit} {line}")
        if column:
            where.append(f"column {column!r}")
        super().__init__(", ".join(where) + ": " + self.message if where else self.message)

    def at(self, path: str, line: int, unit: str) -> TraceError:
        """The same problem of one row, placed in ``path`` at ``line``."""
        placed = TraceError(path, line, self.column, self.message, unit)
        placed.in_row = True
        return placed


def _read_csv(
    path: str | Path,
    required: tuple[str, ...],
    parse: Callable[[dict[str, str], int], TraceJob],
    skip_bad_rows: bool,
    fieldnames: tuple[str, ...] | None = None,
    id_column: str = "",
) -> Trace:
    """Rows of a CSV file (``fieldnames`` for headerless files) through ``parse``; ``id_column`` is
    the column the job id comes from (a repeated id is a bad row)."""
    p = Path(path)
    # utf-8-sig: a byte-order mark (as spreadsheets write one) is not part of the first column's name;
    # strict: an unterminated quote is an error, not a field that runs to the end of the file
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, fieldnames=list(fieldnames) if fieldnames else None, strict=True)
        read_to = [0]  # the last line of the last row read whole: a broken row begins after it

        def rows():
            for row in reader:
                yield reader.line_num, row
                read_to[0] = reader.line_num

        try:
            _require(p, reader.fieldnames or [], required, 1, "line")
            read_to[0] = reader.line_num
            return _parse_rows(p, rows(), parse, skip_bad_rows, "line", id_column)
        except csv.Error as exc:
            raise TraceError(str(p), read_to[0] + 1, "", f"not a readable CSV file ({exc})") from None
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start : exc.start + 1]
            line = _undecodable_line(p)
            raise TraceError(
                str(p), line, "", f"not UTF-8 text (byte {byte.hex()} cannot be decoded)"
            ) from None


def _whole(row: dict) -> dict[str, str]:
    """The row, refused when it holds more fields than the header names (DictReader would keep
    the rest under None and the reader would ignore them)."""
    extra = row.get(None)
    if extra:
        raise TraceError("", 0, "", f"{len(row) - 1 + len(extra)} fields; the header names {len(row) - 1}")
    return row


def _undecodable_line(p: Path) -> int:
    """The first line of ``p`` that is not UTF-8 (0 when none is found)."""
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _read_parquet(
    path: str | Path,
    required: tuple[str, ...],
    parse: Callable[[dict[str, str], int], TraceJob],
    skip_bad_rows: bool,
    id_column: str = "",
) -> Trace:
    """Rows of a Parquet file through the same ``parse`` as CSV (values as text; nulls empty), so
    both carry the same checks. Errors name the row (1 = the first)."""
    import pyarrow.parquet as pq

    p = Path(path)
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise TraceError(str(p), 0, "", f"not a readable Parquet file ({exc})", "row") from None
    _require(p, table.column_names, required, 0, "row")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    names = list(columns)

    def rows():
        for i in range(table.num_rows):
            yield i + 1, {n: "" if columns[n][i] is None else str(columns[n][i]) for n in names}

    return _parse_rows(p, rows(), parse, skip_bad_rows, "row", id_column)


def _require(p: Path, have, required: tuple[str, ...], header_line: int, unit: str) -> None:
    missing = [c for c in required if c not in have]
    if missing:
        raise TraceError(
            str(p), header_line, missing[0], f"missing column; the file needs {', '.join(required)}", unit
        )


def _parse_rows(p: Path, rows, parse, skip_bad_rows: bool, unit: str, id_column: str) -> Trace:
    jobs: list[TraceJob] = []
    first_seen: dict[str, int] = {}  # job id -> the line it first appeared on
    skipped, filtered, problems = 0, 0, []
    for line, row in rows:
        try:
            job = parse(_whole(row), line)
            if job.id in first_seen:
                raise TraceError(
                    "", 0, id_column, f"duplicate job id {job.id!r} (first on {unit} {first_seen[job.id]})"
                )
            first_seen[job.id] = line
            jobs.append(job)
        except NotACardJob:
            filtered += 1
        except TraceError as exc:
            placed = exc.at(str(p), line, unit)
            if not skip_bad_rows:
                raise placed from None
            skipped += 1
            if len(problems) < 5:
                problems.append(str(exc.at("", line, unit)))
    trace = _rebase(jobs, str(p), skipped, problems, filtered)
    trace.lines = first_seen
    return trace


def _rebase(jobs: list[TraceJob], source: str, skipped: int, problems: list[str], filtered: int) -> Trace:
    """Submit times from the first job, in submit order. Raises TraceError when they span more
    than :data:`MAX_SPAN_S` (a year typed wrong would have the twin replay millennia)."""
    if jobs:
        start = min(j.submit_s for j in jobs)
        span = max(j.submit_s for j in jobs) - start
        if span > MAX_SPAN_S:
            raise TraceError(
                source,
                0,
                "",
                f"submit times span {span / 86400:,.0f} days; at most {MAX_SPAN_S / 86400:,.0f} "
                "(is a date mistyped?)",
            )
        jobs = [replace(j, submit_s=j.submit_s - start) for j in jobs]
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return Trace(jobs, source, skipped, problems, filtered)


def busiest_tenant(trace: Trace) -> str:
    """The tenant (a Philly virtual cluster) whose jobs ask for the most card-seconds; ties by name."""
    work: dict[str, float] = {}
    for j in trace.jobs:
        work[j.tenant] = work.get(j.tenant, 0.0) + j.cards * j.duration_s
    if not work:
        raise ValueError("the trace has no jobs")
    return min(work, key=lambda t: (-work[t], t))


def select_tenants(trace: Trace, names: list[str]) -> Trace:
    """Only these tenants' jobs (``busiest``: :func:`busiest_tenant`), submit times rebased to the
    first of them, as a trace of its own; an unknown name is an error that lists the known ones."""
    known = {j.tenant for j in trace.jobs}
    wanted = {busiest_tenant(trace) if n == "busiest" else n for n in names}
    if unknown := sorted(wanted - known):
        raise ValueError(
            f"no such tenant in the trace: {', '.join(unknown)} (tenants: {', '.join(sorted(known))})"
        )
    jobs = [j for j in trace.jobs if j.tenant in wanted]
    selected = _rebase(jobs, trace.source, trace.skipped, trace.problems, trace.filtered)
    selected.lines = trace.lines
    return selected


def _number(row: dict[str, str], column: str, kind=float, minimum: float = 0, maximum: float | None = None):
    """The column as a finite ``kind`` within [minimum, maximum] (default: :data:`MAX_CARDS` for
    whole numbers, :data:`MAX_TIME_S` for seconds). Raises TraceError naming the column."""
    raw = (row.get(column) or "").strip()
    if maximum is None:
        maximum = MAX_CARDS if kind is int else MAX_TIME_S
    try:
        if "_" in raw:  # float() would take 1_000
            raise ValueError(raw)
        number = float(raw)
    except ValueError:
        raise TraceError("", 0, column, f"{raw!r} is not a number") from None
    if not math.isfinite(number):
        raise TraceError("", 0, column, f"{raw!r} is not a finite number")
    if kind is int and not number.is_integer():
        raise TraceError("", 0, column, f"{raw!r} is not a whole number")
    if not minimum <= number <= maximum:
        raise TraceError("", 0, column, f"{raw!r} must be between {minimum:g} and {maximum:g}")
    return int(number) if kind is int else number


def read_philly(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """The condensed Philly trace: ``timestamp,duration,num_gpus,gpu_time,cluster``.

    ``timestamp`` is local submit time ``YYYY-MM-DD HH:MM:SS``; ``duration`` seconds; ``num_gpus``
    cards; ``cluster`` the virtual cluster, used as tenant and queue. ``gpu_time`` is ignored
    (duration x num_gpus)."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        raw = (row.get("timestamp") or "").strip()
        try:
            # read as UTC: only differences matter, and the host's time zone (DST) must not move them
            submit = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise TraceError("", 0, "timestamp", f"{raw!r} is not YYYY-MM-DD HH:MM:SS") from None
        duration = _number(row, "duration", maximum=MAX_DURATION_S)
        cards = _number(row, "num_gpus", int, 1)
        vc = _printable(row, "cluster")
        if not vc:
            raise TraceError("", 0, "cluster", "empty virtual-cluster id")
        return TraceJob(f"philly-{line - 1}", submit, duration, cards, vc, vc)

    return _read_csv(path, ("timestamp", "duration", "num_gpus", "cluster"), parse, skip_bad_rows)


WANKA_COLUMNS = ("job_id", "submit_s", "duration_s", "cards", "tenant", "queue", "dependency", "array")


def read_wanka(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """wanka's own format, CSV or (by a ``.parquet`` / ``.pq`` suffix) Parquet, with the columns
    ``job_id,submit_s,duration_s,cards,tenant,queue,dependency,array`` (queue optional or empty:
    then the tenant's; dependency and array optional, as sbatch writes them: ``afterok:7``,
    ``0-99%10``; a dependency names other rows' job ids, an array row's id means all its elements)."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        job_id = _printable(row, "job_id")
        if not job_id:
            raise TraceError("", 0, "job_id", "empty job id")
        tenant = _printable(row, "tenant")
        if not tenant:
            raise TraceError("", 0, "tenant", "empty tenant")
        queue = _printable(row, "queue") or tenant
        dependency = (row.get("dependency") or "").strip()
        array = (row.get("array") or "").strip()
        try:
            if dependency:
                deps = parse_dependencies(dependency)
                if any(d.kind is DependencyKind.SINGLETON for d in deps):
                    raise ValueError("singleton needs job names and users, which traces do not carry")
                dependency = format_dependencies(deps)
        except ValueError as exc:
            raise TraceError("", 0, "dependency", str(exc)) from None
        try:
            if array:
                parse_array(array, MAX_ARRAY_ELEMENTS)
        except ValueError as exc:
            raise TraceError("", 0, "array", str(exc)) from None
        return TraceJob(
            job_id,
            _number(row, "submit_s"),
            _number(row, "duration_s", maximum=MAX_DURATION_S),
            _number(row, "cards", int, 1),
            tenant,
            queue,
            dependency,
            array,
        )

    required = WANKA_COLUMNS[:5]
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        trace = _read_parquet(path, required, parse, skip_bad_rows, "job_id")
    else:
        trace = _read_csv(path, required, parse, skip_bad_rows, id_column="job_id")
    unit = "row" if Path(path).suffix.lower() in (".parquet", ".pq") else "line"
    waits_on = {
        j.id: [d.job_id for d in parse_dependencies(j.dependency)] if j.dependency else [] for j in trace.jobs
    }
    for job_id, deps in waits_on.items():
        for dep in deps:
            if dep not in waits_on:
                where = trace.lines.get(job_id, 0)
                raise TraceError(str(path), where, "dependency", f"no row has job id {dep!r}", unit)
    if cycle := _dependency_cycle(waits_on):
        where = trace.lines.get(cycle[0], 0)
        path_text = " -> ".join(cycle)
        raise TraceError(
            str(path), where, "dependency", f"waits on itself: {path_text}; it could never start", unit
        )
    return trace


def _dependency_cycle(waits_on: dict[str, list[str]]) -> list[str]:
    """A chain of job ids that ends where it began (each waiting on the next), or [] when none.
    Iterative depth-first search: a trace may chain 100,000 jobs."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in waits_on:
        if root in state:
            continue
        path, stack = [root], [iter(waits_on[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(waits_on.get(nxt, ())))
    return []


def write_wanka(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` in wanka's format: Parquet by a ``.parquet`` / ``.pq`` suffix, else CSV."""
    p = Path(path)
    cols = {c: [] for c in WANKA_COLUMNS}
    for j in trace.jobs:
        row = (j.id, j.submit_s, j.duration_s, j.cards, j.tenant, j.queue, j.dependency, j.array)
        for c, v in zip(WANKA_COLUMNS, row, strict=True):
            cols[c].append(v)
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(cols), p)
        return
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(WANKA_COLUMNS)
        w.writerows(zip(*cols.values(), strict=True))


def _text(row: dict[str, str], column: str) -> str:
    value = _printable(row, column)
    if not value:
        raise TraceError("", 0, column, "empty")
    return value


def _printable(row: dict[str, str], column: str) -> str:
    """The column, stripped, refused when it holds a control character (a NUL, an escape): ids,
    tenants and queues end up in reports, CSVs and queue names."""
    value = (row.get(column) or "").strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise TraceError("", 0, column, f"{value!r} holds a control character")
    return value


def _when(row: dict[str, str], column: str) -> float:
    """A date-time column ('2020-04-01 00:00:07', ISO with or without an offset; naive = UTC)."""
    raw = _text(row, column)
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise TraceError("", 0, column, f"{raw!r} is not a date-time (YYYY-MM-DD HH:MM:SS[+HH:MM])") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def read_itp(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """Microsoft ITP / ElasticFlow raw CSV: ``job_id,submission_time,duration,num_gpu`` (seconds);
    no tenant column, so every job is tenant ``itp``."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        cards = _number(row, "num_gpu", int, 0)
        if cards == 0:
            raise NotACardJob
        return TraceJob(
            _text(row, "job_id"),
            _number(row, "submission_time"),
            _number(row, "duration", maximum=MAX_DURATION_S),
            cards,
            "itp",
            "itp",
        )

    required = ("job_id", "submission_time", "duration", "num_gpu")
    return _read_csv(path, required, parse, skip_bad_rows, id_column="job_id")


def _dated_gpu_jobs(path: str | Path, prefix: str, tenant: str, skip_bad_rows: bool) -> Trace:
    """Traces with ``job_id, gpu_num, submit_time`` (a date-time) and ``duration`` (s); the tenant is
    the ``tenant`` column. CPU-only jobs (``gpu_num`` 0) are counted in ``filtered``."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        cards = _number(row, "gpu_num", int, 0)
        if cards == 0:
            raise NotACardJob
        who = _text(row, tenant)
        job_id = f"{prefix}-{_text(row, 'job_id')}"
        duration = _number(row, "duration", maximum=MAX_DURATION_S)
        return TraceJob(job_id, _when(row, "submit_time"), duration, cards, who, who)

    required = ("job_id", tenant, "gpu_num", "submit_time", "duration")
    return _read_csv(path, required, parse, skip_bad_rows, id_column="job_id")


def read_helios(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """SenseTime Helios ``cluster_log.csv``: ``job_id, user, vc, jobname, gpu_num, cpu_num, node_num,
    state, submit_time, start_time, end_time, duration, …``; tenant = ``vc`` (virtual cluster)."""
    return _dated_gpu_jobs(path, "helios", "vc", skip_bad_rows)


def read_acme(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """Shanghai AI Lab Acme ``trace_seren.csv`` / ``trace_kalos.csv``: ``job_id, user, node_num,
    gpu_num, …, submit_time, start_time, end_time, …, duration, …``; tenant = ``user``. Times carry
    an offset (+08:00)."""
    return _dated_gpu_jobs(path, "acme", "user", skip_bad_rows)


def read_openb(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """Alibaba cluster-trace-gpu-v2023 ``openb_pod_list_*.csv``: ``name, cpu_milli, memory_mib,
    num_gpu, gpu_milli, gpu_spec, qos, pod_phase, creation_time, deletion_time, scheduled_time``
    (seconds). A pod sharing a GPU (``gpu_milli`` < 1000) takes one whole card here; duration is
    deletion - scheduled; tenant = ``qos``. Pods without GPUs or never scheduled are filtered."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        cards = _number(row, "num_gpu", int, 0)
        scheduled = (row.get("scheduled_time") or "").strip()
        if cards == 0 or not scheduled:
            raise NotACardJob
        start = _number(row, "scheduled_time")
        end = _number(row, "deletion_time")
        if end < start:
            raise TraceError("", 0, "deletion_time", f"{end:g} is before scheduled_time {start:g}")
        if end - start > MAX_DURATION_S:
            raise TraceError(
                "", 0, "deletion_time", f"{end - start:g} s after scheduled_time; at most {MAX_DURATION_S:g}"
            )
        qos = _text(row, "qos")
        return TraceJob(_text(row, "name"), _number(row, "creation_time"), end - start, cards, qos, qos)

    return _read_csv(
        path,
        ("name", "num_gpu", "qos", "creation_time", "deletion_time", "scheduled_time"),
        parse,
        skip_bad_rows,
        id_column="name",
    )


PAI_JOB_COLUMNS = ("job_name", "inst_id", "user", "status", "start_time", "end_time")
PAI_TASK_COLUMNS = (
    "job_name",
    "task_name",
    "inst_num",
    "status",
    "start_time",
    "end_time",
    "plan_cpu",
    "plan_mem",
    "plan_gpu",
    "gpu_type",
)


def read_pai(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """Alibaba PAI 2020: a folder with the headerless ``pai_job_table.csv`` (job_name, inst_id,
    user, status, start_time, end_time) and ``pai_task_table.csv`` (job_name, task_name, inst_num,
    status, start_time, end_time, plan_cpu, plan_mem, plan_gpu, gpu_type). A job's cards are the sum
    over its tasks of ``inst_num x ceil(plan_gpu / 100)`` (plan_gpu is in percent of a GPU); its
    duration runs from its first task's start to its last task's end; tenant = ``user``. Jobs without
    GPU tasks or without an end (still running in the trace) are filtered."""
    folder = Path(path)
    for name in ("pai_job_table.csv", "pai_task_table.csv"):
        if folder.is_dir() and not (folder / name).is_file():  # name the table, not the folder
            raise TraceError(str(folder / name), 0, "", "no such file; a PAI folder holds both tables")
    tasks: dict[str, list[tuple[float, float, int]]] = {}

    def parse_task(row: dict[str, str], line: int) -> TraceJob:
        gpu = (
            _number(row, "plan_gpu", maximum=100.0 * MAX_CARDS)
            if (row.get("plan_gpu") or "").strip()
            else 0.0
        )
        if gpu <= 0 or not (row.get("end_time") or "").strip():
            raise NotACardJob
        start, end = _number(row, "start_time"), _number(row, "end_time")
        inst = _number(row, "inst_num", int, 1)
        tasks.setdefault(_text(row, "job_name"), []).append((start, end, inst * math.ceil(gpu / 100.0)))
        raise NotACardJob  # tasks are gathered here and become jobs below

    task_trace = _read_csv(
        folder / "pai_task_table.csv", PAI_TASK_COLUMNS, parse_task, skip_bad_rows, PAI_TASK_COLUMNS
    )

    def parse_job(row: dict[str, str], line: int) -> TraceJob:
        name = _text(row, "job_name")
        mine = tasks.get(name)
        if not mine:
            raise NotACardJob
        submit = _number(row, "start_time")
        first, last = min(t[0] for t in mine), max(t[1] for t in mine)
        if last - first > MAX_DURATION_S:
            raise TraceError(
                "", 0, "job_name", f"its tasks run {last - first:g} s; at most {MAX_DURATION_S:g}"
            )
        user = _text(row, "user")
        return TraceJob(f"pai-{name}", submit, max(0.0, last - first), sum(t[2] for t in mine), user, user)

    trace = _read_csv(
        folder / "pai_job_table.csv", PAI_JOB_COLUMNS, parse_job, skip_bad_rows, PAI_JOB_COLUMNS, "job_name"
    )
    trace.skipped += task_trace.skipped
    trace.problems = (task_trace.problems + trace.problems)[:5]
    trace.source = str(folder)
    return trace


READERS: dict[str, Callable[..., Trace]] = {
    "philly": read_philly,
    "itp": read_itp,
    "helios": read_helios,
    "pai": read_pai,
    "openb": read_openb,
    "acme": read_acme,
    "wanka": read_wanka,
}
