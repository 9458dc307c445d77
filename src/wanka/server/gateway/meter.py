"""A service's load as the gateway sees it: requests per second and requests in flight, averaged
over a window (the autoscaler's signal, core.autoscale)."""

from __future__ import annotations

import threading
import time
from collections import deque


class Meter:
    """Counts requests and integrates requests-in-flight over time (request-seconds), so any
    window's averages come from two samples. The gateway calls :meth:`begin` and :meth:`end`
    on its event loop; the control loop calls :meth:`observe` from its thread."""

    __slots__ = ("_lock", "_samples", "area", "count", "inflight", "last", "t")

    def __init__(self, now: float | None = None) -> None:
        self.count = 0  # requests begun
        self.inflight = 0
        self.area = 0.0  # integral of inflight over time, request-seconds
        self.t = time.monotonic() if now is None else now
        self.last = 0.0  # UNIX seconds of the last request's start or end (0: none yet)
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int, float]] = deque([(self.t, 0, 0.0)])

    def _advance(self, now: float) -> None:
        if now > self.t:
            self.area += self.inflight * (now - self.t)
            self.t = now

    def begin(self, now: float) -> None:
        with self._lock:
            self._advance(now)
            self.inflight += 1
            self.count += 1
        self.last = time.time()

    def end(self, now: float) -> None:
        with self._lock:
            self._advance(now)
            self.inflight -= 1
        self.last = time.time()

    def observe(self, now: float, window_s: float) -> tuple[float, float]:
        """(requests per second, mean requests in flight) over the last ``window_s`` seconds (over
        the time since the meter began, when that is shorter; at least 1 s)."""
        with self._lock:
            self._advance(now)
            count, area = self.count, self.area
        samples = self._samples
        samples.append((now, count, area))
        while len(samples) > 2 and samples[1][0] <= now - window_s:
            samples.popleft()  # the newest sample at or before the window's start stays
        t0, c0, a0 = samples[0]
        span = max(now - t0, 1.0)
        return (count - c0) / span, (area - a0) / span
