import numpy as np

from wanka.core import ClusterState
from wanka.core.placement import FreeArrays, GroupRequest, PlacementStrategy, needed_tier, place_gang
from wanka.core.state import take_cards
from wanka.models.cluster import load_cluster


def free_of(state: ClusterState) -> FreeArrays:
    return FreeArrays(state.free_cards, state.free_cpus, state.free_memory, state.free_mask)


def test_a_2048_card_gang_on_wanka_10k_spans_the_fewest_pods():
    c = load_cluster("wanka-10k")
    s = ClusterState.empty(c)
    p = place_gang(
        c, free_of(s), c.node_state == 0, "ascend-910b2", [GroupRequest("w", 256, 256, 8, 16, 128)]
    )
    pods = {int(c.domain_of[2][n]) for n in p.node_set()}
    assert len(p.node_set()) == 256 and len(pods) == 2  # 2,000 cards a pod: two pods, not more
    leaves = {int(c.domain_of[1][n]) for n in p.node_set()}
    assert len(leaves) == 11  # 10 whole leaves + 1 partial
    s.allocate(p)
    assert int(s.free_cards.sum()) == 10000 - 2048


def test_first_fit_baseline_ignores_topology():
    c = load_cluster("wanka-10k")
    s = ClusterState.empty(c)
    s.free_cards[0] = 0  # node 0 busy
    s.free_mask[0] = 0
    p = place_gang(
        c,
        free_of(s),
        c.node_state == 0,
        "ascend-910b2",
        [GroupRequest("w", 2, 2, 8, 0, 0)],
        PlacementStrategy.FIRST_FIT,
    )
    assert sorted(p.node_set()) == [1, 2]
    assert needed_tier(c, p) == 1


def test_cards_are_taken_in_aligned_blocks():
    assert take_cards(0b11111111, 4, 8) == 0b00001111
    assert take_cards(0b11110011, 4, 8) == 0b11110000  # the free half, not a split
    assert take_cards(0b11110011, 2, 8) == 0b00000011
    assert take_cards(0b10101010, 2, 8) == 0b00001010  # no aligned pair: the lowest free cards


def test_what_if_placements_choose_no_cards():
    c = load_cluster("dev")
    s = ClusterState.empty(c)
    free = FreeArrays(s.free_cards.copy(), s.free_cpus.copy(), s.free_memory.copy(), None)
    p = place_gang(
        c,
        free,
        np.ones(1, dtype=bool),
        "ascend-910b2",
        [GroupRequest("w", 2, 2, 4, 0, 0)],
        choose_cards=False,
    )
    assert p.groups[0].masks == (0, 0) and p.total_cards == 8


def test_placements_hold_plain_ints():
    c = load_cluster("wanka-10k")
    s = ClusterState.empty(c)
    p = place_gang(c, free_of(s), c.node_state == 0, "ascend-910b2", [GroupRequest("w", 40, 40, 8, 0, 0)])
    assert all(type(n) is int for n in p.groups[0].nodes)


def test_each_task_knows_its_node_and_device_indices():
    c = load_cluster("dev")
    s = ClusterState.empty(c)
    s.allocate(
        place_gang(c, free_of(s), c.node_state == 0, "ascend-910b2", [GroupRequest("w", 1, 1, 2, 0, 0)])
    )
    p = place_gang(c, free_of(s), c.node_state == 0, "ascend-910b2", [GroupRequest("w", 2, 2, 2, 0, 0)])
    assert [(role, node, i, devices) for role, node, i, devices in p.tasks()] == [
        ("w", 0, 0, (2, 3)),  # cards 0-1 are taken: the next aligned pairs
        ("w", 0, 1, (4, 5)),
    ]
