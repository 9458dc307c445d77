"""The console's views of quota, usage and the cluster: a member's quota and bill, the operator's
overview and nodes. Thin over ``quota_api``, ``cluster_api`` and :mod:`.figures`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from wanka.core import NodeState
from wanka.models.errors import SpecError
from wanka.server import tables
from wanka.server.cluster_api import node_out, set_node_state
from wanka.server.console import events, figures
from wanka.server.console import quota_editor as quota_editor_mod
from wanka.server.console.forms import admin_form, problems_of
from wanka.server.job_service import JOB_ROWS
from wanka.server.jobs_api import job_out
from wanka.server.quota_api import queue_rows

if TYPE_CHECKING:
    from wanka.server.app import AppState

MAX_REASON = 500


def _admin_only(who) -> None:
    if not who.is_admin:
        raise HTTPException(403, "admins only")


def add(pages: APIRouter, state: AppState, db: Callable, signed: Callable, page: Callable) -> None:
    """Add the quota, overview and node routes to ``pages`` (``signed`` and ``page``: the console's
    session check and renderer)."""

    def _used():
        """Cards held on each node now (the control loop's view; read without its lock: a page)."""
        loop = state.loop
        return state.cluster.node_cards - loop.state.free_cards

    @pages.get("/quota")
    def quota(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        queues = queue_rows(session, state.trees.get(session), who, dict(state.loop.usage))
        tenant = None if who.is_admin else who.tenant_id
        return page(
            "quota.html",
            who,
            token,
            queues=queues,
            depth=_depths(queues),
            holders=figures.holders_now(session, tenant),
            usage=figures.usage_chart(session, tenant),
            applied=_int_or_none(request.query_params.get("applied", "")),
        )

    @pages.get("/quota/edit")
    def quota_editor(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        _admin_only(who)
        text = quota_editor_mod.current_document(session)
        return page("quota_edit.html", who, token, document=text, problems=[], verdict="", applied=None)

    @pages.post("/fragments/quota-check")
    async def quota_check(request: Request, session: Session = Depends(db)):
        who, token, fields = await admin_form(
            request, session, signed, quota_editor_mod.MAX_DOCUMENT_BYTES + 1024
        )
        # parsing and checking a large document takes a while: off the event loop
        problems, queues = await run_in_threadpool(
            quota_editor_mod.check, session, state.cluster, fields.get("document", "")
        )
        verdict = "" if problems else f"valid: {queues} queues; applying replaces the tree in force"
        return page("_verdict.html", who, token, problems=problems, verdict=verdict)

    @pages.post("/quota/edit")
    async def quota_apply(request: Request, session: Session = Depends(db)):
        who, token, fields = await admin_form(
            request, session, signed, quota_editor_mod.MAX_DOCUMENT_BYTES + 1024
        )
        text = fields.get("document", "")
        try:
            applied = await run_in_threadpool(quota_editor_mod.apply, session, state.cluster, who, text)
        except (SpecError, HTTPException) as exc:
            session.rollback()
            problems = list(exc.problems) if isinstance(exc, SpecError) else problems_of(exc.detail)
            ctx = {"document": text, "problems": problems, "verdict": "", "applied": None}
            return page("quota_edit.html", who, token, status=422, **ctx)
        state.tree_changed()
        return RedirectResponse(f"/quota?applied={applied.document}", status_code=303)

    @pages.get("/overview")
    def overview(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        _admin_only(who)
        cluster, loop = state.cluster, state.loop
        return page(
            "overview.html",
            who,
            token,
            cards=figures.cards_by_state(cluster),
            total=int(cluster.total_cards),
            jobs=figures.job_counts(session),
            holders=figures.holders_now(session, None),
            allocation=figures.allocation_chart(session, int(cluster.total_cards)),
            cycles=figures.cycle_chart(loop.recent_cycles),
            cycle_count=loop.cycle_count,
            tick_error=loop.tick_error or loop.tree_error,
            role=loop.role,
        )

    @pages.get("/events")
    def events_page(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        kind = _kind(request)
        return page(
            "events.html", who, token, events=events.stream(session, who, kind), kind=kind, kinds=events.KINDS
        )

    @pages.get("/fragments/events")
    def events_fragment(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        kind = _kind(request)
        return page("_events.html", who, token, events=events.stream(session, who, kind), kind=kind)

    @pages.get("/nodes")
    def nodes(request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        _admin_only(who)
        listed = _nodes_of(session, state.cluster)
        shown = request.query_params.get("as", "map")
        if shown not in ("map", "table"):
            raise HTTPException(422, f"as: map or table; got {shown[:40]!r}")
        if shown == "table":  # its own page: the map alone keeps 1,250 nodes' cold load under 1 s
            return page("nodes.html", who, token, nodes=listed, groups=None)
        return page(
            "nodes.html", who, token, nodes=listed, groups=figures.node_map(state.cluster, listed, _used())
        )

    @pages.get("/nodes/{name}")
    def node_detail(name: str, request: Request, session: Session = Depends(db)):
        who, token = signed(request, session)
        _admin_only(who)
        row = session.scalar(select(tables.Node).where(tables.Node.name == name[:200]))
        if row is None or row.name not in state.cluster.node_index:
            raise HTTPException(404, f"no node named {name[:80]!r}")
        i = state.cluster.node_index[row.name]
        ids = [int(j.id) for j in list(state.loop.running.values()) if i in j.placement.node_set()]
        jobs = []
        if ids:
            rows = session.execute(JOB_ROWS.where(tables.Job.id.in_(ids)).order_by(tables.Job.id)).all()
            jobs = [(job_out(j, t, u, state.loop), j) for j, t, u in rows]
        used = int(_used()[i])
        return page("node.html", who, token, node=node_out(state.cluster, row), jobs=jobs, used=used)

    @pages.post("/nodes/{name}/{action}")
    async def node_action(name: str, action: str, request: Request, session: Session = Depends(db)):
        who, _, fields = await admin_form(request, session, signed)
        if action == "drain":
            reason = fields.get("reason", "").strip()
            if len(reason) > MAX_REASON or not reason.isprintable():
                raise HTTPException(422, f"reason: at most {MAX_REASON} printable characters")
            reason = reason or f"drained by {who.name}"
            set_node_state(session, state.cluster, state.loop, name, NodeState.DRAINING, reason, who.name)
        elif action == "undrain":
            set_node_state(session, state.cluster, state.loop, name, NodeState.UP, "", who.name)
        else:
            raise HTTPException(404, f"no action {action[:40]!r}; one of drain, undrain")
        return RedirectResponse(
            f"/nodes/{name}" if fields.get("back") == "node" else "/nodes", status_code=303
        )


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _kind(request: Request) -> str:
    kind = request.query_params.get("kind", "")
    if kind and kind not in events.KINDS:
        raise HTTPException(422, f"kind: one of {', '.join(events.KINDS)}; got {kind[:40]!r}")
    return kind


def _nodes_of(session: Session, cluster) -> list:
    rows = session.scalars(select(tables.Node).order_by(tables.Node.id))
    return [node_out(cluster, r) for r in rows if r.name in cluster.node_index]


def _depths(queues) -> dict[str, int]:
    """Each queue's depth below the shown tree's top (for indenting the tree)."""
    parent = {q.name: q.parent for q in queues}
    depth = {}
    for q in queues:
        d, p = 0, q.parent
        while p in parent and d < 32:
            d, p = d + 1, parent[p]
        depth[q.name] = d
    return depth
