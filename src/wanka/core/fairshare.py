"""Fair-share arithmetic, as pure functions.

Compute is normalised: a card-hour counts as its card's rated half-precision PFLOPS × hours, so a
tenant on Ascend and one on Cambricon cards are compared by work, not by card counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESOURCES = ("compute", "cpu", "memory")  # compute in PFLOPS, cpu in cores, memory in GiB


@dataclass(frozen=True, slots=True)
class QueueUsage:
    """Exponentially decayed past usage of one queue, as of ``as_of`` (resource-seconds)."""

    compute: float = 0.0  # PFLOP·s at rated precision
    cpu: float = 0.0  # core·s
    memory: float = 0.0  # GiB·s
    as_of: float = 0.0


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    return 1.0 if half_life_s <= 0 or elapsed_s <= 0 else 0.5 ** (elapsed_s / half_life_s)


def accrue(
    previous: QueueUsage, now: float, rate: tuple[float, float, float], half_life_s: float
) -> QueueUsage:
    """Usage at ``now`` given ``previous`` and a constant allocation ``rate`` since then.

    Integrates ``rate`` under the same decay, so calling it every second or once an hour gives the
    same answer: ``U(now) = U(t0)·d + rate·τ·(1-d)`` with ``d`` the decay over the interval and
    ``τ = half_life / ln 2`` (plain ``rate·Δt`` when there is no decay).
    """
    dt = now - previous.as_of
    if dt < 0:
        raise ValueError("usage cannot be accrued backwards in time")
    d = decay_factor(dt, half_life_s)
    if half_life_s > 0:
        tau = half_life_s / math.log(2)
        gain = tau * (1.0 - d)
    else:
        gain = dt
    return QueueUsage(
        previous.compute * d + rate[0] * gain,
        previous.cpu * d + rate[1] * gain,
        previous.memory * d + rate[2] * gain,
        now,
    )


def decayed_use(rate: float, start: float, end: float, now: float, half_life_s: float) -> float:
    """What a constant ``rate`` held from ``start`` to ``end`` weighs at ``now`` (``end <= now``):
    the closed form of :func:`accrue` over that span, then decay to ``now``,
    ``rate * tau * (d(now - end) - d(now - start))`` (plain ``rate * (end - start)`` without decay).
    The control plane rebuilds fair-share memory from recorded runs with it."""
    if end <= start:
        return 0.0
    if half_life_s <= 0:
        return rate * (end - start)
    tau = half_life_s / math.log(2)
    return rate * tau * (decay_factor(now - end, half_life_s) - decay_factor(now - start, half_life_s))


def dominant_share(allocated: tuple[float, ...], capacity: tuple[float, ...]) -> float:
    """DRF: the largest fraction of any resource the queue holds (0 when capacity is 0)."""
    return max((a / c if c > 0 else 0.0) for a, c in zip(allocated, capacity, strict=True))


def slurm_fairshare_factor(usage_fraction: float, norm_share: float) -> float:
    """Slurm's classic fair-share factor ``F = 2^(-U/S)``: 1 for an idle account, 0.5 when it used
    exactly its share, toward 0 beyond (slurm.schedmd.com/classic_fair_share.html)."""
    if norm_share <= 0:
        return 0.0
    return 2.0 ** (-usage_fraction / norm_share)


def las_queue(attained_card_s: float, thresholds: tuple[float, ...]) -> int:
    """Tiresias 2D-LAS: index of the priority queue for a job's attained service (cards × seconds).
    Queue 0 (least service) is served first; thresholds are ascending."""
    for i, limit in enumerate(thresholds):
        if attained_card_s < limit:
            return i
    return len(thresholds)


def las_queues(attained_card_s: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """:func:`las_queue` of many jobs (int64): the first limit each is below; NaN is below none."""
    return np.searchsorted(np.asarray(thresholds, dtype=np.float64), attained_card_s, side="right")
