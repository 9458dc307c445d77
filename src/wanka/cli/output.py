"""Shared output helpers: rich for people, stable JSON for scripts, clear errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    # one line, however narrow the terminal: scripts and people grep for it
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise SystemExit(code)
