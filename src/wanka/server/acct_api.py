"""Accounting, as ``sacct`` gives it: jobs active in a time window, each with its elapsed time,
nodes, cards, card-hours and exit code, and every task of its runs (node, exit code, peak memory).

A job is in a window when it was waiting or running in it: submitted before the window ends, and not
ended before it starts (sacct's ``-S``/``-E``). Card-hours come from the job's runs (``job_runs``,
what metering bills); the tasks from ``task_runs``, written as each run ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.models.bounds import MAX_TIME
from wanka.server import tables
from wanka.server.auth import Principal
from wanka.server.job_service import job_rows, newest_first
from wanka.server.params import MAX_ID


class TaskOut(BaseModel):
    run: int
    task: int = Field(description="RANK")
    role: str
    node: str
    cards: int
    start: float
    end: float
    exit_code: int | None = Field(description="128 + N: killed by signal N; null: killed or lost")
    max_rss_kib: int | None = Field(description="peak resident memory (KiB) where the backend knows it")
    state: str | None = Field(
        None,
        description="completed, failed, cancelled, timeout, preempted, node_fail, resized or lost "
        "(sacct's step states): a task wanka stopped is what stopped it; null: recorded before "
        "schema revision 0006",
    )


class AcctJob(BaseModel):
    id: int
    name: str
    tenant: str
    user: str
    queue: str
    state: str
    reason: str
    exit_code: int | None = Field(
        description="the first failing task's code of the last run; 0 when all succeeded"
    )
    submit_time: float
    start_time: float | None
    end_time: float | None
    elapsed_s: float = Field(description="from the first start to the end (or now)")
    nodes: list[str]
    cards: int
    card_hours: float = Field(description="cards x hours held, over all runs (what metering bills)")
    runs: int
    array_job_id: int | None = None
    array_index: int | None = None
    tasks: list[TaskOut]


class AcctPage(BaseModel):
    jobs: list[AcctJob]
    next_before_id: int | None


def router(db: Callable, principal: Callable) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/acct", response_model=AcctPage)
    def acct(
        start: float | None = Query(
            None, ge=0, le=MAX_TIME, description="UNIX seconds; default: today 00:00 UTC"
        ),
        end: float | None = Query(None, ge=0, le=MAX_TIME, description="UNIX seconds; default: now"),
        state: str | None = Query(None, pattern="^(" + "|".join(s.value for s in JobState) + ")$"),
        job: int | None = Query(
            None, ge=1, le=MAX_ID, description="one job, or every element of an array (any time)"
        ),
        tenant: str | None = Query(None, description="admins: only this tenant's jobs"),
        limit: int = Query(100, ge=1, le=1000),
        before_id: int | None = Query(None, ge=1, le=MAX_ID),
        who: Principal = Depends(principal),
        session: Session = Depends(db),
    ):
        """Members see their own tenant's jobs only."""
        now = time.time()
        lo = start if start is not None else now - now % 86400.0
        hi = end if end is not None else now
        if hi < lo:
            raise HTTPException(422, [{"field": "end", "message": "must not be before start"}])
        q = job_rows(who, tenant)
        if job is not None:  # one job, or an array by its id: every element
            q = q.where(or_(tables.Job.id == job, tables.Job.array_job_id == job))
        else:
            q = q.where(
                tables.Job.submit_time <= hi, or_(tables.Job.end_time.is_(None), tables.Job.end_time >= lo)
            )
        if state:
            q = q.where(tables.Job.state == state)
        rows, more = newest_first(session, q, limit, before_id)
        ids = [j.id for j, _, _ in rows]
        held = _card_hours(session, ids, now)
        tasks = task_runs(session, ids)
        out = []
        for j, tenant_name, user in rows:
            mine = tasks.get(j.id, [])
            last = [t for t in mine if t.run == j.runs]
            failing = next((t.exit_code for t in last if t.exit_code != 0), 0) if last else None
            nodes = sorted({t.node for t in last}) or (
                sorted({n for g in j.placement["groups"] for n in g["nodes"]}) if j.placement else []
            )
            out.append(
                AcctJob(
                    id=j.id,
                    name=j.name,
                    tenant=tenant_name,
                    user=user,
                    queue=j.queue,
                    state=j.state,
                    reason=j.reason,
                    exit_code=failing,
                    submit_time=j.submit_time,
                    start_time=j.start_time,
                    end_time=j.end_time,
                    elapsed_s=max(0.0, (j.end_time or now) - j.start_time) if j.start_time else 0.0,
                    nodes=nodes,
                    cards=j.cards,
                    card_hours=held.get(j.id, 0.0),
                    runs=j.runs or 0,
                    array_job_id=j.array_job_id,
                    array_index=j.array_index,
                    tasks=mine,
                )
            )
        return AcctPage(jobs=out, next_before_id=rows[-1][0].id if more else None)

    return api


def _card_hours(session: Session, ids: list[int], now: float) -> dict[int, float]:
    if not ids:
        return {}
    end = func.coalesce(tables.JobRun.end, now)
    q = (
        select(tables.JobRun.job_id, func.sum(tables.JobRun.cards * (end - tables.JobRun.start)))
        .where(tables.JobRun.job_id.in_(ids))
        .group_by(tables.JobRun.job_id)
    )
    return {job_id: float(card_s or 0.0) / 3600.0 for job_id, card_s in session.execute(q)}


def task_runs(session: Session, ids: list[int], newest: int | None = None) -> dict[int, list[TaskOut]]:
    """How each task of each run of jobs ``ids`` ended, by job, oldest run first; with ``newest``,
    only that many rows (the newest runs') in all."""
    out: dict[int, list[TaskOut]] = {}
    if not ids:
        return out
    q = (
        select(tables.TaskRun)
        .where(tables.TaskRun.job_id.in_(ids))
        .order_by(tables.TaskRun.job_id, tables.TaskRun.run, tables.TaskRun.task)
    )
    for t in session.scalars(q):
        out.setdefault(t.job_id, []).append(
            TaskOut(
                run=t.run,
                task=t.task,
                role=t.role,
                node=t.node,
                cards=t.cards,
                start=t.start,
                end=t.end,
                exit_code=t.exit_code,
                max_rss_kib=t.max_rss_kib,
                state=t.state,
            )
        )
    return out
