"""Jobs over the API: submit, list, show, events, cancel, logs. The routes authenticate, check
the tenant and call the database; the control loop schedules."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wanka.core import PRIORITY_CLASSES, JobState
from wanka.core.eligibility import parse_array, parse_dependencies
from wanka.core.jobs import TERMINAL_STATES
from wanka.models.bounds import MAX_ARRAY_ELEMENTS, MAX_SECONDS, exec_bytes
from wanka.models.errors import describe
from wanka.models.job import JobSpec
from wanka.server import job_service, tables
from wanka.server.auth import Principal
from wanka.server.job_service import JOB_ROWS, WAITING_STATES, job_rows, newest_first, request_cancel
from wanka.server.params import ID, MAX_ID
from wanka.server.trees import default_queue, tenant_queues

if TYPE_CHECKING:
    from wanka.server.app import AppState
    from wanka.server.loop import ControlLoop

WHOLE_ARRAY = Query(False, description="every element of the job array whose id this is")
PAGE_BYTES = 4 * 1024 * 1024  # argv and environment in one page of the job list, at most
INSERT_JOB = insert(tables.Job).returning(tables.Job.id)
INSERT_EVENT = insert(tables.JobEvent)
INSERT_JOBS = insert(tables.Job).returning(tables.Job.id, sort_by_parameter_order=True)


class JobOut(BaseModel):
    id: int
    tenant: str
    user: str = Field(description="who submitted it")
    queue: str
    name: str
    state: str
    reason: str = Field(
        description="why it is in its state; for a waiting job, why it has not started as of the "
        "last cycle: waiting for quota, for cards, or behind jobs ahead of it (Slurm's Reason)"
    )
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
    array_job_id: int | None = Field(default=None, description="the job array it is an element of")
    array_index: int | None = None
    array_elements: int | None = Field(default=None, description="on submission: the array's size")
    spec: dict


class LogChunk(BaseModel):
    job: int
    run: int
    task: int
    offset: int = Field(description="byte offset of data in the task's log")
    next_offset: int = Field(description="pass as offset to read on")
    data: str
    finished: bool = Field(description="the job has ended: no more output will come")


class JobUpdate(BaseModel):
    """What may change while a job waits (Slurm's ``scontrol update``); the rest is the spec."""

    model_config = ConfigDict(extra="forbid")
    priority_class: str | None = Field(default=None, max_length=32)
    time_limit_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS, description="seconds")


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
    async def submit(
        spec: JobSpec,
        response: Response,
        idempotency_key: str | None = Header(
            None,
            alias="Idempotency-Key",
            min_length=1,
            max_length=128,
            pattern=r"^[\x21-\x7e]+$",
            description="a retry with the same key returns the job the first request made",
        ),
        hold: bool = Query(False, description="submit it held (sbatch -H): it waits until released"),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        return create_job(state, session, who, spec, response, idempotency_key, hold)

    @api.get("/v1/jobs", response_model=JobPage)
    def list_jobs(
        state_: str | None = Query(
            None, alias="state", pattern="^(" + "|".join(s.value for s in JobState) + ")$"
        ),
        queue: str | None = None,
        array: int | None = Query(None, ge=1, le=MAX_ID, description="only the elements of this job array"),
        tenant: str | None = Query(None, description="admins: only this tenant's jobs"),
        limit: int = Query(50, ge=1, le=1000),
        before_id: int | None = Query(None, ge=1, le=MAX_ID),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        q = job_rows(who, tenant)
        if state_:
            q = q.where(tables.Job.state == state_)
        if queue:
            q = q.where(tables.Job.queue == queue)
        if array:
            q = q.where(tables.Job.array_job_id == array)
        rows, more = newest_first(session, q, limit, before_id)
        size = 0  # a page ends early past PAGE_BYTES of argv and environment: bounded replies
        for i, (j, _, _) in enumerate(rows):
            size += exec_bytes(j.spec.get("command") or [], j.spec.get("env") or {})
            if size > PAGE_BYTES and i:
                rows, more = rows[:i], True
                break
        return JobPage(
            jobs=[job_out(j, t, u, state.loop) for j, t, u in rows],
            next_before_id=rows[-1][0].id if more else None,
        )

    @api.get("/v1/jobs/{job_id}", response_model=JobOut)
    async def get_job(job_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        return job_out(*visible_job(session, who, job_id), state.loop)

    @api.get("/v1/jobs/{job_id}/events", response_model=list[EventOut])
    def job_events(job_id: ID, who: Principal = Depends(principal), session: Session = Depends(db)):
        visible_job(session, who, job_id)
        q = select(tables.JobEvent).where(tables.JobEvent.job_id == job_id).order_by(tables.JobEvent.id)
        return [EventOut(time=e.time, state=e.state, reason=e.reason) for e in session.scalars(q)]

    @api.post("/v1/jobs/{job_id}/cancel", response_model=JobOut)
    def cancel(
        job_id: ID,
        array: bool = WHOLE_ARRAY,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Cancel the job (with ``array``: every unfinished element of the array with this id)."""
        job, tenant, user = visible_job(session, who, job_id)
        if array:
            ids = job_service.cancel_where(session, _array_of(job), f"cancelled by {who.name}")
            commit_and_tell(state, session, "cancelled", ids)
            session.refresh(job)
            return job_out(job, tenant, user, state.loop)
        cancel_job(state, session, who, job)
        session.refresh(job)
        return job_out(job, tenant, user, state.loop)

    @api.post("/v1/jobs/{job_id}/hold", response_model=JobOut)
    def hold(
        job_id: ID,
        array: bool = WHOLE_ARRAY,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Keep a waiting job from starting until it is released (Slurm's ``scontrol hold``); with
        ``array``, every waiting element of the array with this id."""
        job, _, _ = visible_job(session, who, job_id)
        if array:
            ids = job_service.hold_where(session, _array_of(job), who.is_admin, who.name)
            commit_and_tell(state, session, "withdrawn", ids)
            return job_out(*visible_job(session, who, job_id), state.loop)
        hold_job(state, session, who, job)
        return job_out(*visible_job(session, who, job_id), state.loop)

    @api.post("/v1/jobs/{job_id}/release", response_model=JobOut)
    def release(
        job_id: ID,
        array: bool = WHOLE_ARRAY,
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """A held job waits again, in its old place (with ``array``: every held element). A member
        cannot release an admin's hold."""
        job, _, _ = visible_job(session, who, job_id)
        if array:
            which = _array_of(job)
            admin_held = session.scalar(
                select(func.count())
                .select_from(tables.Job)
                .where(which, tables.Job.state == JobState.HELD.value, tables.Job.held_by == "admin")
            )
            if admin_held and not who.is_admin:
                raise HTTPException(403, f"{admin_held} element(s) of array {job_id} are held by an admin")
            ids = job_service.release_where(session, which, who.name)
            commit_and_tell(state, session, "submitted", ids)
            return job_out(*visible_job(session, who, job_id), state.loop)
        release_job(state, session, who, job)
        return job_out(*visible_job(session, who, job_id), state.loop)

    @api.post("/v1/jobs/{job_id}/requeue", response_model=JobOut)
    def requeue(
        job_id: ID,
        array: bool = WHOLE_ARRAY,
        queue: str | None = Query(
            None,
            max_length=64,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            description="wait in this queue of the tenant's instead (its old one may be gone)",
        ),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """A finished job (succeeded, failed or cancelled) waits again: same id, spec and
        checkpoints, a new run (Slurm's ``scontrol requeue``); with ``array``, every finished
        element of the array with this id. ``queue`` moves it (as ``scontrol update
        partition=``), checked as a submission to that queue would be."""
        job, tenant, _ = visible_job(session, who, job_id)
        which = _array_of(job) if array else tables.Job.id == job_id
        finished = session.scalar(
            select(func.count())
            .select_from(tables.Job)
            .where(which, tables.Job.state.in_([s.value for s in TERMINAL_STATES]))
        )
        if not finished:
            raise HTTPException(409, f"job {job_id} is {job.state}; only a finished job can be requeued")
        disabled = session.scalar(select(tables.Tenant.disabled_at).where(tables.Tenant.id == job.tenant_id))
        if disabled is not None:
            raise HTTPException(403, f"tenant {tenant} is disabled")
        # waiting again is a submission again: the waiting cap, the queue, the classes granted now
        spec = JobSpec.model_validate({**job.spec, **({"queue": queue} if queue else {})})
        _admissible(state, session, who, spec, job.tenant_id, finished)
        if queue:
            job_service.move_finished(session, which, queue)
        ids = job_service.requeue_where(session, which, who.name)
        if not ids:
            raise HTTPException(409, f"job {job_id} changed meanwhile; look again")
        commit_and_tell(state, session, "submitted", ids)
        return job_out(*visible_job(session, who, job_id), state.loop)

    @api.patch("/v1/jobs/{job_id}", response_model=JobOut)
    def update_job(
        job_id: ID, changes: JobUpdate, who: Principal = Depends(principal), session: Session = Depends(db)
    ):
        """Change a waiting or held job's priority class or time limit."""
        job, _, _ = visible_job(session, who, job_id)
        given = changes.model_dump(exclude_none=True)
        if not given:
            raise HTTPException(422, [{"field": "(body)", "message": "give priority_class or time_limit_s"}])
        if JobState(job.state) not in (JobState.PENDING, JobState.HELD):
            raise HTTPException(409, f"job {job_id} is {job.state}; only a waiting job can be changed")
        try:
            spec = JobSpec.model_validate({**job.spec, **given})
        except ValidationError as exc:
            problems = describe(exc.errors(), model=JobSpec)
            raise HTTPException(422, [{"field": f, "message": m} for f, m in problems]) from None
        if not who.is_admin:
            _check_granted(state, session, job.queue, spec.priority_class, spec.preemptible)
        verdict = state.trees.feasibility(session, spec.to_job("0"))
        if not verdict.ok:
            raise HTTPException(422, [{"field": "time_limit_s", "message": verdict.reason}])
        if not job_service.update_waiting(session, job_id, job.spec, given, who.name):
            raise HTTPException(409, f"job {job_id} is no longer waiting")
        commit_and_tell(state, session, "updated", [job_id])
        return job_out(*visible_job(session, who, job_id), state.loop)

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
        job, _, _ = visible_job(session, who, job_id)
        return task_log(state, job, task, run, offset, limit)

    return api


def resolve_spec(
    state: AppState, session: Session, who: Principal, spec: JobSpec
) -> tuple[JobSpec, int, str]:
    """The spec with its tenant (a member's own) and queue (``default``: the tenant's) filled in,
    and the tenant's id and name. 422 without a command or past the server's tasks per job."""
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
    queue = default_queue(state.trees.get(session), tenant) if spec.queue == "default" else spec.queue
    return spec.model_copy(update={"tenant": tenant, "queue": queue}), tenant_id, tenant


def admit_spec(state: AppState, session: Session, who: Principal, spec: JobSpec, tenant_id: int):
    """Every check a resolved spec passes before it may wait (stores nothing): its array, the
    tenant's waiting cap, its queue and class, whether it can ever run here, its dependencies.
    Returns the parsed array (or None) and the core job."""
    elements = parse_array(spec.array, MAX_ARRAY_ELEMENTS) if spec.array else None
    core_job = _admissible(state, session, who, spec, tenant_id, len(elements.indices) if elements else 1)
    if spec.dependency:
        _check_dependencies(session, tenant_id, spec.dependency)
    return elements, core_job


def create_job(
    state: AppState,
    session: Session,
    who: Principal,
    spec: JobSpec,
    response: Response,
    idempotency_key: str | None = None,
    hold: bool = False,
) -> JobOut:
    """Store a submitted job (an array: one per element) after every admission check, and wake
    the loop. 422 naming the field for a spec that can never run here, 403 for a class the queue
    is not granted, 429 past the tenant's cap. A retry with the same ``idempotency_key`` returns
    the first job (``response`` then says 200, replayed)."""
    spec, tenant_id, tenant = resolve_spec(state, session, who, spec)
    body = spec.model_dump(mode="json")
    if idempotency_key is not None:
        earlier = _submitted_as(session, tenant_id, idempotency_key)
        if earlier is not None:
            return _replayed(earlier, body, idempotency_key, response)
    elements, core_job = admit_spec(state, session, who, spec, tenant_id)
    queue = spec.queue
    now = time.time()
    row = {
        "tenant_id": tenant_id,
        "user_id": who.user_id,
        "queue": queue,
        "name": spec.name,
        "spec": body,
        "idempotency_key": idempotency_key,
        "state": (JobState.HELD if hold else JobState.PENDING).value,
        "reason": f"held by {who.name}" if hold else "",
        "held_by": ("admin" if who.is_admin else "user") if hold else None,
        "cards": core_job.total_cards,
        "submit_time": now,
        "runs": 0,
        "failures": 0,
        "cancel_requested": False,
        "array_index": elements.indices[0] if elements else None,
        "array_max_running": elements.max_running if elements else None,
    }
    # Core statements on the session's connection: a third of the ORM's cost per submission
    conn = session.connection()
    try:
        job_id = conn.execute(INSERT_JOB, row).scalar_one()
    except IntegrityError:  # the same key, submitted at the same moment: that job wins
        session.rollback()
        earlier = _submitted_as(session, tenant_id, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _replayed(earlier, body, idempotency_key, response)
    ids = [job_id]
    if elements:  # one job per index; the array's id is its first element's (Slurm's ArrayJobID)
        conn.execute(update(tables.Job).where(tables.Job.id == job_id).values(array_job_id=job_id))
        rest = [
            {**row, "idempotency_key": None, "array_job_id": job_id, "array_index": i}
            for i in elements.indices[1:]
        ]
        if rest:
            ids += conn.execute(INSERT_JOBS, rest).scalars().all()
    conn.execute(
        INSERT_EVENT,
        [{"job_id": i, "time": now, "state": row["state"], "reason": "submitted"} for i in ids],
    )
    session.commit()
    state.loop.notify("submitted", job_id)  # the loop takes in every id above the last it knew
    return JobOut(
        id=job_id,
        tenant=tenant,
        user=who.name,
        queue=queue,
        name=spec.name,
        state=row["state"],
        reason=row["reason"],
        cards=row["cards"],
        submit_time=now,
        start_time=None,
        end_time=None,
        runs=0,
        spec=row["spec"],
        array_job_id=job_id if elements else None,
        array_index=row["array_index"],
        array_elements=len(ids) if elements else None,
    )


def task_log(
    state: AppState, job: tables.Job, task: int, run: int | None, offset: int, limit: int
) -> LogChunk:
    """Up to ``limit`` bytes of task ``task``'s log of run ``run`` (default the latest) from
    ``offset``. 409 before the job ever started; 404 for a run or task it does not have; 403 when
    the task put a link in its log's place."""
    if job.runs == 0:
        raise HTTPException(409, f"job {job.id} has not started yet; it has no output")
    run = run or job.runs
    if run > job.runs:
        raise HTTPException(404, f"job {job.id} has run {job.runs} time(s); no run {run}")
    tasks = sum(len(g["nodes"]) for g in job.placement["groups"]) if job.placement else 1
    if task >= tasks:
        raise HTTPException(404, f"job {job.id} has {tasks} task(s): 0 to {tasks - 1}")
    try:
        data, nxt = state.loop.backend.logs(job.id, run, task, offset, limit)
    except PermissionError as exc:  # the task tampered with its log (a link in its place)
        raise HTTPException(403, f"job {job.id} task {task}: {exc}") from None
    return LogChunk(
        job=job.id,
        run=run,
        task=task,
        offset=offset,
        next_offset=nxt,
        data=data.decode("utf-8", errors="replace"),
        finished=JobState(job.state) in TERMINAL_STATES,
    )


def job_out(j: tables.Job, tenant: str, user: str, loop: ControlLoop | None = None) -> JobOut:
    waiting = loop is not None and j.state == JobState.PENDING.value
    return JobOut(
        runs=j.runs or 0,
        queue_position=loop.positions.get(j.id) if waiting else None,
        estimated_start=loop.estimates.get(j.id) if waiting else None,
        id=j.id,
        tenant=tenant,
        user=user,
        nodes=sorted({n for g in j.placement["groups"] for n in g["nodes"]}) if j.placement else [],
        array_job_id=j.array_job_id,
        array_index=j.array_index,
        queue=j.queue,
        name=j.name,
        state=j.state,
        reason=(loop.waiting_reason(j.id, j.queue, j.submit_time) if waiting else None) or j.reason,
        cards=j.cards,
        submit_time=j.submit_time,
        start_time=j.start_time,
        end_time=j.end_time,
        spec=j.spec,
    )


def cancel_job(state: AppState, session: Session, who: Principal, job: tables.Job) -> None:
    """Cancel one job the caller may see (409 when it already ended); the loop stops its tasks."""
    if JobState(job.state) in TERMINAL_STATES:
        raise HTTPException(409, f"job {job.id} is already {job.state}")
    request_cancel(session, job.id, f"cancelled by {who.name}")
    commit_and_tell(state, session, "cancelled", [job.id])


def hold_job(state: AppState, session: Session, who: Principal, job: tables.Job) -> None:
    """Hold one waiting job (409 when it no longer waits); an admin's hold a member cannot lift."""
    if not job_service.hold(session, job.id, who.is_admin, who.name):
        raise HTTPException(409, f"job {job.id} is not waiting; only a waiting job can be held")
    commit_and_tell(state, session, "withdrawn", [job.id])


def release_job(state: AppState, session: Session, who: Principal, job: tables.Job) -> None:
    """Release one held job to wait in its old place (403 for a member and an admin's hold)."""
    if job.held_by == "admin" and not who.is_admin:
        raise HTTPException(403, f"job {job.id} is held by an admin; an admin releases it")
    if not job_service.release(session, job.id, who.name):
        raise HTTPException(409, f"job {job.id} is not held")
    commit_and_tell(state, session, "submitted", [job.id])


def commit_and_tell(state: AppState, session: Session, kind: str, ids) -> None:
    """Commit, then tell the control loop what changed for each job (never before the commit:
    the loop reads the database)."""
    session.commit()
    for job_id in ids:
        state.loop.notify(kind, job_id)


def _admissible(state: AppState, session: Session, who: Principal, spec: JobSpec, tenant_id: int, count: int):
    """The checks every job passes before it may wait (submitted, or requeued): the tenant's
    waiting cap (``count`` jobs more), a leaf queue of its own, the priority classes granted there
    (members), and that it could ever run. Returns the core's view of it."""
    tenant, queue = spec.tenant, spec.queue
    waiting = session.scalar(
        select(func.count())
        .select_from(tables.Job)
        .where(tables.Job.tenant_id == tenant_id, tables.Job.state.in_(WAITING_STATES))
    )
    if waiting + count > state.limits.max_waiting_jobs_per_tenant:
        adding = f"; this adds {count}" if count > 1 else ""
        raise HTTPException(
            429,
            f"{tenant} has {waiting} jobs waiting{adding}, and this server keeps at most "
            f"{state.limits.max_waiting_jobs_per_tenant} per tenant (--max-waiting-jobs-per-tenant); "
            "cancel some or wait for them to start",
        )
    tree = state.trees.get(session)
    if queue not in tenant_queues(tree, tenant):
        allowed = ", ".join(sorted(tenant_queues(tree, tenant))) or "none"
        raise HTTPException(422, f"queue: {queue!r} is not a queue of {tenant}; yours: {allowed}")
    if not who.is_admin:
        _check_granted(state, session, queue, spec.priority_class, spec.preemptible)
    core_job = spec.to_job("0")
    verdict = state.trees.feasibility(session, core_job)
    if not verdict.ok:
        raise HTTPException(422, f"task_groups: can never run here: {verdict.reason}")
    return core_job


def _check_granted(state: AppState, session: Session, queue: str, priority_class: str, preemptible) -> None:
    """403 unless a member may use ``priority_class`` (and ``preemptible: false``) in ``queue``."""
    granted = state.trees.priority_classes(session, queue)
    never_preempted = preemptible is False and PRIORITY_CLASSES[priority_class].preemptible
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
    if priority_class not in granted:
        raise HTTPException(
            403,
            [
                {
                    "field": "priority_class",
                    "message": f"{priority_class!r} is not granted to queue {queue!r}; "
                    f"granted: {', '.join(c for c in PRIORITY_CLASSES if c in granted)} "
                    "(an admin grants classes in the quota document)",
                }
            ],
        )


def _array_of(head: tables.Job):
    """The condition selecting the array whose id is ``head``'s (422 when it is no array's id)."""
    if head.array_job_id != head.id:
        raise HTTPException(
            422, [{"field": "array", "message": f"job {head.id} is not the id of a job array"}]
        )
    return tables.Job.array_job_id == head.id


def _check_dependencies(session: Session, tenant_id: int, text: str) -> None:
    """422 unless every job the dependency names is one of the tenant's own (another tenant's job
    is "no job" too: its state is not the dependent's to learn)."""
    named = {d.job_id for d in parse_dependencies(text) if d.job_id}
    if not all(i.isascii() and i.isdigit() for i in named):
        raise HTTPException(422, [{"field": "dependency", "message": "job ids are numbers here"}])
    too_large = sorted(i for i in named if int(i) > MAX_ID)  # no job has it (and no database column holds it)
    if too_large:
        raise HTTPException(422, [{"field": "dependency", "message": f"no job {', '.join(too_large)}"}])
    ids = {int(i) for i in named}
    found = set(
        session.scalars(
            select(tables.Job.id).where(tables.Job.id.in_(ids), tables.Job.tenant_id == tenant_id)
        )
    )
    missing = sorted(ids - found)
    if missing:
        raise HTTPException(
            422, [{"field": "dependency", "message": f"no job {', '.join(map(str, missing))}"}]
        )


def _submitted_as(session: Session, tenant_id: int, key: str):
    """The tenant's job submitted with idempotency ``key`` (with its tenant's and user's names)."""
    return session.execute(
        JOB_ROWS.where(tables.Job.tenant_id == tenant_id, tables.Job.idempotency_key == key)
    ).first()


def _replayed(row, body: dict, key: str, response: Response) -> JobOut:
    """The job a retried submission made the first time, if the request is the same one."""
    job = row[0]
    if job.spec != body:
        raise HTTPException(
            422,
            [
                {
                    "field": "Idempotency-Key",
                    "message": f"{key!r} was used for job {job.id} with a different request; "
                    "use a new key for a new job",
                }
            ],
        )
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
    return job_out(*row)


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


def visible_job(session: Session, who: Principal, job_id: int, lock: bool = False):
    """The job and its tenant's name, or 404 — also for another tenant's job, so ids reveal nothing."""
    q = JOB_ROWS.where(tables.Job.id == job_id)
    if lock:
        q = q.with_for_update()
    row = session.execute(q).first()
    if row is None or (not who.is_admin and row[0].tenant_id != who.tenant_id):
        raise HTTPException(404, f"no job {job_id}")
    return row[0], row[1], row[2]
