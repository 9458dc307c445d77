"""Whether a waiting job may be considered at all: its dependencies and its array's throttle.

The scheduling cycle sees only eligible jobs; the twin and the control plane both judge eligibility
with these functions before a job enters the pending index. The syntax and meaning follow Slurm
(sbatch(1), ``--dependency`` and ``--array``):

- ``after:ID`` — once job ID has started (or ended without starting);
- ``afterany:ID`` — once it has ended, however;
- ``afterok:ID`` — once it has succeeded; never if it failed or was cancelled;
- ``afternotok:ID`` — once it has failed or was cancelled; never if it succeeded;
- ``singleton`` — once no earlier job of the same name and user is waiting or running.

Several are joined with ``,`` (all must hold); ``ID:ID`` lists several jobs for one kind. Slurm's
``?`` (any one of them) is not supported. A dependency that can never hold ends the job
(``cancelled``, with why), as Slurm does with ``kill_invalid_depend``: a job that would wait forever
is a surprise, not a service.

An array ``0-15``, ``0,6,16-32``, ``0-15:4`` (step), ``…%4`` (at most 4 elements running at once) is
one job per index, each a job of its own (its index in ``WANKA_ARRAY_INDEX``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum

from wanka.core.jobs import JobState

MAX_DEPENDENCIES = 100  # job ids one job may depend on
MAX_ARRAY_INDEX = 9_999_999


class DependencyKind(StrEnum):
    AFTER = "after"
    AFTER_ANY = "afterany"
    AFTER_OK = "afterok"
    AFTER_NOT_OK = "afternotok"
    SINGLETON = "singleton"


@dataclass(frozen=True, slots=True)
class Dependency:
    kind: DependencyKind
    job_id: str = ""  # empty for singleton


class Ready(Enum):
    YES = "yes"
    WAIT = "wait"
    NEVER = "never"


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_NOT_OK = (JobState.FAILED, JobState.CANCELLED)


def parse_dependencies(text: str) -> tuple[Dependency, ...]:
    """``afterok:12:13,afterany:14`` as dependencies. Raises ValueError naming what is accepted."""
    out: list[Dependency] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "?" in part:
            raise ValueError("'?' (any one of) is not supported; join with ',' (all of)")
        kind_text, *ids = part.split(":")
        try:
            kind = DependencyKind(kind_text.strip().lower())
        except ValueError:
            kinds = ", ".join(k.value for k in DependencyKind)
            raise ValueError(f"{kind_text!r} is not a dependency kind; use {kinds}") from None
        if kind is DependencyKind.SINGLETON:
            if ids:
                raise ValueError("singleton takes no job ids")
            out.append(Dependency(kind))
            continue
        if not ids:
            raise ValueError(f"{kind.value} needs job ids, e.g. {kind.value}:12")
        for job_id in ids:
            job_id = job_id.strip()
            if not _ID.match(job_id):
                raise ValueError(f"{job_id!r} is not a job id")
            out.append(Dependency(kind, job_id))
    if not out:
        raise ValueError("empty; e.g. afterok:12 or afterany:12:13,singleton")
    if len(out) > MAX_DEPENDENCIES:
        raise ValueError(f"{len(out)} dependencies; at most {MAX_DEPENDENCIES}")
    return tuple(dict.fromkeys(out))  # in order, each once


def dependency_verdict(
    deps: tuple[Dependency, ...],
    state_of: Callable[[str], JobState | None],
    started: Callable[[str], bool],
    singleton_clear: bool = True,
) -> tuple[Ready, str]:
    """Whether ``deps`` hold now. ``state_of(id)``: the job's state (None: no such job, which never
    holds); ``started(id)``: it has started at least once; ``singleton_clear``: no earlier job of
    the same name and user waits or runs. Returns the verdict and, unless YES, why (for the job's
    reason)."""
    waiting: list[str] = []
    for d in deps:
        if d.kind is DependencyKind.SINGLETON:
            if not singleton_clear:
                waiting.append("singleton")
            continue
        state = state_of(d.job_id)
        if state is None:
            return Ready.NEVER, f"dependency {d.kind.value}:{d.job_id}: no such job"
        ended = state in (JobState.SUCCEEDED, *_NOT_OK)
        if d.kind is DependencyKind.AFTER:
            ok = ended or started(d.job_id)
        elif d.kind is DependencyKind.AFTER_ANY:
            ok = ended
        elif d.kind is DependencyKind.AFTER_OK:
            if state in _NOT_OK:
                return Ready.NEVER, f"dependency afterok:{d.job_id} never holds: job {d.job_id} {state.value}"
            ok = state is JobState.SUCCEEDED
        else:
            if state is JobState.SUCCEEDED:
                return Ready.NEVER, f"dependency afternotok:{d.job_id} never holds: job {d.job_id} succeeded"
            ok = state in _NOT_OK
        if not ok:
            waiting.append(f"{d.kind.value}:{d.job_id}")
    if waiting:
        return Ready.WAIT, "waiting for dependency " + ",".join(waiting)
    return Ready.YES, ""


def format_dependencies(deps: tuple[Dependency, ...]) -> str:
    return ",".join(d.kind.value if not d.job_id else f"{d.kind.value}:{d.job_id}" for d in deps)


@dataclass(frozen=True, slots=True)
class ArraySpec:
    indices: tuple[int, ...]
    max_running: int | None = None  # Slurm's %N


def parse_array(text: str, max_elements: int) -> ArraySpec:
    """``0-999:2%50`` as indices and a throttle. Raises ValueError naming what is accepted."""
    body, _, throttle = text.strip().partition("%")
    max_running = None
    if throttle:
        if not (throttle.isascii() and throttle.isdigit()) or not 1 <= int(throttle) <= max_elements:
            raise ValueError(f"%{throttle}: the most elements running at once must be 1 to {max_elements}")
        max_running = int(throttle)
    indices: list[int] = []
    for part in body.split(","):
        part = part.strip()
        m = re.fullmatch(r"([0-9]{1,8})(?:-([0-9]{1,8})(?::([0-9]{1,8}))?)?", part)
        if m is None:
            raise ValueError(f"{part!r} is not an index, a range A-B or a range with a step A-B:S")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1 or hi > MAX_ARRAY_INDEX:
            raise ValueError(f"{part!r}: indices 0..{MAX_ARRAY_INDEX}, ranges ascending, steps >= 1")
        if len(indices) + (hi - lo) // step + 1 > max_elements:
            raise ValueError(f"more than {max_elements} elements")
        indices.extend(range(lo, hi + 1, step))
    unique = tuple(sorted(set(indices)))
    return ArraySpec(unique, max_running)
