"""Shared output helpers: rich for people, stable JSON for scripts, clear errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

from rich.console import Console
from rich.markup import escape


def _width(stream) -> int | None:
    """A terminal's own width; piped or redirected, wide enough that no table is cut or folded
    (rich would assume 80 columns). $COLUMNS wins either way."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return None if stream.isatty() else 1000


console = Console(width=_width(sys.stdout))
errors = Console(stderr=True, width=_width(sys.stderr))


# C0 and C1 control characters and DEL, and the bidirectional overrides ("trojan source"): what a
# terminal would act on or reorder instead of showing. Job names and reasons come from tenants.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update(
    {
        c: f"\\u{c:04x}"
        for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200B, 0x200E, 0x200F, 0x2028, 0x2029]
    }
)
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x061C, 0xFEFF)})


def printable(text: str, keep: str = "") -> str:
    """``text`` with every control character (but those in ``keep``) written as an escape
    (``\\x1b``), as Python's repr does: a string from the server is shown, never obeyed."""
    table = _CONTROL if not keep else {c: e for c, e in _CONTROL.items() if chr(c) not in keep}
    return text.translate(table)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    # one line, however narrow the terminal: scripts and people grep for it
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise SystemExit(code)


def card_count(n: int) -> str:
    """``1 card``, ``8 cards``."""
    return count(n, "card")


def count(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``, ``1,000 jobs``: a number and its noun, singular for one."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
