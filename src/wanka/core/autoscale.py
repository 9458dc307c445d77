"""How many replicas a service should run: the autoscaler the control loop and the twin share.

The rule is Kubernetes' Horizontal Pod Autoscaler with stabilization windows
(kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale, "Stabilization window"):

- the recommendation is ``ceil(observed / target)``, bounded by ``min`` and ``max``, where observed
  is requests per second or requests in flight, averaged by the caller over ``window_s``
  (Knative's stable window); any load at all asks for one replica, only none for zero;
- a scale-up goes to the *lowest* recommendation of the last ``up_delay_s`` seconds, a scale-down
  to the *highest* of the last ``down_delay_s`` seconds, so a rise must last the up delay and a
  fall the down delay before the count follows (dstack's ``scale_up_delay``/``scale_down_delay``);
- from zero replicas, a waiting request starts one at once (Knative's activator: the first
  request waits for a replica, never for a delay).

Which replicas are guaranteed and which go first follow Run:ai's rule for inference on a shared
cluster: replicas up to ``min`` that the queue's nominal quota holds are never preempted, the
others are preemptible (:func:`guaranteed_replicas`); surplus replicas stop in the order of
:func:`retire_order`. The control plane's service keeper and the twin both call these.

Pure: the caller supplies the time and the observation; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from wanka.core.quota import QueueTree


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
        float noise in an average must not ask for a replica), and at least one while there is any
        load: only no traffic at all scales to zero (Knative), as a step from zero wakes one."""
        want = max(1, math.ceil(observed / self.target - 1e-9)) if observed > 0 else 0
        return max(self.min, min(self.max, want))


def recommendations(observed: np.ndarray, target: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:meth:`ScalingPolicy.recommend` for many services at once: arrays of one entry per service
    (observed load, target per replica, min, max); returns int64 replica counts."""
    want = np.where(observed > 0, np.maximum(1.0, np.ceil(observed / target - 1e-9)), 0.0)
    return np.clip(want, lo, hi).astype(np.int64)


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

    @property
    def settled(self) -> int | None:
        """The recommendation a step would leave everything unchanged for (the count has held
        for longer than both delays), or None while a change is still in the window. A caller
        stepping many scalers may skip those whose recommendation equals this: nothing would
        happen."""
        if len(self.history) == 1 and self.history[0][1] == self.replicas:
            return self.replicas
        return None

    def _since(self, start: float) -> list[int]:
        """The recommendations in force at any time from ``start`` to now."""
        out = []
        for i, (_t, rec) in enumerate(self.history):
            ends = self.history[i + 1][0] if i + 1 < len(self.history) else math.inf
            if ends > start:
                out.append(rec)
        return out


def guaranteed_replicas(min_replicas: int, cards: int, nominal_cards: int, held_cards: int = 0) -> int:
    """Replicas never preempted: up to ``min_replicas``, as many as the queue's nominal quota
    (``nominal_cards``) holds beyond the ``held_cards`` its other services' never-preempted
    replicas take (Run:ai: inference replicas within quota are guaranteed, those over it are
    preemptible). A replica without cards takes no quota."""
    if cards == 0:
        return min_replicas
    return max(0, min(min_replicas, (nominal_cards - held_cards) // cards))


def nominal_cards(tree: QueueTree, queue: str, accelerators: Iterable[str] = ()) -> int:
    """The queue's nominal quota, in cards, on the best flavor a replica asking for
    ``accelerators`` (models or vendors, case-insensitive; empty: any) may use; 0 for a queue the
    tree does not have."""
    i = tree.index.get(queue)
    if i is None:
        return 0
    wanted = {a.lower() for a in accelerators}
    best = 0
    for k, flavor in enumerate(tree.flavors):
        if not wanted or flavor.lower() in wanted or any(w in flavor.lower() for w in wanted):
            best = max(best, tree.nominal[i][k])
    return best


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What choosing replicas to stop looks at. ``order``: creation order (newer is larger)."""

    key: object
    running: bool
    guaranteed: bool
    ready: bool
    order: int


def retire_order(replicas: Iterable[ReplicaView]) -> list[ReplicaView]:
    """Replicas in the order surplus ones stop: preemptible ones before never-preempted ones, so a
    service keeps its guarantee (Run:ai); within each, those not running yet, then those not
    ready, then the newest (Kubernetes' ReplicaSet scales down pending and unready pods first)."""
    return sorted(replicas, key=lambda r: (r.guaranteed, r.running, r.ready, -r.order))
