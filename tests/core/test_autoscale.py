"""The autoscaler (core.autoscale): HPA's stabilization windows, as properties and examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanka.core.autoscale import Metric, Scaler, ScalingPolicy

POLICY = ScalingPolicy(Metric.RPS, target=5, min=1, max=3, window_s=10, up_delay_s=10, down_delay_s=60)


def test_a_rise_is_followed_after_the_up_delay_and_a_fall_after_the_down_delay():
    s = Scaler(POLICY, 1)
    assert s.step(0, 2) is None  # 2 requests/s: one replica
    assert s.step(1, 12) is None  # wants 3, but only for 0 s of the 10
    assert s.step(10, 12) is None
    why = s.step(11, 12)
    assert s.replicas == 3 and "1 -> 3 replicas" in why
    assert s.step(12, 0) is None  # the load stops: nothing for 60 s
    assert s.step(71, 0) is None and s.replicas == 3
    assert "3 -> 1" in s.step(72, 0) and s.replicas == 1


def test_a_spike_shorter_than_the_up_delay_starts_nothing():
    s = Scaler(POLICY, 1)
    s.step(0, 1)
    for t in range(1, 9):
        assert s.step(t, 100) is None
    assert s.step(9, 1) is None and s.step(30, 1) is None
    assert s.replicas == 1


def test_from_zero_a_waiting_request_starts_a_replica_at_once():
    p = ScalingPolicy(Metric.INFLIGHT, target=1, min=0, max=2, up_delay_s=30, down_delay_s=30)
    s = Scaler(p, 0)
    assert s.step(0, 0) is None and s.replicas == 0
    assert "scale from zero" in s.step(1, 0.2) and s.replicas == 1


def test_new_bounds_apply_at_once():
    s = Scaler(POLICY, 3)
    s.policy = ScalingPolicy(Metric.RPS, 5, 1, 2)
    assert "bounds are now 1..2" in s.step(0, 100) and s.replicas == 2


@pytest.mark.parametrize(
    ("observed", "want"), [(0, 1), (5, 1), (5.0000000001, 1), (5.1, 2), (14.9, 3), (1e9, 3)]
)
def test_the_recommendation_is_the_ceiling_of_load_over_target_within_bounds(observed, want):
    assert POLICY.recommend(observed) == want


loads = st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=60)


@given(loads, st.integers(1, 3))
def test_the_count_stays_within_bounds_and_changes_only_after_a_delay(observed, start):
    s = Scaler(POLICY, start)
    last_change = 0.0
    for t, load in enumerate(observed, start=1):
        before = s.replicas
        s.step(float(t), load)
        assert POLICY.min <= s.replicas <= POLICY.max
        if s.replicas > before:  # every recommendation of the last up delay asked for this many
            assert t >= POLICY.up_delay_s
        if s.replicas < before:
            assert t >= POLICY.down_delay_s
        if s.replicas != before:
            last_change = t
    assert last_change >= 0


@given(st.floats(min_value=0, max_value=100, allow_nan=False), st.integers(1, 3))
def test_a_steady_load_ends_at_its_recommendation_once_both_delays_passed(load, start):
    s = Scaler(POLICY, start)
    for t in range(0, 200, 5):
        s.step(float(t), load)
    assert s.replicas == POLICY.recommend(load)


def test_history_stays_small_however_often_a_steady_load_is_observed():
    s = Scaler(POLICY, 1)
    for t in range(100_000):
        s.step(t * 0.1, 7.0)
    assert len(s.history) <= 2
