"""The console's pages and forms: thin over the API's service functions (``jobs_api``,
``job_service``, ``cluster_api``); what a page shows is what the same request to ``/v1`` returns."""

from __future__ import annotations

import functools
import gzip
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.core import PRIORITY_CLASSES
from wanka.server import checkpoints, job_service, tables
from wanka.server.acct_api import task_runs
from wanka.server.console import account_pages, cluster_pages, figures, job_list, service_pages, twin_pages
from wanka.server.console import session as console_session
from wanka.server.console.forms import DEFAULTS, FormError, fields_of, form_fields, problems_of, spec_of
from wanka.server.jobs_api import (
    admit_spec,
    cancel_job,
    create_job,
    hold_job,
    job_out,
    release_job,
    resolve_spec,
    task_log,
    visible_job,
)

if TYPE_CHECKING:
    from wanka.server.app import AppState

HERE = Path(__file__).parent
STATIC = {  # every file the console serves, by name: nothing else is reachable
    "console.css": ("static/console.css", "text/css"),
    "console.js": ("static/console.js", "text/javascript"),
    "htmx.min.js": ("static/vendor/htmx.min.js", "text/javascript"),
    "echarts.common.min.js": ("static/vendor/echarts.common.min.js", "text/javascript"),
}
HEADERS = {
    # scripts and styles from this server only (no inline script, no eval); never in a frame
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # not no-referrer: Chromium then sends "Origin: null" with forms, and the origin check needs it
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOG_TAIL_BYTES = 16 * 1024  # the end of a task's log shown live (one task at a time)
MAX_EVENTS = 200  # of one job, on its page
MAX_TASK_ROWS = 200  # how its tasks ended: the newest runs' (wanka acct has them all)
JOB_ACTIONS = {"cancel": cancel_job, "hold": hold_job, "release": release_job}  # the API's own
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
)


def _elapsed(job) -> str:
    """Run time so far (running) or of its last run, as H:MM:SS; empty before it ever started."""
    if job.start_time is None:
        return ""
    end = job.end_time if job.end_time is not None else time.time()
    seconds = max(0, int(end - job.start_time))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else ""


templates.globals["priority_classes"] = list(PRIORITY_CLASSES)
templates.filters["elapsed"] = _elapsed
templates.filters["when"] = _when


class ConsoleRoute(APIRoute):
    """A console route: an HTTP error answers as a small page saying what went wrong, with the
    console's headers (its policy, no-store), not as the API's JSON."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as e:
                return _error_page(e.status_code, str(e.detail), e.headers)
            except RequestValidationError as e:  # a path or query value of the wrong type
                said = (f"{'.'.join(map(str, err['loc'][1:]))}: {err['msg']}" for err in e.errors()[:5])
                return _error_page(422, "; ".join(said), None)

        return route


def _error_page(status: int, detail: str, headers: dict | None) -> HTMLResponse:
    html = templates.get_template("error.html").render(
        who=None, status=status, phrase=_phrase(status), detail=detail[:1000]
    )
    return HTMLResponse(html, status_code=status, headers={**(headers or {}), **HEADERS})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


class SignedOut(Exception):
    """No live session: pages go to the sign-in page; htmx fragments tell htmx to go there."""


def router(state: AppState, db: Callable) -> APIRouter:
    pages = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

    def render(name: str, status: int = 200, **context) -> HTMLResponse:
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def signed(request: Request, session: Session):
        found = console_session.signed_in(session, request)
        if found is None:
            raise SignedOut
        return found

    def page(name: str, who, token: str, status: int = 200, **context) -> HTMLResponse:
        return render(name, status, who=who, csrf=console_session.csrf_token(token), **context)

    # --- sign in and out -------------------------------------------------------------------

    @pages.get("/login")
    def login_form() -> HTMLResponse:
        return render("login.html", who=None)

    @pages.post("/login")
    async def login(request: Request, session: Session = Depends(db)):
        if not console_session.same_origin(request):
            raise HTTPException(403, "csrf: the form came from another origin")
        fields = await form_fields(request)
        signed_in = console_session.sign_in(session, fields.get("token", ""))
        if signed_in is None:
            error = "That token is unknown, revoked or expired."
            return render("login.html", status=401, who=None, error=error)
        _, token = signed_in
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            console_session.COOKIE,
            token,
            max_age=int(console_session.SESSION_S),
            httponly=True,
            samesite="strict",
            path="/",
            # behind a TLS proxy (uvicorn reads its X-Forwarded-Proto from loopback): never sent in clear
            secure=request.url.scheme == "https",
        )
        return response

    @pages.post("/logout")
    async def logout(request: Request, session: Session = Depends(db)):
        _, token = signed(request, session)
        console_session.check_form(request, token, (await form_fields(request)).get("csrf", ""))
        console_session.sign_out(session, token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(console_session.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # --- jobs ------------------------------------------------------------------------------

    def list_context(session: Session, who, request: Request) -> dict:
        """The list's context (``job_list``): one page of the rows asked for by the query's
        ``state``, ``sort``, ``array`` and cursor (``before``; ``after_key`` and ``after_id``)."""
        params = job_list.query_of(dict(request.query_params))
        array = int(params["array"]) if "array" in params else None
        rows, older = job_list.rows_of(session, job_service.job_rows(who), params, state.loop.positions)
        folded = array is None  # outside an array's own list, an array is one row: its first element
        counts = job_list.array_counts(session, [j.id for j, _, _ in rows if folded and j.array_job_id])
        items = []
        for j, t, u in rows:
            if j.id in counts:
                items.append({"array": j.id, "name": j.name, "states": counts[j.id]})
            else:
                items.append({"job": job_out(j, t, u, state.loop), "row": j})
        first = {k: v for k, v in params.items() if k not in ("before", "after_key", "after_id")}
        sort = params.get("sort", "")
        return {
            "items": items,
            "state": params.get("state", ""),
            "sort": sort,
            "array": array,
            "query": first,  # the list's first page
            "here": params,  # this page: what it polls, where its rows' actions return
            "older": older,
            "paged": first != params,
        }

    @pages.get("/")
    def jobs(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        return page(
            "jobs.html",
            who,
            token,
            states=job_list.STATES,
            sorts=job_list.SORTS,
            **list_context(session, who, request),
        )

    @pages.get("/fragments/jobs")
    def jobs_fragment(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        return page("_jobs_table.html", who, token, **list_context(session, who, request))

    def job_context(session: Session, who, job_id: int, request: Request) -> dict:
        job, tenant, user = visible_job(session, who, job_id)  # 404 for another tenant's, as the API
        events = session.scalars(  # the newest, oldest first: a restarting job's list is bounded
            select(tables.JobEvent)
            .where(tables.JobEvent.job_id == job_id)
            .order_by(tables.JobEvent.id.desc())
            .limit(MAX_EVENTS)
        ).all()[::-1]
        tasks = sum(len(g["nodes"]) for g in job.placement["groups"]) if job.placement else 0
        task = job_list.number(request.query_params.get("task", "0"), "task")
        if tasks and not 0 <= task < tasks:
            raise HTTPException(404, f"job {job_id} has {tasks} task(s): 0 to {tasks - 1}")
        out = job_out(job, tenant, user, state.loop)
        return {
            "job": out,
            "row": job,
            "events": events,
            "task_runs": task_runs(session, [job_id], MAX_TASK_ROWS).get(job_id, []),
            "tasks": tasks,
            "task": task,
            "placement": figures.placement_map(state.cluster, set(out.nodes)),
        }

    @pages.get("/jobs/{job_id}")
    def job_detail(job_id: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        context = job_context(session, who, _job_id(job_id), request)  # 404 before any listing
        saved = checkpoints.listing(state.loop.backend.checkpoint_dir(job_id))
        return page("job.html", who, token, checkpoints=saved, **context)

    @pages.get("/fragments/jobs/{job_id}")
    def job_fragment(job_id: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        return page("_job_state.html", who, token, **job_context(session, who, _job_id(job_id), request))

    @pages.get("/fragments/jobs/{job_id}/logs")
    def job_logs(job_id: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        return page("_logs.html", who, token, **job_context(session, who, _job_id(job_id), request))

    @pages.get("/fragments/jobs/{job_id}/log/{task}")
    def job_log(job_id: int, task: int, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        job, _, _ = visible_job(session, who, _job_id(job_id))
        if not 0 <= task <= 1_000_000:
            raise HTTPException(422, "task: a task index from 0")
        text, finished = "", False
        if job.runs:
            chunk = task_log(state, job, task, None, -LOG_TAIL_BYTES, LOG_TAIL_BYTES)
            text, finished = chunk.data, chunk.finished
        return page("_log.html", who, token, job=job, task=task, text=text, finished=finished)

    @pages.post("/jobs/{job_id}/{action}")
    async def job_action(job_id: int, action: str, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        if action not in JOB_ACTIONS:
            raise HTTPException(404, f"no action {action[:40]!r}; one of {', '.join(JOB_ACTIONS)}")
        job, _, _ = visible_job(session, who, _job_id(job_id))
        JOB_ACTIONS[action](state, session, who, job)
        back = f"/jobs/{job.id}" if fields.get("back") == "job" else job_list.back_to(fields.get("back", ""))
        return RedirectResponse(back, status_code=303)

    # --- submit ------------------------------------------------------------------------------

    def vet(session: Session, who, fields: dict) -> tuple[list, str]:
        """The form's problems (none: it may be submitted) and, when none, what it asks for."""
        try:
            spec = spec_of(fields, who.is_admin)
            spec, tenant_id, _ = resolve_spec(state, session, who, spec)
            _, core_job = admit_spec(state, session, who, spec, tenant_id)
        except FormError as exc:
            return exc.problems, ""
        except HTTPException as exc:
            return problems_of(exc.detail), ""
        finally:
            session.rollback()  # a check stores nothing
        tasks = sum(g.replicas for g in core_job.groups)
        return [], f"{tasks} task(s), {core_job.total_cards} card(s) in queue {spec.queue}: it can run here."

    @pages.get("/submit")
    def submit_form(request: Request, session: Session = Depends(db)):
        """The form, empty, or (``?from=ID``) filled in from a job one may see: resubmit with changes."""
        who, token = signed(request, session)
        fields, note = DEFAULTS, ""
        if "from" in request.query_params:
            job, tenant, _ = visible_job(
                session, who, _job_id(job_list.number(request.query_params["from"], "from"))
            )
            fields, note = fields_of(job.spec, tenant if who.is_admin else "")
        return page("submit.html", who, token, fields=fields, problems=[], verdict="", note=note)

    @pages.post("/fragments/submit-check")
    async def submit_check(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        problems, verdict = vet(session, who, fields)
        return page("_verdict.html", who, token, problems=problems, verdict=verdict)

    @pages.post("/submit")
    async def submit(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        fields = await form_fields(request)
        console_session.check_form(request, token, fields.get("csrf", ""))
        shown = {k: fields.get(k, v) for k, v in DEFAULTS.items()}
        try:
            job = create_job(state, session, who, spec_of(fields, who.is_admin), Response())
        except (FormError, HTTPException) as exc:
            session.rollback()
            problems = exc.problems if isinstance(exc, FormError) else problems_of(exc.detail)
            status = 422 if isinstance(exc, FormError) else exc.status_code
            return page("submit.html", who, token, fields=shown, problems=problems, verdict="", status=status)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    cluster_pages.add(pages, state, db, signed, page)
    account_pages.add(pages, state, db, signed, page)
    service_pages.add(pages, state, db, signed, page)
    twin_pages.add(pages, state, db, signed, page)

    # --- assets -----------------------------------------------------------------------------

    @pages.get("/favicon.ico")
    def favicon() -> Response:  # none: browsers ask on every page
        return Response(status_code=204)

    @pages.get("/static/{name}")
    def static(name: str, request: Request) -> Response:
        if name not in STATIC:
            raise HTTPException(404, f"no file {name[:80]!r}")
        raw, packed = asset(name)
        media = STATIC[name][1]
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "max-age=3600",
            "Vary": "Accept-Encoding",
        }
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            return Response(packed, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
        return Response(raw, media_type=media, headers=headers)

    return pages


@functools.cache
def asset(name: str) -> tuple[bytes, bytes]:
    """One of ``STATIC``'s files as (its bytes, gzipped), read and packed once per process.

    Only these files are compressed, not the pages: a page carries its CSRF token next to text a
    user chose, and compressing the two together leaks the token by response size (BREACH)."""
    raw = (HERE / STATIC[name][0]).read_bytes()
    return raw, gzip.compress(raw, compresslevel=9, mtime=0)


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (RFC 9110 12.5.3): the weight ``q`` of
    ``gzip`` (or ``x-gzip``), else of ``*``, is above 0."""
    weights: dict[str, float] = {}
    for item in header.split(",")[:20]:
        coding, *params = item.split(";")
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    q = float(value[:8])
                except ValueError:
                    q = 0.0
        weights[coding.strip().lower()] = q
    q = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return q > 0


def _job_id(job_id: int) -> int:
    if not 1 <= job_id <= 2**63 - 1:
        raise HTTPException(404, f"no job {job_id}")
    return job_id


async def signed_out(request: Request, _: SignedOut) -> Response:
    """A page asked without a live session: to the sign-in page (htmx: by its own redirect)."""
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return RedirectResponse("/login", status_code=303)
