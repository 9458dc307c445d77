"""The quota editor: the YAML document ``wanka quotas apply`` takes, checked as the operator types
(YAML, then the schema, then the rules a new tree must keep) and applied like ``PUT /v1/quotas``."""

from __future__ import annotations

import yaml
from fastapi import HTTPException
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from wanka.core import Cluster
from wanka.models.errors import SpecError, describe
from wanka.models.quota import QueueTreeSpec
from wanka.server import tables
from wanka.server.console.forms import problems_of
from wanka.server.quota_api import AppliedOut, apply_quotas, check_quotas

MAX_DOCUMENT_BYTES = 256 * 1024  # a quota tree for thousands of queues
MAX_DEPTH = 64  # nested lists and mappings; a real tree is a few levels deep
MAX_NODES = 200_000  # values once aliases are expanded (a 418-byte alias bomb expands to millions)


def _bounded(data) -> None:
    """SpecError unless ``data`` (as YAML loaded it: aliases are shared objects) stays within
    :data:`MAX_DEPTH` and, counting every alias as often as it is used, :data:`MAX_NODES`. Walked
    without recursion, and stops at the bound: it never expands a bomb."""
    todo, seen = [(data, 1)], 0
    while todo:
        value, depth = todo.pop()
        seen += 1
        if seen > MAX_NODES:
            raise SpecError("document", [("document", f"more than {MAX_NODES:,} values (aliases expanded)")])
        if depth > MAX_DEPTH:
            raise SpecError("document", [("document", f"nested deeper than {MAX_DEPTH} levels")])
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value)


def current_document(session: Session) -> str:
    """The document in force, as YAML (empty when none was ever applied)."""
    body = session.scalar(select(tables.QuotaDocument.body).order_by(tables.QuotaDocument.id.desc()).limit(1))
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True) if body else ""


def parse(text: str) -> QueueTreeSpec:
    """The spec of a YAML document; SpecError naming each problem (line and column for YAML)."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise SpecError("document", [("document", f"at most {MAX_DOCUMENT_BYTES // 1024} KiB")])
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError("document", [("document", f"nested deeper than {MAX_DEPTH} levels")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            "document", [("document", f"{where}{getattr(exc, 'problem', None) or exc}")]
        ) from None
    if not isinstance(data, dict):
        raise SpecError("document", [("document", "a mapping with organisations: […]; see docs/specs.md")])
    _bounded(data)
    try:
        return QueueTreeSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("document", describe(list(exc.errors()), model=QueueTreeSpec)) from None


def check(session: Session, cluster: Cluster, text: str) -> tuple[list[tuple[str, str]], int]:
    """The document's problems (none: it may be applied) and how many queues it defines."""
    try:
        tree = check_quotas(session, cluster, parse(text))
    except SpecError as exc:
        return list(exc.problems), 0
    except HTTPException as exc:
        return problems_of(exc.detail), 0
    finally:
        session.rollback()
    return [], len(tree.names) - 1


def apply(session: Session, cluster: Cluster, who, text: str) -> AppliedOut:
    """Store the document (SpecError or HTTPException as :func:`check` reports them)."""
    return apply_quotas(session, cluster, who, parse(text))
