"""The submit form's fields, turned into the job spec ``POST /v1/jobs`` takes: every field bounded
and checked by :class:`~wanka.models.job.JobSpec` itself, problems named by the form's field."""

from __future__ import annotations

import urllib.parse

from fastapi import HTTPException, Request
from pydantic import ValidationError

from wanka.models.errors import describe
from wanka.models.job import JobSpec
from wanka.server.console import session as console_session

#: form field -> what it is called in a job spec (for naming a spec problem by its form field)
SPEC_FIELD = {
    "task_groups.0.replicas": "tasks",
    "task_groups.0.cards": "cards",
    "task_groups.0.accelerators": "model",
    "task_groups.0.accelerators.0": "model",
    "task_groups[0].replicas": "tasks",
    "task_groups[0].cards": "cards",
    "task_groups[0].accelerators": "model",
    "task_groups[0].accelerators[0]": "model",
    "task_groups[*].replicas": "tasks",
    "time_limit_s": "time_limit",
    "restart.max": "restarts",
    "env": "env",
    "command": "command",
}
DEFAULTS = {
    "name": "",
    "tenant": "",
    "queue": "",
    "priority_class": "normal",
    "tasks": "1",
    "cards": "1",
    "model": "",
    "command": "",
    "env": "",
    "time_limit": "",
    "restarts": "0",
}


# a job's command and env, a token or a drain reason (the RequestGuard bounds every body too)
MAX_FORM_BYTES = 16 * 1024


async def admin_form(request: Request, session, signed, limit: int = MAX_FORM_BYTES):
    """An admin's form: signed in (``signed``: the console's session check), within ``limit``
    bytes, with this session's CSRF token (403 otherwise). Returns (principal, session token,
    fields)."""
    who, token = signed(request, session)
    fields = await form_fields(request, limit)
    console_session.check_form(request, token, fields.get("csrf", ""))
    if not who.is_admin:
        raise HTTPException(403, "admins only")
    return who, token, fields


async def form_fields(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """An urlencoded form, bounded (413 past ``limit`` bytes); one value per field."""
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"form: at most {limit} bytes")
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise HTTPException(400, "form: not UTF-8 text") from None
    return dict(pairs)


class FormError(ValueError):
    """Problems with the form, as (form field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _whole(fields: dict, name: str, problems: list) -> int | None:
    text = fields.get(name, "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append((name, f"a whole number; got {text[:20]!r}"))
        return None


def spec_of(fields: dict[str, str], admin: bool = False) -> JobSpec:
    """The job spec of the form's fields. ``command``: one argument per line (no shell: the lines
    are the argv); ``env``: ``NAME=value`` per line; ``time_limit``: seconds, empty for none.
    Raises :class:`FormError` naming each bad field. ``admin``: the form must name the tenant."""
    problems: list[tuple[str, str]] = []
    if admin and not fields.get("tenant", "").strip():
        problems.append(("tenant", "an admin names the tenant the job runs for"))
    tasks, cards, restarts = (_whole(fields, n, problems) for n in ("tasks", "cards", "restarts"))
    env = {}
    for number, line in enumerate(fields.get("env", "").splitlines(), 1):
        if not line.strip():
            continue
        name, eq, value = line.partition("=")
        if not eq:
            problems.append(("env", f"line {number}: NAME=value; got {line[:40]!r}"))
        env[name.strip()] = value
    limit_text = fields.get("time_limit", "").strip()
    limit = None
    if limit_text:
        try:
            limit = float(limit_text)
        except ValueError:
            problems.append(("time_limit", f"seconds, or empty for none; got {limit_text[:20]!r}"))
    if problems:
        raise FormError(problems)
    model = fields.get("model", "").strip()
    data = {
        "name": fields.get("name", "").strip(),
        "tenant": fields.get("tenant", "").strip() or "default",  # admins name one; members act for theirs
        "queue": fields.get("queue", "").strip() or "default",
        "priority_class": fields.get("priority_class", "").strip() or "normal",
        "task_groups": [{"replicas": tasks, "cards": cards, "accelerators": [model] if model else []}],
        "command": [line for line in fields.get("command", "").splitlines() if line.strip()],
        "env": env,
        "time_limit_s": limit,
        "restart": {"max": restarts},
    }
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        found = describe(list(exc.errors()), model=JobSpec)
        raise FormError([(SPEC_FIELD.get(f, f), m) for f, m in found]) from None


def fields_of(spec: dict, tenant: str = "") -> tuple[dict[str, str], str]:
    """The form's fields for a stored job spec (resubmit with changes), and a note when the form
    cannot show all of it (it edits one task group; arrays and dependencies are left out)."""
    groups = spec.get("task_groups") or [{}]
    first = groups[0]
    limit = spec.get("time_limit_s")
    fields = {
        **DEFAULTS,
        "name": spec.get("name", ""),
        "tenant": tenant,
        "queue": spec.get("queue", "default"),
        "priority_class": spec.get("priority_class", "normal"),
        "tasks": str(first.get("replicas", 1)),
        "cards": str(first.get("cards", 1)),
        "model": (first.get("accelerators") or [""])[0],
        "command": "\n".join(spec.get("command") or []),
        "env": "\n".join(f"{k}={v}" for k, v in (spec.get("env") or {}).items()),
        "time_limit": "" if limit is None else f"{limit:g}",
        "restarts": str((spec.get("restart") or {}).get("max", 0)),
    }
    left_out = []
    if len(groups) > 1:
        left_out.append(f"task groups after the first ({len(groups) - 1})")
    left_out += [k for k in ("array", "dependency", "workdir", "checkpoint_interval_s") if spec.get(k)]
    note = f"The form edits one task group; left out: {', '.join(left_out)}." if left_out else ""
    return fields, note


def problems_of(detail) -> list[tuple[str, str]]:
    """An API error's ``detail`` (text, or a list of {field, message}) as form problems."""
    if isinstance(detail, list):
        return [
            (SPEC_FIELD.get(d.get("field", ""), d.get("field", "")), d.get("message", "")) for d in detail
        ]
    text = str(detail)
    field, sep, rest = text.partition(": ")
    if sep and field in ("queue", "task_groups", "tenant", "dependency", "array", "priority_class"):
        if field == "task_groups":  # what can never run here: its time limit, or its size
            field = "time_limit" if "time limit" in rest else "cards"
        return [(field, rest)]
    return [("", text)]
