"""Jobs over the API: submit, list, show, events, cancel, logs. The routes authenticate, check
the tenant and call the database; the control loop schedules."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from wanka.core import PRIORITY_CLASSES, JobState
from wanka.core.jobs import TERMINAL_STATES
from wanka.models.bounds import exec_bytes
from wanka.models.job import JobSpec
from wanka.server import tables
from wanka.server.auth import Principal
from wanka.server.job_service import WAITING_STATES, request_cancel
from wanka.server.params import ID, MAX_ID
from wanka.server.trees import tenant_queues

if TYPE_CHECKING:
    from wanka.server.app import AppState
    from wanka.server.loop import ControlLoop

PAGE_BYTES = 4 * 1024 * 1024  # argv and environment in one page of the job list, at most
INSERT_JOB = insert(tables.Job).returning(tables.Job.id)
INSERT_EVENT = insert(tables.JobEvent)
# a job with its tenant's and its submitter's names
_JOB_ROWS = (
    select(tables.Job, tables.Tenant.name, tables.User.name)
    .join(tables.Tenant, tables.Tenant.id == tables.Job.tenant_id)
    .join(tables.User, tables.User.id == tables.Job.user_id)
)


class JobOut(BaseModel):
    id: int
    tenant: str
    user: str = Field(description="who submitted it")
    queue: str
    name: str
    state: str
    reason: str
    cards: int
    submit_time: float
    start_time: float | None
    end_time: float | None
    runs: int = Field(description="times it was started (restarts included)")
    queue_position: int | None = Field(
        default=None, description="place in the scheduling order while it waits (1 = next)"
    )
    estimated_start: float | None = Field(
        default=None, description="when it should start at the latest (the backfill reservation)"
    )
    nodes: list[str] = Field(default=[], description="the nodes of its current or last run")
    spec: dict


class LogChunk(BaseModel):
    job: int
    run: int
    task: int
    offset: int = Field(description="byte offset of data in the task's log")
    next_offset: int = Field(description="pass as offset to read on")
    data: str
    finished: bool = Field(description="the job has ended: no more output will come")


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page")


class EventOut(BaseModel):
    time: float
    state: str
    reason: str


def router(state: AppState, db, principal) -> APIRouter:
    api = APIRouter()

    # --- jobs --------------------------------------------------------------------------------

    @api.post("/v1/jobs", response_model=JobOut, status_code=201)
    async def submit(spec: JobSpec, who: Principal = Depends(principal), session: Session = Depends(db)):
        if not spec.command:
            raise HTTPException(
                422,
                [{"field": "command", "message": "give the argv every task runs, e.g. [python, train.py]"}],
            )
        tasks = sum(g.replicas for g in spec.task_groups)
        most = min(state.limits.max_tasks_per_job, state.limits.max_running_tasks_per_tenant)
        if tasks > most:
            raise HTTPException(
                422,
                [
                    {
                        "field": "task_groups[*].replicas",
                        "message": f"{tasks} tasks in all; this server runs at most {most} tasks per "
                        "job (--max-tasks-per-job, --max-running-tasks-per-tenant)",
                    }
                ],
            )
        tenant_id, tenant = _acting_tenant(session, who, spec.tenant)
        waiting = session.scalar(
            select(func.count())
            .select_from(tables.Job)
            .where(tables.Job.tenant_id == tenant_id, tables.Job.state.in_(WAITING_STATES))
        )
        if waiting >= state.limits.max_waiting_jobs_per_tenant:
            raise HTTPException(
                429,
                f"{tenant} has {waiting} jobs waiting, the most this server keeps per tenant "
                "(--max-waiting-jobs-per-tenant); cancel some or wait for them to start",
            )
        queue = tenant if spec.queue == "default" else spec.queue
        spec = spec.model_copy(update={"tenant": tenant, "queue": queue})
        tree = state.trees.get(session)
        if queue not in tenant_queues(tree, tenant):
            allowed = ", ".join(sorted(tenant_queues(tree, tenant))) or "none"
            raise HTTPException(422, f"queue: {queue!r} is not a queue of {tenant}; yours: {allowed}")
        if not who.is_admin:
            granted = state.trees.priority_classes(session, queue)
            never_preempted = spec.preemptible is False and PRIORITY_CLASSES[spec.priority_class].preemptible
            if never_preempted and "critical" not in granted:
                raise HTTPException(
                    403,
                    [
                        {
                            "field": "preemptible",
                            "message": "a job that is never preempted holds what it has like a critical "
                            f"one; queue {queue!r} is not granted critical (leave preemptible out)",
                        }
                    ],
                )
            if spec.priority_class not in granted:
                raise HTTPException(
                    403,
                    [
                        {
                            "field": "priority_class",
                            "message": f"{spec.priority_class!r} is not granted to queue {queue!r}; "
                            f"granted: {', '.join(c for c in PRIORITY_CLASSES if c in granted)} "
                            "(an admin grants classes in the quota document)",
                        }
                    ],
                )
        core_job = spec.to_job("0")
        verdict = state.trees.feasibility(session, core_job)
        if not verdict.ok:
            raise HTTPException(422, f"task_groups: can never run here: {verdict.reason}")
        now = time.time()
        row = {
            "tenant_id": tenant_id,
            "user_id": who.user_id,
            "queue": queue,
            "name": spec.name,
            "spec": spec.model_dump(mode="json"),
            "state": JobState.PENDING.value,
            "reason": "",
            "cards": core_job.total_cards,
            "submit_time": now,
            "runs": 0,
            "failures": 0,
            "cancel_requested": False,
        }
        # Core statements on the session's connection: a third of the ORM's cost per submission
        conn = session.connection()
        job_id = conn.execute(INSERT_JOB, row).scalar_one()
        conn.execute(
            INSERT_EVENT, {"job_id": job_id, "time": now, "state": row["state"], "reason": "submitted"}
        )
        session.commit()
        state.loop.notify("submitted", job_id)
        return JobOut(
            id=job_id,
            tenant=tenant,
            user=who.name,
            queue=queue,
            name=spec.name,
            state=row["state"],
            reason="",
            cards=row["cards"],
            submit_time=now,
            start_time=None,
            end_time=None,
            runs=0,
            spec=row["spec"],
        )

    @api.get("/v1/jobs", response_model=JobPage)
    def list_jobs(
        state_: str | None = Query(
            None, alias="state", pattern="^(" + "|".join(s.value for s in JobState) + ")$"
        ),
        queue: str | None = None,
        tenant: str | None = Query(None, description="admins: only this tenant's jobs"),
        limit: int = Query(50, ge=1, le=1000),
        before_id: int | None = Query(None, ge=1, le=MAX_ID),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        q = _JOB_ROWS
        if not who.is_admin:
            q = q.where(tables.Job.tenant_id == who.tenant_id)
        elif tenant:
            q = q.where(tables.Tenant.name == tenant)
        if state_:
            q = q.where(tables.Job.state == state_)
        if queue:
            q = q.where(tables.Job.queue == queue)
        if before_id:
            q = q.where(tables.Job.id < before_id)
        rows = session.execute(q.order_by(tables.Job.id.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        size = 0  # a page ends early past PAGE_BYTES of argv and environment: bounded replies
        for i, (j, _, _) in enumerate(rows):
            size += exec_bytes(j.spec.get("command") or [], j.spec.get("env") or {})
            if size > PAGE_BYTES and i:
                rows, more = rows[:i], True
                break
        return JobPage(
            jobs=[_job_out(j, t, u, state.loop) for j, t, u in rows],
            next_before_id=rows[-1][0].id if more else None,
        )

    @api.get("/v1/jobs/{job_id}", response_model=JobOut)
    async def get_job(job_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        return _job_out(*_visible_job(session, who, job_id), state.loop)

    @api.get("/v1/jobs/{job_id}/events", response_model=list[EventOut])
    def job_events(job_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        _visible_job(session, who, job_id)
        q = select(tables.JobEvent).where(tables.JobEvent.job_id == job_id).order_by(tables.JobEvent.id)
        return [EventOut(time=e.time, state=e.state, reason=e.reason) for e in session.scalars(q)]

    @api.post("/v1/jobs/{job_id}/cancel", response_model=JobOut)
    def cancel(job_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        job, tenant, user = _visible_job(session, who, job_id)
        if JobState(job.state) in TERMINAL_STATES:
            raise HTTPException(409, f"job {job_id} is already {job.state}")
        request_cancel(session, job_id, f"cancelled by {who.name}")
        session.commit()
        state.loop.notify("cancelled", job_id)
        session.refresh(job)
        return _job_out(job, tenant, user, state.loop)

    @api.get("/v1/jobs/{job_id}/logs", response_model=LogChunk)
    def logs(
        job_id: ID,
        task: int = Query(0, ge=0, le=1_000_000, description="task index (RANK)"),
        run: int | None = Query(None, ge=1, le=1_000_000, description="which run; default the latest"),
        offset: int = Query(0, ge=0, le=MAX_ID, description="byte offset to read from"),
        limit: int = Query(65536, ge=1, le=1 << 20),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """A task's stdout and stderr, from ``offset``. Poll with ``next_offset`` to follow."""
        job, _, _ = _visible_job(session, who, job_id)
        if job.runs == 0:
            raise HTTPException(409, f"job {job_id} has not started yet; it has no output")
        run = run or job.runs
        if run > job.runs:
            raise HTTPException(404, f"job {job_id} has run {job.runs} time(s); no run {run}")
        tasks = sum(len(g["nodes"]) for g in job.placement["groups"]) if job.placement else 1
        if task >= tasks:
            raise HTTPException(404, f"job {job_id} has {tasks} task(s): 0 to {tasks - 1}")
        try:
            data, nxt = state.loop.backend.logs(job_id, run, task, offset, limit)
        except PermissionError as exc:  # the task tampered with its log (a link in its place)
            raise HTTPException(403, f"job {job_id} task {task}: {exc}") from None
        return LogChunk(
            job=job_id,
            run=run,
            task=task,
            offset=offset,
            next_offset=nxt,
            data=data.decode("utf-8", errors="replace"),
            finished=JobState(job.state) in TERMINAL_STATES,
        )

    return api


def _job_out(j: tables.Job, tenant: str, user: str, loop: ControlLoop | None = None) -> JobOut:
    waiting = loop is not None and j.state == JobState.PENDING.value
    return JobOut(
        runs=j.runs or 0,
        queue_position=loop.positions.get(j.id) if waiting else None,
        estimated_start=loop.estimates.get(j.id) if waiting else None,
        id=j.id,
        tenant=tenant,
        user=user,
        nodes=sorted({n for g in j.placement["groups"] for n in g["nodes"]}) if j.placement else [],
        queue=j.queue,
        name=j.name,
        state=j.state,
        reason=j.reason,
        cards=j.cards,
        submit_time=j.submit_time,
        start_time=j.start_time,
        end_time=j.end_time,
        spec=j.spec,
    )


def _acting_tenant(session: Session, who: Principal, named: str) -> tuple[int, str]:
    """(id, name) of the tenant the request acts for. Members act for their own tenant, whatever
    the spec says (known from the token, no query); admins name one."""
    if not who.is_admin:
        if named not in ("default", who.tenant_name):
            raise HTTPException(403, f"tenant: you act for {who.tenant_name}, not {named!r}")
        return who.tenant_id, who.tenant_name
    row = session.execute(
        select(tables.Tenant.id, tables.Tenant.name, tables.Tenant.disabled_at).where(
            tables.Tenant.name == named
        )
    ).first()
    if row is None:
        raise HTTPException(422, f"tenant: no tenant {named!r}; an admin submits for a named tenant")
    if row.disabled_at is not None:
        raise HTTPException(403, f"tenant: {named} is disabled; enable it first")
    return row.id, row.name


def _visible_job(session: Session, who: Principal, job_id: int, lock: bool = False):
    """The job and its tenant's name, or 404 — also for another tenant's job, so ids reveal nothing."""
    q = _JOB_ROWS.where(tables.Job.id == job_id)
    if lock:
        q = q.with_for_update()
    row = session.execute(q).first()
    if row is None or (not who.is_admin and row[0].tenant_id != who.tenant_id):
        raise HTTPException(404, f"no job {job_id}")
    return row[0], row[1], row[2]
