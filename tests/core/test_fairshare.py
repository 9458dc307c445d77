import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanka.core import QueueUsage, accrue
from wanka.core.fairshare import decayed_use, dominant_share, las_queue, slurm_fairshare_factor
from wanka.core.whatif import shortest_prefix

DAY = 86400.0


def test_usage_halves_every_half_life_when_idle():
    u = accrue(QueueUsage(compute=100.0), 7 * DAY, (0.0, 0.0, 0.0), half_life_s=7 * DAY)
    assert u.compute == pytest.approx(50.0)


def test_accruing_in_steps_equals_accruing_at_once():
    rate = (3.0, 64.0, 512.0)
    once = accrue(QueueUsage(), 10 * DAY, rate, 7 * DAY)
    steps = QueueUsage()
    for k in range(1, 11):
        steps = accrue(steps, k * DAY, rate, 7 * DAY)
    assert steps.compute == pytest.approx(once.compute) and steps.memory == pytest.approx(once.memory)
    # forever at a constant rate, decayed usage tends to rate x tau
    assert accrue(QueueUsage(), 1000 * DAY, rate, 7 * DAY).compute == pytest.approx(
        3.0 * 7 * DAY / math.log(2)
    )


def test_no_decay_is_a_plain_integral_and_time_only_moves_forward():
    assert accrue(QueueUsage(), 10.0, (2.0, 0.0, 0.0), 0.0).compute == 20.0
    with pytest.raises(ValueError):
        accrue(QueueUsage(as_of=5.0), 1.0, (1.0, 0.0, 0.0), DAY)


def test_factors():
    assert dominant_share((10.0, 32.0, 64.0), (100.0, 64.0, 1024.0)) == 0.5
    assert slurm_fairshare_factor(0.0, 0.25) == 1.0 and slurm_fairshare_factor(0.25, 0.25) == 0.5
    assert [las_queue(a, (3600.0,)) for a in (0.0, 3599.0, 3600.0)] == [0, 0, 1]


@given(n=st.integers(1, 200), answer=st.integers(1, 200), lo=st.integers(1, 200))
def test_shortest_prefix_finds_the_smallest_fitting_k(n, answer, lo):
    answer, lo = min(answer, n), min(lo, answer, n)
    calls = []

    def fits(k):
        calls.append(k)
        return k if k >= answer else None

    assert shortest_prefix(fits, lo, n) == (answer, answer)
    assert len(calls) <= 2 * max(1, n).bit_length() + 2


@given(
    rate=st.floats(0.0, 1e4),
    start=st.floats(0.0, 30 * DAY),
    held=st.floats(0.0, 30 * DAY),
    after=st.floats(0.0, 30 * DAY),
    half_life=st.sampled_from([0.0, DAY, 7 * DAY]),
)
def test_a_runs_decayed_use_is_what_the_ticks_accrue(rate, start, held, after, half_life):
    """Rebuilding fair-share memory from a recorded run (a restart) gives what the control loop's
    ticks booked while it ran and since: a restart forgives nobody."""
    end, now = start + held, start + held + after
    ticked = accrue(QueueUsage(as_of=0.0), start, (0.0, 0.0, 0.0), half_life)
    for t in (start + held / 3, end):  # booked in uneven steps while it ran
        ticked = accrue(ticked, t, (rate, 0.0, 0.0), half_life)
    ticked = accrue(ticked, now, (0.0, 0.0, 0.0), half_life)
    assert decayed_use(rate, start, end, now, half_life) == pytest.approx(ticked.compute, rel=1e-6, abs=1e-6)
