"""The gateway's meter: the autoscaler's signal, requests per second and requests in flight."""

from __future__ import annotations

import pytest

from wanka.server.gateway.meter import Meter


def test_rate_and_in_flight_are_averaged_over_the_window():
    m = Meter(now=0.0)
    # 10 requests/s for 10 s, each 0.5 s long: 5 in flight on average (events in time order)
    events = sorted([(i * 0.1, 1) for i in range(100)] + [(i * 0.1 + 0.5, -1) for i in range(100)])
    for t, kind in events:
        (m.begin if kind > 0 else m.end)(t)
    rps, inflight = m.observe(10.5, window_s=10.5)
    assert rps == pytest.approx(100 / 10.5, rel=0.01)
    assert inflight == pytest.approx(50 / 10.5, rel=0.01)
    for t in range(11, 31):  # then nothing: the window forgets it
        rps, inflight = m.observe(float(t), window_s=10)
    assert rps == 0 and inflight == 0


def test_a_request_still_in_flight_counts():
    m = Meter(now=0.0)
    m.begin(1.0)
    rps, inflight = m.observe(3.0, window_s=10)
    assert rps > 0 and inflight == pytest.approx(2 / 3, rel=0.01)
