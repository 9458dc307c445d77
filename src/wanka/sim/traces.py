"""Trace readers. Each yields :class:`TraceJob` rows with submit times in seconds from the trace's start.

Formats (columns, units, what is assumed) are in docs/twin.md. A malformed row raises
:class:`TraceError` naming the file, line and column — or, with ``skip_bad_rows``, is skipped and
counted.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: str
    submit_s: float
    duration_s: float  # run time at the requested size on the trace's own hardware
    cards: int
    tenant: str
    queue: str


@dataclass
class Trace:
    jobs: list[TraceJob]
    source: str
    skipped: int = 0
    problems: list[str] = field(default_factory=list)  # first few skipped rows, for the report


class TraceError(ValueError):
    def __init__(self, path: str, line: int, column: str, message: str):
        self.path, self.line, self.column = path, line, column
        super().__init__(f"{path}, line {line}, column {column!r}: {message}")


def _read_csv(
    path: str | Path,
    required: tuple[str, ...],
    parse: Callable[[dict[str, str], int], TraceJob],
    skip_bad_rows: bool,
) -> Trace:
    p = Path(path)
    jobs: list[TraceJob] = []
    skipped, problems = 0, []
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(str(p), 1, missing[0], f"missing column; the header needs {', '.join(required)}")
        for row in reader:
            line = reader.line_num
            try:
                jobs.append(parse(row, line))
            except TraceError as exc:
                if not skip_bad_rows:
                    raise TraceError(str(p), line, exc.column, str(exc.args[0])) from None
                skipped += 1
                if len(problems) < 5:
                    problems.append(f"line {line}, column {exc.column!r}: {exc.args[0]}")
    if jobs:
        start = min(j.submit_s for j in jobs)
        jobs = [TraceJob(j.id, j.submit_s - start, j.duration_s, j.cards, j.tenant, j.queue) for j in jobs]
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return Trace(jobs, str(p), skipped, problems)


def _number(row: dict[str, str], column: str, kind=float, minimum: float = 0):
    raw = (row.get(column) or "").strip()
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise TraceError("", 0, column, f"{raw!r} is not a number") from None
    if kind is int and float(raw) != value:
        raise TraceError("", 0, column, f"{raw!r} is not a whole number")
    if value < minimum:
        raise TraceError("", 0, column, f"{raw!r} must be >= {minimum}")
    return value


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
        duration = _number(row, "duration")
        cards = _number(row, "num_gpus", int, 1)
        vc = (row.get("cluster") or "").strip()
        if not vc:
            raise TraceError("", 0, "cluster", "empty virtual-cluster id")
        return TraceJob(f"philly-{line - 1}", submit, duration, cards, vc, vc)

    return _read_csv(path, ("timestamp", "duration", "num_gpus", "cluster"), parse, skip_bad_rows)


def read_wanka_csv(path: str | Path, skip_bad_rows: bool = False) -> Trace:
    """wanka's own format: ``job_id,submit_s,duration_s,cards,tenant,queue`` (queue may be empty:
    then the tenant's name)."""

    def parse(row: dict[str, str], line: int) -> TraceJob:
        job_id = (row.get("job_id") or "").strip()
        if not job_id:
            raise TraceError("", 0, "job_id", "empty job id")
        tenant = (row.get("tenant") or "").strip()
        if not tenant:
            raise TraceError("", 0, "tenant", "empty tenant")
        queue = (row.get("queue") or "").strip() or tenant
        return TraceJob(
            job_id,
            _number(row, "submit_s"),
            _number(row, "duration_s"),
            _number(row, "cards", int, 1),
            tenant,
            queue,
        )

    return _read_csv(path, ("job_id", "submit_s", "duration_s", "cards", "tenant"), parse, skip_bad_rows)


READERS: dict[str, Callable[..., Trace]] = {"philly": read_philly, "wanka": read_wanka_csv}
