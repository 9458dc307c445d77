"""Turning validation failures into messages that name the field and what would be accepted."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import yaml
from pydantic import BaseModel, ValidationError


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


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The model that holds the field at ``loc`` (list indexes and dict keys passed through);
    None where the path leaves the models."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = inner_model(field.annotation)
    return model


def inner_model(annotation) -> type[BaseModel] | None:
    """The pydantic model in a type annotation (itself, or inside list/Optional/dict), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):  # list[X], X | None, dict[str, X]
        found = inner_model(arg)
        if found is not None:
            return found
    return None


def describe(
    errors: list[dict], skip: tuple[str, ...] = (), model: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """(field, message) of pydantic errors; ``skip`` drops leading location parts (FastAPI's "body").
    Given the validated ``model``, an unknown field's message lists the fields accepted there."""
    problems = []
    for e in errors:
        msg = e["msg"]
        loc = tuple(e["loc"])
        while loc and loc[0] in skip:
            loc = loc[1:]
        if e["type"] == "extra_forbidden":
            holder = _model_at(model, loc[:-1])
            if holder is None:
                msg = "unknown field (check the spelling; see the documented fields)"
            else:
                names = (f.alias or name for name, f in holder.model_fields.items())
                msg = f"unknown field; accepted here: {', '.join(sorted(names))}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append((field_path(loc), msg))
    return problems


def from_validation_error(
    source: str, err: ValidationError, model: type[BaseModel] | None = None
) -> SpecError:
    return SpecError(source, describe(err.errors(), model=model))


MAX_YAML_BYTES = 4 * 1024 * 1024  # a spec file, at most: the largest cluster spec is ~100 KiB


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without its two surprises for a spec: a key given twice (PyYAML keeps
    the last one silently) and aliases (``*name``: a few lines of them expand to billions of nodes,
    the "billion laughs"). Both are refused with where they are."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases (*{event.anchor}) are not accepted: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, source: str) -> dict:
    """A mapping from YAML text; every problem a :class:`SpecError` naming line and column."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise SpecError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise SpecError(source, [("(top level)", "expected a mapping of fields")])
    return data


def load_yaml(path: str | Path) -> dict:
    """A spec file: UTF-8, at most :data:`MAX_YAML_BYTES`, strict YAML (:class:`_StrictLoader`).
    Raises :class:`SpecError`."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise SpecError(str(p), [("(file)", exc.strerror or str(exc))]) from exc
    if len(raw) > MAX_YAML_BYTES:
        raise SpecError(str(p), [("(file)", f"larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(str(p), [(f"line {line}", f"not UTF-8 text (byte {exc.start})")]) from None
    return parse_yaml(text, str(p))
