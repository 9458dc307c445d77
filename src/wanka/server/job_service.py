"""What the API does to jobs beyond submitting them, shared by its routers."""

from __future__ import annotations

import time

from sqlalchemy import update
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
