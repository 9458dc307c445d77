"""Turning validation failures into messages that name the field and what would be accepted."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


class SpecError(ValueError):
    """A spec (cluster, catalog, queues, job) that cannot be used. ``problems`` are (field, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"] + [f"  {f}: {m}" for f, m in problems]
        super().__init__("\n".join(lines))


def field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def describe(errors: list[dict], skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(field, message) of pydantic errors; ``skip`` drops leading location parts (FastAPI's "body")."""
    problems = []
    for e in errors:
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the documented fields)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        loc = tuple(e["loc"])
        while loc and loc[0] in skip:
            loc = loc[1:]
        problems.append((field_path(loc), msg))
    return problems


def from_validation_error(source: str, err: ValidationError) -> SpecError:
    return SpecError(source, describe(err.errors()))


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(p), [("(file)", exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise SpecError(str(p), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if not isinstance(data, dict):
        raise SpecError(str(p), [("(top level)", "expected a mapping of fields")])
    return data
