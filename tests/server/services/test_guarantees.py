"""Which replicas are never preempted: up to the minimum, within what the queue's nominal quota
holds beyond its other services' never-preempted replicas (Run:ai's rule)."""

from __future__ import annotations

from wanka.models.service import parse_service_spec
from wanka.server.services import guaranteed


def _spec(cards: int, low: int):
    return parse_service_spec(
        {
            "name": "s",
            "command": ["x"],
            "cards": cards,
            "replicas": {"min": low, "max": 4},
            "scaling": {"target": 1},
        }
    )


def test_the_minimum_is_guaranteed_only_within_the_quota_left_by_other_services():
    assert guaranteed(_spec(1, 2), nominal_cards=8) == 2
    assert guaranteed(_spec(2, 3), nominal_cards=4) == 2  # two fit, the third is preemptible
    assert guaranteed(_spec(1, 2), nominal_cards=2, held=2) == 0  # another service holds it all
    assert guaranteed(_spec(1, 2), nominal_cards=2, held=5) == 0  # never below zero
    assert guaranteed(_spec(1, 2), nominal_cards=0) == 0  # a queue without quota guarantees none
    assert guaranteed(_spec(0, 2), nominal_cards=0) == 2  # no cards: no quota taken
