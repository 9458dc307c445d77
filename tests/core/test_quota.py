"""Quota arithmetic against hand-computed cases (Kueue's semantics, total-nominal convention)."""

import pytest

from wanka.core import FlavorQuota, QueueNode, QueueTree, QuotaError, QuotaUsage
from wanka.core.quota import add_usage, available, borrowed, potential_available


def tree(a: FlavorQuota, b: FlavorQuota, total: int = 40) -> QueueTree:
    return QueueTree(
        [
            QueueNode("cluster", None, {"gpu": FlavorQuota(total)}),
            QueueNode("a", "cluster", {"gpu": a}),
            QueueNode("b", "cluster", {"gpu": b}),
        ],
        ["gpu"],
    )


def test_lending_limit_keeps_a_guarantee():
    # a: nominal 20, lends at most 8 -> keeps 12 for itself; b: 20, lends all
    t = tree(FlavorQuota(20, borrowing_limit=12, lending_limit=8), FlavorQuota(20, borrowing_limit=12))
    u = QuotaUsage(t)
    a, b = t.index["a"], t.index["b"]
    assert t.guaranteed[a][0] == 12 and t.subtree[0][0] == 8 + 20  # root pool: what a and b lend
    assert available(u, b, 0) == 20 + 8  # b: its 20 plus the 8 a lends, within b's borrowing limit of 12
    add_usage(u, b, 0, 28)
    assert available(u, b, 0) == 0
    assert available(u, a, 0) == 12  # a's guarantee is untouched by b
    assert borrowed(u, b, 0) == 8


def test_borrowing_limit_caps_nominal_plus_limit():
    t = tree(FlavorQuota(10, borrowing_limit=5), FlavorQuota(30))
    u = QuotaUsage(t)
    assert available(u, t.index["a"], 0) == 15
    assert potential_available(t, t.index["a"], 0) == 15
    assert potential_available(t, t.index["b"], 0) == 40


def test_usage_bubbles_up_only_beyond_the_guarantee_and_removal_undoes_it():
    t = tree(FlavorQuota(20, lending_limit=0), FlavorQuota(20))
    u = QuotaUsage(t)
    a = t.index["a"]
    add_usage(u, a, 0, 15)
    assert u.usage[0][0] == 0  # a's 15 sit inside its 20 guaranteed
    add_usage(u, a, 0, 10)
    assert u.usage[0][0] == 5 and u.total[0][0] == 25
    add_usage(u, a, 0, -25)
    assert u.usage == [[0], [0], [0]] and u.total == [[0], [0], [0]]


def test_org_nominal_includes_its_queues():
    nodes = [
        QueueNode("cluster", None, {"gpu": FlavorQuota(64)}),
        QueueNode("org", "cluster", {"gpu": FlavorQuota(32, borrowing_limit=0)}),
        QueueNode("t1", "org", {"gpu": FlavorQuota(16)}),
        QueueNode("t2", "org", {"gpu": FlavorQuota(8)}),
    ]
    t = QueueTree(nodes, ["gpu"])
    assert t.own[t.index["org"]][0] == 8  # 32 - (16 + 8): a pool its teams share
    u = QuotaUsage(t)
    assert available(u, t.index["t1"], 0) == 32  # the org may not borrow beyond its 32


def test_children_above_parent_are_rejected():
    with pytest.raises(QuotaError, match="exceeds its own"):
        QueueTree(
            [
                QueueNode("cluster", None, {"gpu": FlavorQuota(8)}),
                QueueNode("org", "cluster", {"gpu": FlavorQuota(4)}),
                QueueNode("t", "org", {"gpu": FlavorQuota(6)}),
            ],
            ["gpu"],
        )


def test_unknown_flavor_and_parent_are_rejected():
    with pytest.raises(QuotaError, match="unknown flavor"):
        QueueTree([QueueNode("cluster", None, {"tpu": FlavorQuota(8)})], ["gpu"])
    with pytest.raises(QuotaError, match="does not exist"):
        QueueTree([QueueNode("cluster", None), QueueNode("x", "nope")], ["gpu"])
