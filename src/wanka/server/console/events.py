"""The events and audit stream: what happened to jobs (submitted, started, preempted, failed…),
and for admins also to nodes (drains, health, inventory), the quota tree and prices, newest
first, from the tables that record them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.server import tables

KINDS = ("job", "node", "quota", "price")
LIMIT = 200


@dataclass(frozen=True)
class Event:
    time: float
    kind: str  # one of KINDS
    subject: str  # the job, node or document it concerns
    state: str  # a job's or node's new state; "applied" for documents
    text: str
    link: str | None = None  # the console page of its subject


def stream(session: Session, who, kind: str = "", limit: int = LIMIT) -> list[Event]:
    """The newest ``limit`` events ``who`` may see, of one kind or all: a member its tenant's jobs'
    only; an admin everything."""
    kinds = [kind] if kind else list(KINDS)
    if not who.is_admin:
        kinds = [k for k in kinds if k == "job"]
    out: list[Event] = []
    if "job" in kinds:
        q = (
            select(tables.JobEvent, tables.Job.name, tables.Tenant.name)
            .join(tables.Job, tables.Job.id == tables.JobEvent.job_id)
            .join(tables.Tenant, tables.Tenant.id == tables.Job.tenant_id)
            .order_by(tables.JobEvent.id.desc())
            .limit(limit)
        )
        if not who.is_admin:
            q = q.where(tables.Job.tenant_id == who.tenant_id)
        for e, name, tenant in session.execute(q):
            subject = (
                f"job {e.job_id}" + (f" {name}" if name else "") + (f" ({tenant})" if who.is_admin else "")
            )
            out.append(Event(e.time, "job", subject, e.state, e.reason, f"/jobs/{e.job_id}"))
    if "node" in kinds:
        q = select(tables.NodeEvent).order_by(tables.NodeEvent.id.desc()).limit(limit)
        for e in session.scalars(q):
            text = f"{e.reason} — by {e.by}" if e.reason else f"by {e.by}"
            out.append(Event(e.time, "node", f"node {e.node}", e.state, text, f"/nodes/{quote(e.node)}"))
    for k, table in (("quota", tables.QuotaDocument), ("price", tables.PriceDocument)):
        if k not in kinds:
            continue
        q = (
            select(table.id, table.applied_at, tables.User.name)
            .join(tables.User, tables.User.id == table.applied_by)
            .order_by(table.id.desc())
            .limit(limit)
        )
        for doc_id, at, user in session.execute(q):
            what = "quota tree" if k == "quota" else "price table"
            out.append(Event(at, k, f"{what} {doc_id}", "applied", f"applied by {user}"))
    out.sort(key=lambda e: -e.time)
    return out[:limit]
