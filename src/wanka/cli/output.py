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


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    # one line, however narrow the terminal: scripts and people grep for it
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise SystemExit(code)


def card_count(n: int) -> str:
    """``1 card``, ``8 cards``."""
    return f"{n:,} card" if n == 1 else f"{n:,} cards"
