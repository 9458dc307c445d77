"""The quota tree in force, as the API reads it: parsed once per change and cached."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wanka.core import Cluster, Feasibility, QueueTree, check_feasibility
from wanka.core.feasibility import check_time_limit
from wanka.core.pending import feasibility_shape
from wanka.models.quota import (
    DEFAULT_PRIORITY_CLASSES,
    QueueTreeSpec,
    granted_priority_classes,
    parse_queue_tree,
)
from wanka.server import tables
from wanka.server.quota_api import subtree


class TreeCache:
    """The quota tree in force, parsed once and kept until it changes (quota apply, a new tenant):
    this server's own changes invalidate it at once, another server's within a second."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self._tree: tuple[QueueTree, dict[str, frozenset[str]]] | None = None
        self._generation = 0
        self._verdicts: dict[tuple, Feasibility] = {}
        self._checked_at = 0.0
        self._version: tuple | None = None

    def _load(self, session: Session) -> tuple[QueueTree, dict[str, frozenset[str]]]:
        if time.monotonic() - self._checked_at > 1.0:  # another server on the database may write
            self._checked_at = time.monotonic()
            version = (
                session.scalar(select(func.max(tables.QuotaDocument.id))),
                session.scalar(select(func.max(tables.Tenant.id))),
            )
            if version != self._version:
                self._version = version
                self.invalidate()
        loaded = self._tree
        if loaded is None:
            generation = self._generation
            loaded = queue_tree(session, self.cluster, with_grants=True)
            if generation == self._generation:  # not invalidated while it was being read
                self._tree = loaded
        return loaded

    def get(self, session: Session) -> QueueTree:
        return self._load(session)[0]

    def priority_classes(self, session: Session, queue: str) -> frozenset[str]:
        """The priority classes a member may use in ``queue`` (the quota document grants them)."""
        return self._load(session)[1].get(queue, DEFAULT_PRIORITY_CLASSES)

    def feasibility(self, session: Session, job) -> Feasibility:
        """Whether ``job`` could ever run under the tree in force (one verdict per job shape)."""
        tree = self.get(session)
        key = (id(tree), feasibility_shape(job))
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            verdict = self._verdicts[key] = check_feasibility(self.cluster, tree, job, time_limit=False)
        if verdict.ok and job.time_limit_s is not None and tree.limits_time:
            verdict = check_time_limit(tree, job) or verdict  # limits vary job by job: not cached
        return verdict

    def invalidate(self) -> None:
        self._generation += 1
        self._tree = None
        self._verdicts = {}


def quota_body(session: Session, with_source: bool = False):
    """The quota document in force: the newest applied, or one organisation per tenant (named like
    it, no nominal quota: everyone borrows from the whole cluster) before any is applied. With
    ``with_source``: (body, where it came from)."""
    doc = session.scalar(select(tables.QuotaDocument).order_by(tables.QuotaDocument.id.desc()).limit(1))
    if doc is not None:
        body, source = doc.body, f"quota document {doc.id}"
    else:
        names = list(session.scalars(select(tables.Tenant.name).order_by(tables.Tenant.id)))
        body = {"organisations": [{"name": n} for n in names] or [{"name": "nobody"}]}
        source = "default queues"
    return (body, source) if with_source else body


def queue_tree(session: Session, cluster: Cluster, with_grants: bool = False):
    """The quota tree in force: the newest applied document, or one queue per tenant (named like
    it, no nominal quota: everyone borrows from the whole cluster) before any is applied. With
    ``with_grants``: (tree, queue -> priority classes its members may use)."""
    body, source = quota_body(session, with_source=True)
    tree = parse_queue_tree(body, cluster, source)
    if not with_grants:
        return tree
    return tree, granted_priority_classes(QueueTreeSpec.model_validate(body))


def tenant_queues(tree: QueueTree, tenant: str) -> set[str]:
    """Leaf queues under the organisation named like the tenant (the organisation itself when it is
    a leaf)."""
    return {tree.names[i] for i in subtree(tree, tenant) if not tree.children[i]}


def default_queue(tree: QueueTree, tenant: str) -> str:
    """Where a tenant's job goes when it names no queue: the organisation named like the tenant
    when it is a leaf (before any quota document, and in documents that keep it one), else the
    first of its leaf queues in the document's order (docs/specs.md)."""
    if tenant in tree.index and tree.is_leaf(tenant):
        return tenant
    for i in subtree(tree, tenant):  # ascending index: the document's breadth-first order
        if tree.is_leaf(tree.names[i]):
            return tree.names[i]
    return tenant  # no queue at all: refused by name, with the tenant's queues listed
