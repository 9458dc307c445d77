"""Following a backend's inventory: the merged cluster keeps nodes that left (down) and takes the
new ones; the Slurm tests drive the whole path against real daemons."""

from __future__ import annotations

from wanka.core import NodeState
from wanka.models.cluster import parse_cluster
from wanka.server.loop import merge_inventory


def spec(names: list[str], tiers: list[str] | None = None, domains: dict | None = None) -> dict:
    return {
        "name": "slurm",
        "tiers": tiers or [],
        "node_domains": domains or {},
        "pools": [
            {
                "name": "p",
                "accelerator": "h100",
                "nodes": len(names),
                "cards_per_node": 8,
                "node_names": names,
            }
        ],
    }


def test_new_nodes_join_and_nodes_that_left_stay_down():
    old = parse_cluster(spec(["a", "b", "c"]))
    merged = merge_inventory(old, parse_cluster(spec(["b", "c", "d"])))
    assert sorted(merged.node_names) == ["a", "b", "c", "d"]
    states = {n: NodeState(int(merged.node_state[merged.node_index[n]])) for n in merged.node_names}
    assert states == {"a": NodeState.DOWN, "b": NodeState.UP, "c": NodeState.UP, "d": NodeState.UP}
    assert merged.total_cards == 32


def test_unchanged_membership_is_the_new_cluster_itself_and_tiers_follow_the_new_inventory():
    new = parse_cluster(spec(["a", "b"], ["leaf"], {"a": ["s1"], "b": ["s2"]}))
    assert merge_inventory(parse_cluster(spec(["a", "b"])), new) is new
    # a node that left keeps a domain per tier of the new tree, even if the old tree had fewer
    merged = merge_inventory(parse_cluster(spec(["a", "b", "z"])), new)
    assert merged.tiers == ("node", "leaf", "cluster")
    assert merged.nodes[merged.node_index["z"]].domains == ("gone-leaf",)
    assert merged.nodes[merged.node_index["a"]].domains == ("s1",)
