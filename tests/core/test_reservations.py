"""Property of reservations (issue 14, item 6): what a cycle starts never takes the nodes reserved
for a blocked job unless it ends (by its time limit) before the reserved start, and a reservation is
made whether or not running jobs give time limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_gang_shapes import leaves_cluster
from tests.core.test_properties import SETTINGS, apply
from wanka.core import ClusterState, Job, Snapshot, TaskGroup, get_policy, run_cycle
from wanka.core.quota import QueueTree


@given(data=st.data(), policy=st.sampled_from(["slurm", "wanka"]))
@SETTINGS
def test_nothing_started_delays_a_reservation_with_or_without_time_limits(data, policy) -> None:
    cluster = leaves_cluster(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    total = 8 * cluster.num_nodes
    tree = QueueTree.flat(["h100"], {"h100": total}, ["q"])
    limit = st.one_of(st.none(), st.sampled_from([60.0, 600.0, 6000.0]))

    def job(jid, cards, replicas, priority, submit):
        return Job(
            jid,
            "t",
            "q",
            (TaskGroup("w", replicas, cards),),
            priority=priority,
            submit_time=submit,
            time_limit_s=data.draw(limit),
        )

    fillers = [
        job(f"r{i}", data.draw(st.sampled_from([2, 4, 8])), 1, 500, 0.0) for i in range(cluster.num_nodes * 2)
    ]
    snap = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, fillers, [])
    state, _, running = apply(snap, run_cycle(snap, get_policy(policy)))
    head = job("head", 8, cluster.num_nodes, 500, 10.0)  # the whole cluster: it waits
    small = [job(f"s{i}", data.draw(st.sampled_from([1, 2, 4, 8])), 1, 500, 20.0 + i) for i in range(6)]
    now = 100.0
    result = run_cycle(Snapshot(now, cluster, state, tree, [head, *small], running), get_policy(policy))
    if not running or any(d.job_id == "head" for d in result.starts):
        return
    reserved = {r.job_id: r for r in result.reservations}
    assert "head" in reserved, "the blocked head job gets a reservation, time limits or not"
    r = reserved["head"]
    for d in result.starts:
        started = next(j for j in small if j.id == d.job_id)
        if d.placement.node_set() & r.nodes:
            ends = now + started.time_limit_s if started.time_limit_s is not None else float("inf")
            assert r.start is not None and ends <= r.start, f"{d.job_id} delays the reserved start"
