"""Finding the job that makes a scheduling cycle fail, so that one bad job never stops the loop.

The core is pure (``run_cycle`` never changes its snapshot), so a cycle that raised can be tried
again on parts of the waiting queue without harm. Bisection finds each waiting job that makes a
cycle fail on its own in O(k log n) trial cycles (k culprits among n waiting jobs); the control
loop holds them with the reason and schedules everyone else in the same tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from wanka.core import CycleConfig, Job, Snapshot, run_cycle


def cycle_error(snapshot: Snapshot, policy: CycleConfig, pending: Sequence[Job]) -> Exception | None:
    """What a cycle over ``snapshot`` with only ``pending`` waiting raises, or None."""
    try:
        run_cycle(replace(snapshot, pending=list(pending), pending_index=None), policy)
    except Exception as exc:  # any failure of the core counts: that is what is being searched for
        return exc
    return None


def find_culprits(snapshot: Snapshot, policy: CycleConfig) -> dict[str, Exception]:
    """Waiting jobs (id -> the error) each of which makes a cycle fail with no other job waiting.
    Empty when the cycle fails without any waiting job (the fault is elsewhere) or only through
    jobs together (nothing to pin on one)."""
    if cycle_error(snapshot, policy, []) is not None:
        return {}
    found: dict[str, Exception] = {}
    todo = [list(snapshot.pending)]
    while todo:
        jobs = todo.pop()
        error = cycle_error(snapshot, policy, jobs)
        if error is None:
            continue
        if len(jobs) == 1:
            found[jobs[0].id] = error
            continue
        middle = len(jobs) // 2
        todo += [jobs[:middle], jobs[middle:]]
    return found
