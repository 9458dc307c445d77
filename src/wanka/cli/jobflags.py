"""`wanka submit`'s flags as a job spec: Slurm's spellings where Slurm has the same thing.

Pure functions (no server, no typer): ``tests/cli/test_jobflags.py`` checks each against the
formats Slurm documents (sbatch(1): ``--time``, ``--mem``, ``--export``).
"""

from __future__ import annotations

import math
import re

# sbatch --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
# "days-hours:minutes" and "days-hours:minutes:seconds"
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_SUFFIXED = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", re.IGNORECASE)
_MEM_GIB = {"K": 1 / (1024 * 1024), "M": 1 / 1024, "": 1 / 1024, "G": 1, "T": 1024}


def parse_time(text: str) -> float:
    """Seconds from a Slurm ``--time`` value (a bare number is minutes, as in Slurm), or from a
    number with a unit: ``90s``, ``30m``, ``2h``, ``1d``. Raises ValueError naming the formats."""
    value = text.strip()
    suffixed = _SUFFIXED.match(value)
    if suffixed:
        seconds = float(suffixed.group(1)) * _UNIT_S[suffixed.group(2)]
    else:
        m = _SLURM_TIME.match(value)
        if m is None:
            raise ValueError(
                f"{text!r} is not a time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS "
                "(as Slurm's --time), or a number with s, m, h or d"
            )
        days, first, second, third = m.groups()
        if days is not None:  # days-hours[:minutes[:seconds]]
            seconds = int(days) * 86400 + int(first) * 3600 + int(second or 0) * 60 + int(third or 0)
        elif third is not None:  # hours:minutes:seconds
            seconds = int(first) * 3600 + int(second) * 60 + int(third)
        elif second is not None:  # minutes:seconds
            seconds = int(first) * 60 + int(second)
        else:  # minutes
            seconds = int(first) * 60
    if not seconds > 0:
        raise ValueError(f"{text!r}: a time limit must be more than 0")
    return float(seconds)


def parse_memory_gib(text: str) -> int:
    """Whole GiB (rounded up) from a Slurm ``--mem`` value: a number with K, M, G or T; a bare
    number is megabytes, as in Slurm. Raises ValueError."""
    m = _MEM.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an amount of memory: a number with K, M, G or T (bare: MB)")
    gib = float(m.group(1)) * _MEM_GIB[m.group(2).upper()]
    return max(1, math.ceil(gib)) if gib > 0 else 0


def parse_env(items: list[str]) -> dict[str, str]:
    """``NAME=value`` pairs (``--env``, repeatable). Raises ValueError for one without ``=``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{item!r}: give NAME=value")
        out[name] = value
    return out


def apply_flags(spec: dict, flags: dict) -> dict:
    """``spec`` (from a file, or empty) with the flags given on the command line laid over it, as
    sbatch's options win over a script's ``#SBATCH`` lines. ``flags`` holds only what was given:
    name, queue, tenant, kind, priority_class, time_limit_s, restart, env, command, array,
    dependency, and for the
    first task group: cards, tasks, nodes, tasks_per_node, cpus, memory_gib, models."""
    out = dict(spec)
    for key in (
        "name",
        "queue",
        "tenant",
        "kind",
        "priority_class",
        "time_limit_s",
        "command",
        "array",
        "dependency",
    ):
        if key in flags:
            out[key] = flags[key]
    if "restart" in flags:
        out["restart"] = {**(out.get("restart") or {}), "max": flags["restart"]}
    if "env" in flags:
        out["env"] = {**(out.get("env") or {}), **flags["env"]}
    group = dict((out.get("task_groups") or [{}])[0])
    for flag, field in (("cards", "cards"), ("cpus", "cpus"), ("memory_gib", "memory_gib")):
        if flag in flags:
            group[field] = flags[flag]
    if "models" in flags:
        group["accelerators"] = flags["models"]
    nodes, tasks, per_node = flags.get("nodes"), flags.get("tasks"), flags.get("tasks_per_node")
    if nodes is not None:  # Slurm: --nodes N [--ntasks-per-node T] is N×T tasks, T per node
        per_node = per_node or (max(1, -(-tasks // nodes)) if tasks else 1)
        tasks = tasks or nodes * per_node
    if tasks is not None:
        group["replicas"] = tasks
    if per_node is not None:
        group["tasks_per_node"] = per_node
    out["task_groups"] = [group, *(out.get("task_groups") or [{}])[1:]]
    return out
