"""Bounds on what a user may send: every string and number that enters wanka has one.

A string must fit what both databases store and what the kernel passes to a process; a number
must fit the core's arrays. What no cluster could ever give is refused here, before anything is
stored; what this cluster cannot give is the feasibility check's (``core.feasibility``).

Sources: Linux ``MAX_ARG_STRLEN`` (one argv or environment string, 32 pages = 128 KiB with its NUL)
and the default ``ARG_MAX`` (a quarter of the 8 MiB stack, 2 MiB for argv and environment
together, pointers included); PostgreSQL refuses NUL in ``text`` and ``varchar``
(postgresql.org/docs/current/datatype-character.html).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_ARG_STRLEN = 128 * 1024  # bytes of one argv or environment string, its NUL included
MAX_EXEC_BYTES = 256 * 1024  # argv + environment of a job: well under ARG_MAX, and what a job stores
MAX_ENV_VARS = 1024
MAX_ARGS = 4096
MAX_CPUS_PER_TASK = 65_536  # no node has more; the core counts CPUs in int32
MAX_MEMORY_GIB_PER_TASK = 1 << 20  # 1 PiB
MAX_REPLICAS = 100_000  # the spec's ceiling; a server's --max-tasks-per-job is usually lower
MAX_ARRAY_ELEMENTS = 100_000  # elements of one job array (Slurm's MaxArraySize is 1,001 by default)
MAX_SECONDS = 10 * 366 * 86400.0  # time limits and intervals: ten years
MAX_TIME = 2.0**40  # UNIX seconds: some 34,000 years on
NAME_LEN = 64  # tenants, users, queues: String(64) in both databases


def no_nul(value: str) -> str:
    """Refuses NUL and lone surrogates: neither is text that both databases and the kernel take
    (a surrogate half from JSON's ``\\udc80`` cannot even be encoded as UTF-8)."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\0), which is not accepted in any string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains a lone surrogate ({value[exc.start]!r} at {exc.start}): not valid Unicode text"
        ) from None
    return value


# C0 and C1 controls, DEL, the bidirectional marks and overrides, the zero-width space and BOM,
# line separators: a terminal acts on them, or they hide or reorder what is shown (the zero-width
# joiner and non-joiner stay: Persian, Indic scripts and emoji need them)
_INVISIBLE = [0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x061C, 0xFEFF]
_CONTROLS = {
    *range(0x20),
    *range(0x7F, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *_INVISIBLE,
}


def no_controls(value: str) -> str:
    """Refuses control characters in a label others read in tables (a job's name, a token's label,
    a reason): an escape sequence there would act on an operator's terminal, a newline fake a row."""
    for i, c in enumerate(value):
        if ord(c) in _CONTROLS:
            raise ValueError(
                f"contains the control character {c!r} at {i}; a name or label is printable text only"
            )
    return value


def finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {value}")
    return value


#: Any user string: no NUL (PostgreSQL cannot store one, and the kernel would cut an argv there).
Text = Annotated[str, AfterValidator(no_nul)]
#: One argv or environment string, as the kernel accepts it.
ArgText = Annotated[str, AfterValidator(no_nul), Field(max_length=MAX_ARG_STRLEN - 1)]
#: A label shown to others in tables: a job's name, a token's label, a reason.
LabelText = Annotated[str, AfterValidator(no_nul), AfterValidator(no_controls)]
#: A name of a tenant, user or queue.
NameText = Annotated[str, AfterValidator(no_nul), Field(max_length=NAME_LEN)]


def exec_bytes(argv: list[str], env: dict[str, str]) -> int:
    """Bytes that ``execve`` copies for ``argv`` and ``env`` (each string with its NUL, ``=``)."""
    return sum(len(a.encode()) + 1 for a in argv) + sum(
        len(k.encode()) + len(v.encode()) + 2 for k, v in env.items()
    )
