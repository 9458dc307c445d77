"""A deterministic discrete-event queue: events ordered by (time, priority, sequence).

Time is simulated seconds; nothing here reads a clock. Same events pushed in the same order, same
order popped — so a seed reproduces a run exactly.
"""

from __future__ import annotations

import heapq
from enum import IntEnum
from typing import Any


class EventKind(IntEnum):
    """Also the priority at equal times: repairs and failures change the cluster first, work that
    ends frees cards before new work arrives, and the scheduling round sees all of it."""

    REPAIR = 0
    FAILURE = 1
    FINISH = 2
    ARRIVAL = 3
    SCALE = 4  # the services' autoscalers look at the load (sim.services)
    LAS_QUEUE = (
        5  # a job changes Tiresias LAS queue: its attained service crosses a threshold, or it is promoted
    )
    CYCLE = 6


class EventQueue:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0

    def push(self, time: float, kind: EventKind, payload: Any = None) -> None:
        heapq.heappush(self._heap, (time, int(kind), self._seq, payload))
        self._seq += 1

    def pop(self) -> tuple[float, EventKind, Any]:
        time, kind, _, payload = heapq.heappop(self._heap)
        return time, EventKind(kind), payload

    def peek_time(self) -> float:
        return self._heap[0][0]

    def __len__(self) -> int:
        return len(self._heap)
