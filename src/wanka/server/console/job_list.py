"""The console's job list: one page of the jobs a principal may see, 100 at a time, sorted over all
of them (not within the page), with a job array folded into one row that counts all its elements.

Every order pages by keyset, never by offset, so a job arriving or changing between two page loads
neither repeats a row nor hides one that kept its place: newest first by id (``before``); a sort
by the last row's key and id (``after_key``, ``after_id``). Sorting by queue position lists the
waiting jobs in the order the scheduler would start them (the control loop's positions; an array
at its best-placed element), then those not yet placed (held back by a dependency or an array's
throttle), oldest first."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import HTTPException
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from wanka.core import JobState
from wanka.server import job_service, tables

MAX_ROWS = 100  # jobs on one page (older ones a page further): a cold load stays well under 1 s
UNPLACED = 10**18 - 1  # the position of a waiting job the scheduler has not placed in its queue
Job = tables.Job
# sorted in the database, ties newest first; each with the rows after a (key, id) cursor
SQL_SORTS = {
    "state": ((Job.state, Job.id.desc()), lambda k, i: or_(Job.state > k, and_(Job.state == k, Job.id < i))),
    "cards": (
        (Job.cards.desc(), Job.id.desc()),
        lambda k, i: or_(Job.cards < k, and_(Job.cards == k, Job.id < i)),
    ),
    "name": ((Job.name, Job.id.desc()), lambda k, i: or_(Job.name > k, and_(Job.name == k, Job.id < i))),
}
SORTS = (*SQL_SORTS, "position")
STATES = tuple(s.value for s in JobState)
PARAMS = ("state", "sort", "array", "before", "after_key", "after_id")  # what a list's address may hold
PENDING = JobState.PENDING.value


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


def rows_of(session: Session, base, params: dict[str, str], positions: dict) -> tuple[list, dict | None]:
    """One page of the (job, tenant, user) rows of ``base`` (what the principal may see) that
    ``params`` ask for, and the parameters of the next page (None: the last)."""
    array = int(params["array"]) if "array" in params else None
    sort, state = params.get("sort", ""), params.get("state", "")
    cursor = (params["after_key"], int(params["after_id"])) if "after_id" in params else None
    if sort == "position":  # the waiting jobs: any other state has no place in the queue
        if state not in ("", PENDING):
            return [], None
        rows, ranks = _by_position(session, base, array, cursor, positions)
        keys = [ranks[row[0].id] for row in rows]
    else:
        q = visible(base, state, array)
        if sort:
            order, after = SQL_SORTS[sort]
            if cursor:
                q = q.where(after(int(cursor[0]) if sort == "cards" else cursor[0], cursor[1]))
            rows = session.execute(q.order_by(*order).limit(MAX_ROWS + 1)).all()
            keys = [getattr(row[0], sort) for row in rows]
        else:
            rows, more = job_service.newest_first(session, q, MAX_ROWS, int(params.get("before", 0)) or None)
            first = {k: v for k, v in params.items() if k != "before"}
            return rows, ({**first, "before": str(rows[-1][0].id)} if more else None)
    if len(rows) <= MAX_ROWS:
        return rows, None
    first = {k: v for k, v in params.items() if k not in ("after_key", "after_id")}
    last = MAX_ROWS - 1
    return rows[:MAX_ROWS], {**first, "after_key": str(keys[last]), "after_id": str(rows[last][0].id)}


def _by_position(session: Session, base, array: int | None, cursor, positions: dict) -> tuple[list, dict]:
    """The waiting rows by queue position (an array, folded, at its best-placed element), then the
    unplaced oldest first; up to one more than a page after ``cursor``, and each row's rank."""
    q = base.where(Job.state == PENDING)
    if array is not None:
        q = q.where(Job.array_job_id == array)
    ranks: dict[int, int] = {}
    for job_id, array_id in session.execute(q.with_only_columns(Job.id, Job.array_job_id)):
        shown = array_id if array is None and array_id is not None else job_id
        ranks[shown] = min(ranks.get(shown, UNPLACED), positions.get(job_id, UNPLACED))
    ordered = sorted(ranks, key=lambda i: (ranks[i], i))
    if cursor:
        after = (int(cursor[0]), cursor[1])
        ordered = [i for i in ordered if (ranks[i], i) > after]
    chunk = ordered[: MAX_ROWS + 1]
    found = {row[0].id: row for row in session.execute(base.where(Job.id.in_(chunk)))} if chunk else {}
    return [found[i] for i in chunk if i in found], ranks


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
    for name in ("array", "before", "after_id"):
        if params.get(name):
            number(params[name], name)
    key = params.get("after_key", "")
    if ("after_key" in params) != ("after_id" in params) or (key and not sort):
        raise HTTPException(422, "after_key, after_id: both or neither, and only with sort")
    if sort in ("cards", "position") and key:
        number(key, "after_key")
    elif sort == "state" and key and key not in STATES:
        raise HTTPException(422, f"after_key: a state, one of {', '.join(STATES)}; got {key[:40]!r}")
    elif len(key) > 200:
        raise HTTPException(422, "after_key: a job name, at most 200 characters")
    # an empty after_key is a key (a job named ""), not an absent one
    return {k: params[k] for k in PARAMS if params.get(k) or (k == "after_key" and "after_id" in params)}


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
