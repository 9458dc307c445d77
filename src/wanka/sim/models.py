"""The twin's models of the world: failures, repairs, checkpoints, and how fast a job runs.

Every default is stated with its source in docs/twin.md; each model is a frozen dataclass so a run's
assumptions are explicit and printable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from wanka.core import Cluster

HOUR = 3600.0
DAY = 86400.0

# Llama 3 (16,384 H100, 54 days): 419 unexpected interruptions by cause, and our assumed repair time
# per cause (the report gives none): hardware that must be swapped takes a shift; a software fault
# only needs the job restarted, so the node is back at once.
LLAMA3_CAUSES: tuple[tuple[str, int, float], ...] = (
    ("faulty GPU", 148, 4 * HOUR),
    ("GPU HBM3 memory", 72, 4 * HOUR),
    ("software bug", 54, 0.0),
    ("network switch/cable", 35, 2 * HOUR),
    ("host maintenance", 32, 2 * HOUR),
    ("GPU SRAM memory", 19, 4 * HOUR),
    ("GPU system processor", 17, 4 * HOUR),
    ("NIC", 7, 2 * HOUR),
    ("NCCL watchdog timeout", 7, 0.0),
    ("silent data corruption", 6, 4 * HOUR),
    ("GPU thermal", 6, 2 * HOUR),
    ("SSD", 3, 2 * HOUR),
    ("power supply", 3, 2 * HOUR),
    ("other host component", 10, 2 * HOUR),
)
LLAMA3_INTERRUPTIONS = 419
LLAMA3_GPU_SECONDS = 16_384 * 54 * DAY


@dataclass(frozen=True)
class FailureModel:
    """Independent per-card failures (a Poisson process per node, rate proportional to its cards);
    a failure takes its node down for the cause's repair time and breaks every job on it."""

    name: str = "none"
    per_card_rate: float = 0.0  # failures per card-second
    causes: tuple[tuple[str, int, float], ...] = LLAMA3_CAUSES
    hot_spares: int = 0  # whole nodes held idle that replace a failed node at once

    @classmethod
    def preset(cls, name: str, hot_spares: int = 0) -> FailureModel:
        if name == "none":
            return cls("none", 0.0, hot_spares=hot_spares)
        if name == "llama3":  # one per ~50,700 GPU-hours
            return cls("llama3", LLAMA3_INTERRUPTIONS / LLAMA3_GPU_SECONDS, hot_spares=hot_spares)
        if name == "shenzhen":  # published phase-1 average daily failure rate 0.3 per mille, read per card
            return cls("shenzhen", 0.0003 / DAY, hot_spares=hot_spares)
        raise ValueError(f"unknown failure model {name!r}; choose none, llama3 or shenzhen")

    def node_mtbf_s(self, cards: int) -> float:
        return math.inf if self.per_card_rate <= 0 else 1.0 / (self.per_card_rate * cards)

    def stream(self, cluster: Cluster, seed: int) -> Iterator[tuple[float, int, str, float]]:
        """Failures (time, node, cause, repair seconds) in time order, forever — a function of the
        cluster and ``seed`` only, so every policy compared faces the identical failure sequence."""
        if self.per_card_rate <= 0:
            return
        rng = np.random.default_rng(seed)
        weights = cluster.node_cards / cluster.node_cards.sum()
        total_rate = self.per_card_rate * float(cluster.node_cards.sum())
        mix = np.array([c[1] for c in self.causes], dtype=np.float64)
        mix /= mix.sum()
        t = 0.0
        while True:
            gaps = rng.exponential(1.0 / total_rate, size=256)  # drawn in blocks: same sequence, faster
            nodes = rng.choice(cluster.num_nodes, size=256, p=weights)
            which = rng.choice(len(self.causes), size=256, p=mix)
            for gap, node, c in zip(gaps, nodes, which, strict=True):
                t += float(gap)
                yield t, int(node), self.causes[c][0], self.causes[c][2]

    def sample(self, cluster: Cluster, horizon_s: float, seed: int) -> list[tuple[float, int, str, float]]:
        """The failures of :meth:`stream` up to ``horizon_s``."""
        out = []
        for failure in self.stream(cluster, seed):
            if failure[0] > horizon_s:
                break
            out.append(failure)
        return out


@dataclass(frozen=True)
class CheckpointModel:
    """A job writes a checkpoint every ``interval`` of run time (paying ``write_s`` each time) and
    pays ``restart_s`` whenever it starts again after a stop; on a failure or preemption it loses
    the work since its last checkpoint.

    Without an interval of its own a job uses Young/Daly's ``sqrt(2 x write cost x MTBF)`` for the
    nodes it runs on, or ``default_interval_s`` when nothing fails."""

    write_s: float = 60.0
    restart_s: float = 17 * 60.0  # Llama 3: ~17 min average restart (inferred in ANCHORS.md)
    default_interval_s: float = HOUR

    def interval(self, own: float | None, mtbf_s: float) -> float:
        if own:
            return own
        if math.isinf(mtbf_s) or self.write_s <= 0:
            return self.default_interval_s
        return max(self.write_s, math.sqrt(2.0 * self.write_s * mtbf_s))

    def efficiency(self, interval_s: float) -> float:
        """Fraction of run time spent computing rather than writing checkpoints."""
        return interval_s / (interval_s + self.write_s)


@dataclass(frozen=True)
class PerformanceModel:
    """How fast a placed job runs relative to its stated duration.

    * heterogeneity: durations are for a card of ``reference_tflops``; a faster card shortens them
      in proportion to its rated half-precision peak;
    * topology: each network tier a gang spans beyond the smallest one that could hold it costs
      ``topology_penalty`` more run time;
    * elastic jobs run in proportion to the share of their full size they hold (linear speed-up)."""

    topology_penalty: float = 0.1
    reference_tflops: float | None = None  # None: the cluster's first model

    def speed(self, cluster: Cluster, model_tflops: float, share: float, extra_tiers: int) -> float:
        ref = self.reference_tflops or cluster.models[0].rated_tflops
        return share * (model_tflops / ref) / (1.0 + self.topology_penalty * extra_tiers)


@dataclass(frozen=True)
class Models:
    failures: FailureModel = field(default_factory=FailureModel)
    checkpoints: CheckpointModel = field(default_factory=CheckpointModel)
    performance: PerformanceModel = field(default_factory=PerformanceModel)

    def without_overheads(self) -> Models:
        """No checkpoint writes, restart delay or topology penalty: a job runs exactly its stated
        duration (on a reference card), as in the published simulators. Failures are kept; work
        since the last checkpoint is still lost on a stop."""
        return replace(
            self,
            checkpoints=replace(self.checkpoints, write_s=0.0, restart_s=0.0),
            performance=replace(self.performance, topology_penalty=0.0),
        )

    def overheads(self) -> dict[str, float]:
        """The overheads a job pays (0: off), as ``--json`` reports them."""
        return {
            "checkpoint_write_s": self.checkpoints.write_s,
            "restart_s": self.checkpoints.restart_s,
            "topology_penalty": self.performance.topology_penalty,
        }

    def describe_overheads(self) -> str:
        """One line for reports: which overheads were on, and how large."""
        ckpt, penalty = self.checkpoints, self.performance.topology_penalty
        items = (
            ("checkpoint writes", ckpt.write_s, f"{ckpt.write_s:g} s each"),
            ("restarts", ckpt.restart_s, f"{ckpt.restart_s:g} s"),
            ("topology penalty", penalty, f"{penalty:.0%} per extra tier"),
        )
        on = [f"{name} {size}" for name, value, size in items if value > 0]
        off = [name for name, value, _ in items if value <= 0]
        if not on:
            return "overheads: none"
        return "overheads: " + "; ".join(on) + (f" (off: {', '.join(off)})" if off else "")
