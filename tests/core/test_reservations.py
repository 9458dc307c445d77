"""Property of reservations (issue 14, item 6): what a cycle starts never takes the nodes reserved
for a blocked job unless it ends (by its time limit) before the reserved start, or runs there on loan
to that job (preemptible backfill: the reserved job may evict it), and a reservation is made whether
or not running jobs give time limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_gang_shapes import leaves_cluster
from tests.core.test_properties import SETTINGS, apply
from wanka.core import ClusterState, Job, Snapshot, TaskGroup, get_policy, run_cycle
from wanka.core.quota import QueueTree


@given(data=st.data(), policy=st.sampled_from(["slurm", "wanka", "wanka-las"]))
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
        if d.placement.node_set() & r.nodes and d.preemptible_by != "head":
            ends = now + started.time_limit_s if started.time_limit_s is not None else float("inf")
            assert r.start is not None and ends <= r.start, f"{d.job_id} delays the reserved start"


@given(data=st.data(), policy=st.sampled_from(["wanka", "wanka-las"]))
@SETTINGS
def test_a_job_on_loan_is_taken_back_as_soon_as_the_reserved_job_fits(data, policy) -> None:
    """Whatever ran on loan on a blocked job's reserved nodes, once the jobs that are not on loan
    leave it room the reserved job starts that cycle, evicting what is on loan to it."""
    cluster = leaves_cluster(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    tree = QueueTree.flat(["h100"], {"h100": 8 * cluster.num_nodes}, ["q"])
    head = Job("head", "t", "q", (TaskGroup("w", cluster.num_nodes, 8),), submit_time=10.0)
    loans = []
    for i in range(cluster.num_nodes):
        cards = data.draw(st.sampled_from([1, 4, 8]))
        pc = data.draw(st.sampled_from(["low", "normal", "high"]))
        loan = Job(
            f"l{i}", "t", "q", (TaskGroup("w", 1, cards),), submit_time=20.0 + i, preemptible_by="head"
        )
        loan.priority = {"low": 100, "normal": 500, "high": 1000}[pc]
        loans.append(loan)
    snap = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, loans, [])
    state, _, running = apply(snap, run_cycle(snap, get_policy(policy)))
    for job in running:  # as if each had backfilled onto head's reserved nodes
        job.preemptible_by = "head"
    result = run_cycle(Snapshot(100.0, cluster, state, tree, [head], running), get_policy(policy))
    assert [d.job_id for d in result.starts] == ["head"]
    assert {d.job_id for d in result.stops} == {j.id for j in running}
