"""What the API does to jobs beyond submitting them, shared by its routers."""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.core.jobs import check_transition
from wanka.server import tables

WAITING_STATES = (JobState.PENDING.value, JobState.HELD.value)  # cancelled at once: nothing runs


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
    now = time.time()
    reason = f"held by {who}"
    held = session.execute(
        update(tables.Job)
        .where(tables.Job.id == job_id, tables.Job.state == JobState.PENDING.value)
        .values(state=JobState.HELD.value, reason=reason, held_by="admin" if by_admin else "user")
    ).rowcount
    if held:
        session.add(tables.JobEvent(job_id=job_id, time=now, state=JobState.HELD.value, reason=reason))
    return bool(held)


def release(session: Session, job_id: int, who: str) -> bool:
    """A held job waits again (from its original submit time: its place is kept)."""
    now = time.time()
    reason = f"released by {who}"
    released = session.execute(
        update(tables.Job)
        .where(tables.Job.id == job_id, tables.Job.state == JobState.HELD.value)
        .values(state=JobState.PENDING.value, reason="", held_by=None)
    ).rowcount
    if released:
        session.add(tables.JobEvent(job_id=job_id, time=now, state=JobState.PENDING.value, reason=reason))
    return bool(released)


def requeue(session: Session, job_id: int, who: str) -> bool:
    """A finished job waits again, as Slurm's ``scontrol requeue`` of a completed batch job: the
    same id, spec and checkpoint directory; its next run is a new run (billed as one). The core's
    state machine ends at a terminal state; this is the control plane starting a new life."""
    now = time.time()
    reason = f"requeued by {who}"
    ended = [s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)]
    requeued = session.execute(
        update(tables.Job)
        .where(tables.Job.id == job_id, tables.Job.state.in_(ended))
        .values(
            state=JobState.PENDING.value,
            reason="",
            end_time=None,
            failures=0,
            cancel_requested=False,
            cancel_reason=None,
            held_by=None,
        )
    ).rowcount
    if requeued:
        session.add(tables.JobEvent(job_id=job_id, time=now, state=JobState.PENDING.value, reason=reason))
    return bool(requeued)


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
