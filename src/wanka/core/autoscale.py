"""How many replicas a service should run: the autoscaler the control loop and the twin share.

The rule is Kubernetes' Horizontal Pod Autoscaler with stabilization windows
(kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale, "Stabilization window"):

- the recommendation is ``ceil(observed / target)``, bounded by ``min`` and ``max``, where observed
  is requests per second or requests in flight, averaged by the caller over ``window_s``
  (Knative's stable window);
- a scale-up goes to the *lowest* recommendation of the last ``up_delay_s`` seconds, a scale-down
  to the *highest* of the last ``down_delay_s`` seconds, so a rise must last the up delay and a
  fall the down delay before the count follows (dstack's ``scale_up_delay``/``scale_down_delay``);
- from zero replicas, a waiting request starts one at once (Knative's activator: the first
  request waits for a replica, never for a delay).

Pure: the caller supplies the time and the observation; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Metric(StrEnum):
    RPS = "rps"  # requests per second, per replica
    INFLIGHT = "inflight"  # requests in flight (concurrency), per replica


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    metric: Metric
    target: float  # per replica, in the metric's unit
    min: int
    max: int
    window_s: float = 30.0
    up_delay_s: float = 30.0
    down_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if not (self.target > 0 and 0 <= self.min <= self.max and self.max >= 1):
            raise ValueError(f"scaling policy: need target > 0 and 0 <= min <= max, max >= 1: {self}")

    def recommend(self, observed: float) -> int:
        """``ceil(observed / target)`` within [min, max] (a hair under a whole number rounds down:
        float noise in an average must not ask for a replica)."""
        want = math.ceil(observed / self.target - 1e-9) if observed > 0 else 0
        return max(self.min, min(self.max, want))


@dataclass(slots=True)
class Scaler:
    """One service's autoscaler state: the replica count it set and the recommendations of the
    last ``max(up_delay_s, down_delay_s)`` seconds, kept as change points (a steady load keeps one
    entry however often it is asked). A new scaler counts its current replicas as what was
    recommended until its first step: no change comes before a delay has passed."""

    policy: ScalingPolicy
    replicas: int
    history: list[tuple[float, int]] = field(default_factory=list)  # (since when, recommendation)

    def step(self, now: float, observed: float) -> str | None:
        """Observe ``observed`` (the metric's average, all replicas together) at ``now`` (seconds);
        update :attr:`replicas` and return why it changed, or None when it did not."""
        p = self.policy
        rec = p.recommend(observed)
        if not self.history:  # a scaler just made (a server that took over) asks a delay's patience
            self.history.append((now, max(p.min, min(p.max, self.replicas))))
        if self.history[-1][1] != rec:
            self.history.append((now, rec))
        horizon = now - max(p.up_delay_s, p.down_delay_s)
        while len(self.history) > 1 and self.history[1][0] <= horizon:
            self.history.pop(0)  # the entry in force at the horizon stays
        before = self.replicas
        what = f"{observed:.3g} {'requests/s' if p.metric is Metric.RPS else 'in flight'}"
        if before < p.min or before > p.max:
            self.replicas = max(p.min, min(p.max, before))
            return f"{before} -> {self.replicas} replicas: bounds are now {p.min}..{p.max}"
        if before == 0 and observed > 0:
            self.replicas = max(1, rec)
            return f"0 -> {self.replicas} replicas: a request is waiting ({what}); scale from zero"
        up = min(self._since(now - p.up_delay_s))
        if up > before:
            self.replicas = up
            return (
                f"{before} -> {up} replicas: {what}, target {p.target:g} per replica, "
                f"held for {p.up_delay_s:g} s"
            )
        down = max(self._since(now - p.down_delay_s))
        if down < before:
            self.replicas = down
            return (
                f"{before} -> {down} replicas: {what}, target {p.target:g} per replica, "
                f"for {p.down_delay_s:g} s"
            )
        return None

    def _since(self, start: float) -> list[int]:
        """The recommendations in force at any time from ``start`` to now."""
        out = []
        for i, (_t, rec) in enumerate(self.history):
            ends = self.history[i + 1][0] if i + 1 < len(self.history) else math.inf
            if ends > start:
                out.append(rec)
        return out
