"""The autoscaler (core.autoscale): HPA's stabilization windows, as properties and examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from wanka.core import FlavorQuota, QueueNode, QueueTree
from wanka.core.autoscale import (
    Metric,
    ReplicaView,
    Scaler,
    ScalingPolicy,
    guaranteed_replicas,
    nominal_cards,
    recommendations,
    retire_order,
)

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


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            st.floats(min_value=0.001, max_value=1e4, allow_nan=False),
            st.integers(0, 64),
            st.integers(0, 64),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_many_services_at_once_get_what_each_would_alone(rows):
    """The twin asks for every service's recommendation in one call; it must be the keeper's."""
    rows = [(o, t, min(a, b), max(a, b, 1)) for o, t, a, b in rows]
    policies = [ScalingPolicy(Metric.RPS, t, lo, hi) for _, t, lo, hi in rows]
    got = recommendations(*(np.array(col, dtype=float) for col in zip(*rows, strict=True)))
    assert list(got) == [p.recommend(o) for p, (o, *_) in zip(policies, rows, strict=True)]


@given(
    loads,
    st.integers(0, 3),
    st.floats(min_value=0, max_value=20, allow_nan=False),
    st.floats(min_value=0, max_value=20, allow_nan=False),
    st.integers(0, 1000),
)
def test_a_step_whose_recommendation_is_the_settled_count_changes_nothing(
    observed, start, steady, probe, gap
):
    """The twin skips a scaler whose recommendation equals ``settled``: that must be exact."""
    p = ScalingPolicy(Metric.RPS, target=5, min=0, max=3, up_delay_s=10, down_delay_s=60)
    s = Scaler(p, start)
    t = 0.0
    for load in observed:
        s.step(t, load)
        t += 7
    for _ in range(12):  # a steady load for longer than both delays: the count settles on it
        s.step(t, steady)
        t += 7
    assert s.settled == p.recommend(steady) == s.replicas
    assume(p.recommend(probe) == s.settled)
    before = (s.replicas, list(s.history))
    assert s.step(t + gap, probe) is None
    assert (s.replicas, s.history) == before


def test_the_minimum_is_guaranteed_only_within_the_quota_left_by_other_services():
    assert guaranteed_replicas(2, cards=1, nominal_cards=8) == 2
    assert guaranteed_replicas(3, cards=2, nominal_cards=4) == 2  # two fit, the third is preemptible
    assert guaranteed_replicas(3, cards=2, nominal_cards=8, held_cards=6) == 1
    assert guaranteed_replicas(2, cards=1, nominal_cards=2, held_cards=2) == 0  # another holds it all
    assert guaranteed_replicas(2, cards=1, nominal_cards=2, held_cards=5) == 0  # never below zero
    assert guaranteed_replicas(2, cards=1, nominal_cards=0) == 0  # a queue without quota: none
    assert guaranteed_replicas(2, cards=0, nominal_cards=0) == 2  # no cards: no quota taken


def test_surplus_replicas_stop_preemptible_first_then_waiting_then_unready_then_newest():
    views = [
        ReplicaView("sure-ready-old", True, True, True, 1),
        ReplicaView("extra-ready", True, False, True, 2),
        ReplicaView("waiting", False, True, False, 3),
        ReplicaView("extra-starting", True, False, False, 4),
        ReplicaView("sure-ready-new", True, True, True, 5),
    ]
    order = [v.key for v in retire_order(views)]
    # a waiting never-preempted replica (e.g. broken by a failure) outlasts a running extra one:
    # scaling down to min keeps the guarantee
    assert order == ["extra-starting", "extra-ready", "waiting", "sure-ready-new", "sure-ready-old"]


def test_nominal_cards_is_the_best_flavor_the_replica_may_use():
    tree = QueueTree(
        [
            QueueNode("root", None, {"h100": FlavorQuota(16), "910c": FlavorQuota(32)}),
            QueueNode("a", "root", {"h100": FlavorQuota(8), "910c": FlavorQuota(4)}),
        ],
        ["h100", "910c"],
    )
    assert nominal_cards(tree, "a") == 8
    assert nominal_cards(tree, "a", ["910C"]) == 4
    assert nominal_cards(tree, "nope") == 0
