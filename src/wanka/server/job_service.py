"""What the API does to jobs beyond submitting them, shared by its routers."""

from __future__ import annotations

import time

from fastapi import HTTPException
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.core.jobs import TERMINAL_STATES, check_transition
from wanka.server import tables

WAITING_STATES = (JobState.PENDING.value, JobState.HELD.value)  # cancelled at once: nothing runs
# a job with its tenant's and its submitter's names
JOB_ROWS = (
    select(tables.Job, tables.Tenant.name, tables.User.name)
    .join(tables.Tenant, tables.Tenant.id == tables.Job.tenant_id)
    .join(tables.User, tables.User.id == tables.Job.user_id)
)


def job_rows(who, tenant: str | None = None):
    """:data:`JOB_ROWS` the caller may see: a member its own tenant's, an admin everyone's (or
    the ``tenant`` named)."""
    if not who.is_admin:
        if tenant and tenant != who.tenant_name:
            raise HTTPException(403, f"tenant: you act for {who.tenant_name}; only admins name another")
        return JOB_ROWS.where(tables.Job.tenant_id == who.tenant_id)
    return JOB_ROWS.where(tables.Tenant.name == tenant) if tenant else JOB_ROWS


def newest_first(session: Session, q, limit: int, before_id: int | None) -> tuple[list, bool]:
    """One page of ``q``'s rows, newest first, older than ``before_id``; and whether more follow."""
    if before_id:
        q = q.where(tables.Job.id < before_id)
    rows = session.execute(q.order_by(tables.Job.id.desc()).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def request_cancel(session: Session, job_id: int, reason: str) -> bool:
    """Cancel a job in any state (the caller commits, then notifies the loop). A waiting job is
    cancelled here, by compare-and-set; one the control loop admitted meanwhile, or that holds
    cards, is marked, and the loop stops its tasks. True when it was cancelled here."""
    now = time.time()
    check_transition(str(job_id), JobState.PENDING, JobState.CANCELLED)
    cancelled = session.execute(
        update(tables.Job)
        .where(tables.Job.id == job_id, tables.Job.state.in_(WAITING_STATES))
        .values(state=JobState.CANCELLED.value, end_time=now, reason=reason, cancel_requested=True)
    ).rowcount
    if cancelled:
        session.add(tables.JobEvent(job_id=job_id, time=now, state=JobState.CANCELLED.value, reason=reason))
    else:
        session.execute(
            update(tables.Job)
            .where(tables.Job.id == job_id)
            .values(cancel_requested=True, cancel_reason=reason)
        )
    return bool(cancelled)


def hold(session: Session, job_id: int, by_admin: bool, who: str) -> bool:
    """Hold a waiting job (Slurm's ``scontrol hold``): it keeps its place in no queue until
    released. True when held here; False when it is no longer waiting (the loop admitted it)."""
    return bool(hold_where(session, tables.Job.id == job_id, by_admin, who))


def release(session: Session, job_id: int, who: str) -> bool:
    """A held job waits again (from its original submit time: its place is kept)."""
    return bool(release_where(session, tables.Job.id == job_id, who))


def hold_where(session: Session, which, by_admin: bool, who: str) -> list[int]:
    """Hold every pending job ``which`` selects, in two statements whatever their number (a whole
    array: one transaction that stays short). Returns their ids."""
    reason = f"held by {who}"
    values = {"state": JobState.HELD.value, "reason": reason, "held_by": "admin" if by_admin else "user"}
    held = _move(session, which, (JobState.PENDING.value,), values, reason)
    if by_admin:  # a member's hold becomes the operator's, which the member cannot lift (Slurm)
        held += _move(
            session, (which) & (tables.Job.held_by == "user"), (JobState.HELD.value,), values, reason
        )
    return held


def release_where(session: Session, which, who: str) -> list[int]:
    """Release every held job ``which`` selects (the caller checks whose holds they are)."""
    values = {"state": JobState.PENDING.value, "reason": "", "held_by": None}
    return _move(session, which, (JobState.HELD.value,), values, f"released by {who}")


def cancel_where(session: Session, which, reason: str) -> list[int]:
    """:func:`request_cancel` for every unfinished job ``which`` selects, in a few statements:
    waiting ones end here, the others are marked for the loop to stop. Returns their ids."""
    now = time.time()
    values = {"state": JobState.CANCELLED.value, "end_time": now, "reason": reason, "cancel_requested": True}
    ended = _move(session, which, WAITING_STATES, values, reason)
    holding = [s.value for s in JobState if s not in TERMINAL_STATES and s.value not in WAITING_STATES]
    marked = (
        session.execute(
            update(tables.Job)
            .where(which, tables.Job.state.in_(holding))
            .values(cancel_requested=True, cancel_reason=reason)
            .returning(tables.Job.id)
        )
        .scalars()
        .all()
    )
    return [*ended, *marked]


def _move(session: Session, which, states: tuple[str, ...], values: dict, reason: str) -> list[int]:
    """Compare-and-set the state of every job ``which`` selects that is in ``states``, with one
    event each; the ids moved."""
    now = time.time()
    ids = (
        session.execute(
            update(tables.Job)
            .where(which, tables.Job.state.in_(states))
            .values(**values)
            .returning(tables.Job.id)
        )
        .scalars()
        .all()
    )
    if ids:
        session.execute(
            insert(tables.JobEvent),
            [{"job_id": i, "time": now, "state": values["state"], "reason": reason} for i in ids],
        )
    return list(ids)


def move_finished(session: Session, which, queue: str) -> None:
    """Put the finished jobs ``which`` selects in ``queue`` (column and spec), before a requeue;
    the caller checked the queue. One statement for the column, each spec rewritten."""
    finished = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)]
    rows = session.execute(
        select(tables.Job.id, tables.Job.spec).where(which, tables.Job.state.in_(finished))
    ).all()
    for job_id, spec in rows:
        session.execute(
            update(tables.Job)
            .where(tables.Job.id == job_id)
            .values(queue=queue, spec={**spec, "queue": queue})
        )


def requeue(session: Session, job_id: int, who: str) -> bool:
    """A finished job waits again, as Slurm's ``scontrol requeue`` of a completed batch job."""
    return bool(requeue_where(session, tables.Job.id == job_id, who))


def requeue_where(session: Session, which, who: str) -> list[int]:
    """Every finished job ``which`` selects waits again: the same id, spec and checkpoint
    directory; its next run is a new run (billed as one). The core's state machine ends at a
    terminal state; this is the control plane starting a new life. A job an admin held when it
    ended comes back held (cancel and requeue never lift an operator's hold). Returns the ids."""
    ended = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)]
    fresh = {"end_time": None, "failures": 0, "cancel_requested": False, "cancel_reason": None}
    reason = f"requeued by {who}"
    held = _move(
        session,
        (which) & (tables.Job.held_by == "admin"),
        tuple(ended),
        {**fresh, "state": JobState.HELD.value, "reason": f"{reason}; held by an admin"},
        f"{reason}; held by an admin",
    )
    waiting = _move(
        session,
        (which) & (tables.Job.held_by.is_(None) | (tables.Job.held_by != "admin")),
        tuple(ended),
        {**fresh, "state": JobState.PENDING.value, "reason": "", "held_by": None},
        reason,
    )
    return [*held, *waiting]


def update_waiting(session: Session, job_id: int, spec: dict, changes: dict, who: str) -> bool:
    """Change a waiting or held job's spec fields (``changes``: priority_class, time_limit_s), as
    Slurm's ``scontrol update``. False when it is no longer waiting."""
    now = time.time()
    what = ", ".join(f"{k} {v}" for k, v in changes.items())
    changed = session.execute(
        update(tables.Job)
        .where(tables.Job.id == job_id, tables.Job.state.in_(WAITING_STATES))
        .values(spec={**spec, **changes})
    ).rowcount
    if changed:
        state = session.scalar(select(tables.Job.state).where(tables.Job.id == job_id))
        session.add(tables.JobEvent(job_id=job_id, time=now, state=state, reason=f"{what} (by {who})"))
    return bool(changed)
