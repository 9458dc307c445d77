"""The console's twin reports (operators): a what-if on the live cluster and quota tree, started from
a form, run in the background (:mod:`wanka.server.whatif`) with a progress bar, and its report:
the metrics side by side and the plots ``wanka simulate --out`` draws."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from wanka.core import POLICIES
from wanka.models.errors import SpecError, describe
from wanka.server.console import quota_editor
from wanka.server.console.forms import admin_form, problems_of
from wanka.server.quota_api import check_quotas
from wanka.server.whatif import Busy, NoHistory, TooLarge, WhatIfIn, build_input

if TYPE_CHECKING:
    from wanka.server.app import AppState

FIELDS = ("workload", "days", "load", "seed", "change", "cards", "policy", "quotas", "failures")
DEFAULTS = {"workload": "history", "days": "7", "load": "1", "seed": "0", "change": "none", "cards": "0",
            "policy": "", "quotas": "", "failures": "none"}  # fmt: skip
MEDIA = {"png": "image/png", "csv": "text/csv", "md": "text/markdown"}
METRICS = (  # (summary key, heading, format): the report's table, times in hours
    ("jobs", "jobs", "{:,.0f}"),
    ("avg_jct_s", "average JCT (h)", "h"),
    ("p99_jct_s", "p99 JCT (h)", "h"),
    ("avg_wait_s", "average wait (h)", "h"),
    ("p99_wait_s", "p99 wait (h)", "h"),
    ("utilization", "utilisation", "{:.1%}"),
    ("goodput", "goodput", "{:.3f}"),
    ("ettr", "ETTR", "{:.3f}"),
    ("preemptions", "preemptions", "{:,.0f}"),
    ("failures", "failures", "{:,.0f}"),
    ("jain_fairness", "Jain fairness", "{:.3f}"),
)


def metric_rows(results: list[dict]) -> list[tuple[str, list[str]]]:
    """The report's table: (heading, one cell per run)."""

    def cell(value, fmt: str) -> str:
        if value is None:
            return ""
        return f"{value / 3600:,.2f}" if fmt == "h" else fmt.format(value)

    return [(heading, [cell(r.get(key), fmt) for r in results]) for key, heading, fmt in METRICS]


def add(pages: APIRouter, state: AppState, db: Callable, signed: Callable, page: Callable) -> None:
    """Add ``/twin`` (the form and the runs kept), ``/twin/ID`` (progress, then the report) and the
    report's files to ``pages``."""

    def runs():
        if state.whatifs is None:
            raise HTTPException(404, "this server keeps no what-ifs (it was built without a home)")
        return state.whatifs

    def admin(request: Request, session: Session):
        who, token = signed(request, session)
        if not who.is_admin:
            raise HTTPException(403, "admins only")
        return who, token

    def form_page(who, token, fields: dict, problems: list, status: int = 200):
        return page(
            "twin.html",
            who,
            token,
            status,
            fields=fields,
            problems=problems,
            runs=runs().runs(),
            policies=list(POLICIES),
            current=state.loop.policy.name,
        )

    @pages.get("/twin")
    def twin(request: Request, session: Session = Depends(db)):
        who, token = admin(request, session)
        return form_page(who, token, DEFAULTS, [])

    def asked(session: Session, fields: dict) -> WhatIfIn:
        """The form as a :class:`WhatIfIn`; SpecError naming each field's problem."""
        data = {k: fields[k].strip() for k in FIELDS if k in fields and k != "quotas"}
        data = {k: v for k, v in data.items() if v != "" or k == "policy"}
        if data.get("change") == "quotas":
            data["quotas"] = _checked_quotas(session, state, fields.get("quotas", ""))
        elif data.get("change") != "policy":
            data.pop("policy", None)
        try:
            return WhatIfIn.model_validate(data)
        except ValidationError as exc:
            raise SpecError("what-if", _named(describe(list(exc.errors()), model=WhatIfIn))) from None

    @pages.post("/twin")
    async def twin_start(request: Request, session: Session = Depends(db)):
        who, token, fields = await admin_form(
            request, session, signed, quota_editor.MAX_DOCUMENT_BYTES + 4096
        )
        shown = {k: fields.get(k, v) for k, v in DEFAULTS.items()}
        try:
            runs().check_free()  # before the work of building its input
            ask = await run_in_threadpool(asked, session, fields)
            # a month of synthetic jobs on 10,000 cards takes seconds to build and write: off the
            # event loop
            inputs = await run_in_threadpool(build_input, session, state.loop.cluster, state.loop.policy, ask)
            run_id = await run_in_threadpool(runs().start, inputs, ask.model_dump(mode="json"), who.name)
        except SpecError as exc:
            return form_page(who, token, shown, list(exc.problems), 422)
        except (NoHistory, TooLarge) as exc:
            return form_page(who, token, shown, [("days", str(exc).removeprefix("days: "))], 422)
        except Busy as exc:
            return form_page(who, token, shown, [("what-if", str(exc))], 409)
        finally:
            session.rollback()  # a what-if stores nothing in the database
        return RedirectResponse(f"/twin/{run_id}", status_code=303)

    def run_context(run_id: str) -> dict:
        try:
            run = runs().get(run_id)
        except KeyError:
            raise HTTPException(404, f"no what-if {run_id[:40]!r}") from None
        results = run.get("summary", {}).get("results", []) if run["state"] == "done" else []
        return {"run": run, "metrics": metric_rows(results), "labels": [r["policy"] for r in results]}

    @pages.get("/twin/{run_id}")
    def twin_run(run_id: str, request: Request, session: Session = Depends(db)):
        who, token = admin(request, session)
        return page("twin_run.html", who, token, **run_context(run_id))

    @pages.get("/fragments/twin/{run_id}")
    def twin_status(run_id: str, request: Request, session: Session = Depends(db)):
        who, token = admin(request, session)
        return page("_twin_status.html", who, token, **run_context(run_id))

    @pages.post("/twin/{run_id}/cancel")
    async def twin_cancel(run_id: str, request: Request, session: Session = Depends(db)):
        await admin_form(request, session, signed)
        run_context(run_id)  # 404 for no such run
        runs().cancel(run_id)
        return RedirectResponse(f"/twin/{run_id}", status_code=303)

    @pages.get("/twin/{run_id}/files/{name}")
    def twin_file(run_id: str, name: str, request: Request, session: Session = Depends(db)):
        admin(request, session)
        try:
            path = runs().file(run_id, name)
        except KeyError:
            raise HTTPException(404, f"no file {name[:80]!r} in what-if {run_id[:40]!r}") from None
        kind = name.rsplit(".", 1)[1]
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
        if kind != "png":  # data to save, never a page of this origin
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return FileResponse(path, media_type=MEDIA[kind], headers=headers)


def _checked_quotas(session: Session, state: AppState, text: str) -> dict:
    """The what-if's quota document, by the quota editor's rules (the tree in force is untouched)."""
    if not text.strip():
        raise SpecError("what-if", [("quotas", "the quota document to compare (YAML, as the quota editor)")])
    try:
        spec = quota_editor.parse(text)
        check_quotas(session, state.cluster, spec)
    except SpecError as exc:
        raise SpecError(
            "what-if", [("quotas", f"{f}: {m}" if f != "document" else m) for f, m in exc.problems]
        ) from None
    except HTTPException as exc:
        raise SpecError("what-if", [("quotas", m) for _, m in problems_of(exc.detail)]) from None
    return spec.model_dump(mode="json", exclude_none=True)


def _named(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A model-level problem ("field: message") named by its field, as the others are."""
    out = []
    for field, message in problems:
        name, sep, rest = message.removeprefix("Value error, ").partition(": ")
        if field in ("", "(top level)") and sep and name in FIELDS:
            field, message = name, rest
        out.append((field, message))
    return out
