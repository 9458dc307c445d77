"""Others' Kubernetes work as wanka jobs: pods with ``schedulerName: wanka`` (a PodGroup's, or one
alone) become a job of their namespace's tenant, admitted against its quota and placed as a gang
by the same core; the Kubernetes backend binds them. How each fares is written back on the
PodGroup and the pods.

Namespace -> tenant: the namespace's label ``wanka.io/tenant`` (set by the cluster's operators:
tenants must not be allowed to label namespaces), else the ``wanka-TENANT`` namespaces that
``--namespace-per-tenant`` creates. A namespace that maps to no tenant runs nothing; its pods
say why.

The job: one task group per role (``volcano.sh/task-spec``, else ``worker``) with the pods'
cards (their accelerator resource's limit), CPUs and memory; its queue the PodGroup's
``spec.queue`` (else the tenant's default), its class ``spec.priorityClassName`` where wanka has
a class of that name (else ``normal``); no restarts — the pods' owner makes new ones. Every check
of a submission through the API applies (``jobs_api.create_job``), and the workload's uid is the
idempotency key, so a server that crashed between creating the job and recording it makes no
second one.
"""

from __future__ import annotations

import hashlib
import logging
import time

from fastapi import HTTPException, Response
from pydantic import ValidationError
from sqlalchemy import select

from wanka.backends.k8s import TENANT_LABEL, namespace_for
from wanka.core.jobs import PRIORITY_CLASSES
from wanka.models.job import JobSpec
from wanka.server import tables
from wanka.server.auth import Principal
from wanka.server.job_service import request_cancel

log = logging.getLogger("wanka.k8s")

REPORT_EVERY_S = 2.0  # states of claimed workloads written back at most this often (when changed)
ENDED = ("succeeded", "failed", "cancelled")


class KubeIntake:
    """Run by the control loop each tick; does nothing unless others' pods or PodGroups changed,
    or a claimed workload's report is due."""

    def __init__(self, state, backend) -> None:
        self.state, self.backend = state, backend
        self._seen = -1
        self._next_report = 0.0

    def tick(self, now: float) -> None:
        generation = self.backend.foreign_generation
        due = now >= self._next_report and self.backend.claims.workloads
        if generation == self._seen and not due:
            return
        self._seen, self._next_report = generation, now + REPORT_EVERY_S
        waiting = {w.key: w for w in self.backend.foreign_work()}
        with self.state.sessions() as session:
            for w in waiting.values():
                if w.key not in self.backend.claims.jobs:
                    try:
                        self._take(session, w)
                    except Exception:  # one workload's trouble must not stop the others'
                        log.exception("%s %s/%s", w.kind, w.namespace, w.name)
                        session.rollback()
            self._report(session, waiting)

    def _take(self, session, w) -> None:
        tenant = self._tenant(session, w.namespace)
        if tenant is None:
            why = f"namespace {w.namespace} is no wanka tenant's: label it {TENANT_LABEL}=TENANT"
            return self._say(w, why)
        if w.problem:
            return self._say(w, w.problem)
        catalog_ids = (
            [a.id for a in self.backend.catalog if a.k8s_resource == w.resource] if w.resource else []
        )
        try:
            spec = JobSpec(
                name=f"{w.kind.lower()}/{w.namespace}/{w.name}"[:200],
                tenant=tenant[1],
                queue=w.queue or "default",
                priority_class=w.priority_class if w.priority_class in PRIORITY_CLASSES else "normal",
                task_groups=[{**g, "accelerators": catalog_ids} for g in w.task_groups()],
                command=["kubernetes", w.kind, f"{w.namespace}/{w.name}"],
            )
        except ValidationError as exc:
            return self._say(
                w, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())[:500]
            )
        from wanka.server.jobs_api import create_job

        try:
            who = self._principal(session, *tenant)
            out = create_job(self.state, session, who, spec, Response(), idempotency_key=f"k8s:{w.key}")
        except HTTPException as exc:
            session.rollback()
            return self._say(w, _detail(exc.detail))
        self.backend.claims.add(w.key, out.id, w)
        log.info("%s %s/%s is job %d of %s", w.kind, w.namespace, w.name, out.id, tenant[1])

    def _say(self, w, why: str) -> None:
        self.backend.reporter.workload(
            w.key, w.kind, w.namespace, w.name, [t.pod for t in w.tasks], "pending", why
        )

    def _report(self, session, waiting: dict) -> None:
        """Each claimed workload's job state on its objects; a job whose pods were deleted while
        it waited is cancelled; an ended job's claim is dropped."""
        claims = self.backend.claims
        said = self.backend.reporter.said  # forget what was said of workloads gone and unclaimed
        for key in [k for k in said if k not in waiting and k not in claims.jobs]:
            del said[key]
        if not claims.workloads:
            return
        rows = session.execute(
            select(
                tables.Job.id, tables.Job.state, tables.Job.reason, tables.Job.queue, tables.Job.submit_time
            ).where(tables.Job.id.in_(list(claims.workloads)))
        ).all()
        found = {r.id for r in rows}
        for job_id in [j for j in claims.workloads if j not in found]:  # deleted from the database
            claims.drop(job_id)
        cancelled = []
        for job_id, state, reason, queue, submitted in rows:
            key = claims.workloads[job_id]
            info = claims.info(job_id) or {}
            w = waiting.get(key)
            if state in ("pending", "held") and w is None:
                if request_cancel(session, job_id, "its pods were deleted in Kubernetes"):
                    cancelled.append(job_id)
                continue
            pods = [t.pod for t in w.tasks] if w is not None else []
            # why it waits, as `wanka show` says it (the last cycle's verdict)
            why = self.state.loop.waiting_reason(job_id, queue, submitted) if state == "pending" else None
            message = (
                why or reason or ("waiting for the next scheduling cycle" if state == "pending" else state)
            )
            self.backend.reporter.workload(
                key,
                info.get("kind", "Pod"),
                info.get("namespace", ""),
                info.get("name", ""),
                pods,
                state,
                message,
            )
            if state in ENDED:
                claims.drop(job_id)
                self.backend.reporter.said.pop(key, None)
        session.commit()
        for job_id in cancelled:
            self.state.loop.notify("cancelled", job_id)

    def _tenant(self, session, namespace: str) -> tuple[int, str] | None:
        """(id, name) of the tenant whose quota the namespace's pods spend, or None."""
        rows = session.execute(
            select(tables.Tenant.id, tables.Tenant.name).where(tables.Tenant.disabled_at.is_(None))
        ).all()
        label = self.backend.namespace_labels(namespace).get(TENANT_LABEL)
        # by name only a namespace wanka made itself (--namespace-per-tenant): one a user made
        # and called wanka-TENANT must not spend that tenant's quota
        made = self.backend.made_namespace(namespace)
        for tenant_id, name in rows:
            if name == label or (made and namespace_for(name, True, "") == namespace):
                return tenant_id, name
        return None

    def _principal(self, session, tenant_id: int, tenant: str) -> Principal:
        """The member ``k8s-TENANT`` (made once, with no token) that others' jobs are submitted as,
        so they are billed to the tenant and visible to its members."""
        name = f"k8s-{tenant}"
        if len(name) > 64:  # two long names with one prefix must not share a user
            name = f"{name[:55]}-{hashlib.sha256(tenant.encode()).hexdigest()[:8]}"
        user = session.scalar(select(tables.User).where(tables.User.name == name))
        if user is None:
            user = tables.User(name=name, role="member", tenant_id=tenant_id, created_at=time.time())
            session.add(user)
            session.flush()
        if user.tenant_id != tenant_id or user.role != "member":
            raise HTTPException(409, f"user {name} exists and is not {tenant}'s: rename it")
        return Principal(user.id, user.name, "member", tenant_id, tenant)


def _detail(detail) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{d.get('field', '')}: {d.get('message', d)}" if isinstance(d, dict) else str(d) for d in detail
        )[:500]
    return str(detail)[:500]
