"""Waiting jobs kept out of the scheduling cycle until they are eligible (``core.eligibility``):
dependencies, job-array throttles (``%N``) and singletons.

The control loop hands each new waiting job with a dependency or a throttle to :class:`Gates`
instead of the pending index; after jobs start or end it asks :meth:`Gates.decide` which of them
may go on, which can never (cancelled, with why) and why the rest still wait (their ``reason``).
The judgement reads the database, so it holds for jobs any server of the database started or ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.core import Job, JobState
from wanka.core.eligibility import Dependency, DependencyKind, Ready, dependency_verdict, parse_dependencies
from wanka.core.jobs import TERMINAL_STATES
from wanka.server import tables

HOLDING = (JobState.ADMITTED.value, JobState.RUNNING.value)
LIVE = [s.value for s in JobState if s not in TERMINAL_STATES]
CHUNK = 500  # ids per IN (...) query


@dataclass(frozen=True, slots=True)
class Rule:
    deps: tuple[Dependency, ...]
    array_job_id: int | None
    max_running: int | None
    name: str
    user_id: int


def rule_of(spec: dict, array_job_id: int | None, max_running: int | None, user_id: int) -> Rule | None:
    """What keeps a stored job out of the cycle, or None when nothing does."""
    deps = parse_dependencies(spec["dependency"]) if spec.get("dependency") else ()
    if not deps and not max_running:
        return None
    return Rule(deps, array_job_id, max_running, spec.get("name", ""), user_id)


def _chunks(ids: list[int]):
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _aggregate(counts: dict[str, int]) -> JobState:
    """An array's state as its dependents see it: ended when every element has; then succeeded
    when all did, failed when any failed, else cancelled (Slurm: a dependency on an array is on
    all of its elements)."""
    if any(s not in (x.value for x in TERMINAL_STATES) for s in counts):
        return JobState.RUNNING if JobState.RUNNING.value in counts else JobState.PENDING
    if set(counts) == {JobState.SUCCEEDED.value}:
        return JobState.SUCCEEDED
    return JobState.FAILED if JobState.FAILED.value in counts else JobState.CANCELLED


class Gates:
    def __init__(self) -> None:
        self.blocked: dict[str, Job] = {}
        self.rules: dict[str, Rule] = {}
        self.reasons: dict[str, str] = {}
        self.released: dict[int, set[str]] = {}  # array id -> elements let into the pending index
        self.dirty = False

    def __len__(self) -> int:
        return len(self.blocked)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.blocked

    def hold_back(self, job: Job, rule: Rule) -> None:
        self.blocked[job.id] = job
        self.rules[job.id] = rule
        self.dirty = True

    def discard(self, job_id: str) -> None:
        self.blocked.pop(job_id, None)
        self.rules.pop(job_id, None)
        self.reasons.pop(job_id, None)

    def decide(
        self, session: Session, in_pending: Callable[[str], bool]
    ) -> tuple[list[Job], list[tuple[str, str]], dict[str, str]]:
        """(jobs that may wait in the pending index now, (id, why) of jobs whose dependencies can
        never hold, ids whose reason changed -> the new reason)."""
        if not self.dirty or not self.blocked:
            return [], [], {}
        self.dirty = False
        states, started = self._named_states(session)
        running = self._array_running(session, in_pending)
        first_of = self._singletons(session)
        ready: list[Job] = []
        never: list[tuple[str, str]] = []
        reasons: dict[str, str] = {}
        for job_id in sorted(self.blocked, key=int):
            rule = self.rules[job_id]
            key = (rule.name, rule.user_id)
            verdict, why = dependency_verdict(
                rule.deps,
                lambda i: states.get(int(i)),
                lambda i: int(i) in started,
                singleton_clear=first_of.get(key, int(job_id)) >= int(job_id),
            )
            if verdict is Ready.NEVER:
                never.append((job_id, why))
                self.discard(job_id)
                continue
            if verdict is Ready.YES and rule.max_running:
                let_in = self.released.setdefault(rule.array_job_id, set())
                busy = running.get(rule.array_job_id, 0) + len(let_in)
                if busy >= rule.max_running:
                    n = rule.max_running
                    verdict, why = Ready.WAIT, f"array throttle: {n} element{'s' * (n != 1)} at once"
                else:
                    let_in.add(job_id)
            if verdict is Ready.YES:
                ready.append(self.blocked[job_id])
                self.discard(job_id)
            elif self.reasons.get(job_id) != why:
                self.reasons[job_id] = reasons[job_id] = why
        return ready, never, reasons

    def _named_states(self, session: Session) -> tuple[dict[int, JobState], set[int]]:
        """The state of every job a dependency names (an array by its id: all its elements), and
        which of them have ever started."""
        named = sorted({int(d.job_id) for r in self.rules.values() for d in r.deps if d.job_id})
        states: dict[int, JobState] = {}
        started: set[int] = set()
        arrays: dict[int, dict[str, int]] = {}
        for ids in _chunks(named):
            rows = session.execute(
                select(tables.Job.id, tables.Job.state, tables.Job.runs).where(tables.Job.id.in_(ids))
            )
            for job_id, state, runs in rows:
                states[job_id] = JobState(state)
                if runs:
                    started.add(job_id)
            elements = session.execute(
                select(tables.Job.array_job_id, tables.Job.state, func.count(), func.max(tables.Job.runs))
                .where(tables.Job.array_job_id.in_(ids))
                .group_by(tables.Job.array_job_id, tables.Job.state)
            )
            for array_job_id, state, n, runs in elements:
                arrays.setdefault(array_job_id, {})[state] = n
                if runs:
                    started.add(array_job_id)
        for array_job_id, counts in arrays.items():
            states[array_job_id] = _aggregate(counts)
        return states, started

    def _array_running(self, session: Session, in_pending: Callable[[str], bool]) -> dict[int, int]:
        """Elements holding cards per throttled array; forgets released elements that have left
        the pending index (started: now counted as holding; or cancelled)."""
        arrays = sorted({r.array_job_id for r in self.rules.values() if r.max_running and r.array_job_id})
        for let_in in self.released.values():
            let_in.intersection_update({j for j in let_in if in_pending(j)})
        out: dict[int, int] = {}
        for ids in _chunks(arrays):
            rows = session.execute(
                select(tables.Job.array_job_id, func.count())
                .where(tables.Job.array_job_id.in_(ids), tables.Job.state.in_(HOLDING))
                .group_by(tables.Job.array_job_id)
            )
            out.update({a: n for a, n in rows})
        return out

    def _singletons(self, session: Session) -> dict[tuple[str, int], int]:
        """(name, user) -> the earliest live job of that name and user, for singleton rules."""
        keys = {
            (r.name, r.user_id)
            for r in self.rules.values()
            if any(d.kind is DependencyKind.SINGLETON for d in r.deps)
        }
        if not keys:
            return {}
        names = sorted({name for name, _ in keys})
        rows = session.execute(
            select(tables.Job.name, tables.Job.user_id, func.min(tables.Job.id))
            .where(tables.Job.name.in_(names), tables.Job.state.in_(LIVE))
            .group_by(tables.Job.name, tables.Job.user_id)
        )
        return {(name, user): first for name, user, first in rows if (name, user) in keys}
