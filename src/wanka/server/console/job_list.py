"""The console's job list: one page of the jobs a principal may see, 100 at a time, sorted over all
of them (not within the page), with a job array folded into one row that counts all its elements.

Newest first pages by id (``before``: stable while jobs arrive); a sorted list pages by number
(``page``), since its order is not the ids'. Sorting by queue position lists the waiting jobs in
the order the scheduler would start them (the control loop's positions), the next first."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import HTTPException
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.server import job_service, tables

MAX_ROWS = 100  # jobs on one page (older ones a page further): a cold load stays well under 1 s
MAX_PAGE = 100_000  # a sorted list's page number (an offset): bounded
Job = tables.Job
SQL_SORTS = {  # sorted in the database, ties newest first
    "state": (Job.state, Job.id.desc()),
    "cards": (Job.cards.desc(), Job.id.desc()),
    "name": (Job.name, Job.id.desc()),
}
SORTS = (*SQL_SORTS, "position")
STATES = tuple(s.value for s in JobState)
PARAMS = ("state", "sort", "array", "before", "page")  # what a list's address may hold


def visible(q, state: str, array: int | None):
    """``q`` narrowed to the list asked for: ``state`` ("" any) and, in an array's own list, its
    elements; outside one, each array by its first element (its id is the array's), shown when
    any element is in ``state``."""
    if array is not None:
        q = q.where(Job.array_job_id == array)
        return q.where(Job.state == state) if state else q
    single, head = Job.array_job_id.is_(None), Job.id == Job.array_job_id
    if not state:
        return q.where(or_(single, head))
    matching = select(Job.array_job_id).where(Job.state == state, Job.array_job_id.is_not(None))
    return q.where(or_(and_(single, Job.state == state), and_(head, Job.id.in_(matching))))


def rows_of(
    session: Session, q, sort: str, before: int | None, page: int, positions: dict
) -> tuple[list, bool]:
    """One page of ``q``'s (job, tenant, user) rows in ``sort``'s order, and whether more follow."""
    if sort == "position":
        return _by_position(session, q, page, positions)
    if sort:
        ordered = q.order_by(*SQL_SORTS[sort]).offset(page * MAX_ROWS).limit(MAX_ROWS + 1)
        rows = session.execute(ordered).all()
        return rows[:MAX_ROWS], len(rows) > MAX_ROWS
    return job_service.newest_first(session, q, MAX_ROWS, before)


def _by_position(session: Session, q, page: int, positions: dict) -> tuple[list, bool]:
    waiting = session.scalars(q.where(Job.state == JobState.PENDING.value).with_only_columns(Job.id)).all()
    ordered = sorted((positions[i], i) for i in waiting if i in positions)
    chunk = [i for _, i in ordered[page * MAX_ROWS : (page + 1) * MAX_ROWS]]
    found = {row[0].id: row for row in session.execute(q.where(Job.id.in_(chunk)))} if chunk else {}
    return [found[i] for i in chunk if i in found], len(ordered) > (page + 1) * MAX_ROWS


def array_counts(session: Session, arrays: list[int]) -> dict[int, dict[str, int]]:
    """Each array's elements by state: ``{array id: {state: count}}``."""
    if not arrays:
        return {}
    counted = session.execute(
        select(Job.array_job_id, Job.state, func.count())
        .where(Job.array_job_id.in_(arrays))
        .group_by(Job.array_job_id, Job.state)
    )
    out: dict[int, dict[str, int]] = {}
    for array, state, n in counted:
        out.setdefault(array, {})[state] = n
    return out


def query_of(params: dict[str, str]) -> dict[str, str]:
    """The list's query parameters checked: 422 naming the first bad one."""
    state, sort = params.get("state", ""), params.get("sort", "")
    if state and state not in STATES:
        raise HTTPException(422, f"state: one of {', '.join(STATES)}; got {state[:40]!r}")
    if sort and sort not in SORTS:
        raise HTTPException(422, f"sort: one of {', '.join(SORTS)}; got {sort[:40]!r}")
    for name in ("array", "before", "page"):
        if name in params:
            number(params[name], name)
    if "page" in params and int(params["page"]) > MAX_PAGE:
        raise HTTPException(422, f"page: a whole number from 0 to {MAX_PAGE}; got {params['page'][:20]!r}")
    return {k: params[k] for k in PARAMS if params.get(k)}


def number(text: str, field: str) -> int:
    """A non-negative whole number from a query (ASCII digits, at most 18: a job id is 64-bit), or
    422 naming it."""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPException(422, f"{field}: a whole number from 0 to 10^18 - 1; got {text[:20]!r}")
    return int(text)


def back_to(back: str) -> str:
    """Where a row's action returns: the list it was pressed on (``/?…`` with the list's own
    parameters, checked), else the newest page. Never another path or host."""
    if not back.startswith("/?") or len(back) > 400:
        return "/"
    try:
        params = query_of(dict(parse_qsl(back[2:], max_num_fields=len(PARAMS))))
    except (HTTPException, ValueError):
        return "/"
    return "/?" + urlencode(params) if params else "/"
