"""Property of reservations (issue 14, item 6): what a cycle starts never takes the nodes reserved
for a blocked job unless it ends (by its time limit) before the reserved start, or runs there on loan
to that job (preemptible backfill: the reserved job may evict it), nor leaves it short of quota at
its reserved start, and a reservation is made whether or not running jobs give time limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.core.scenario import build
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


@given(data=st.data(), policy=st.sampled_from(["slurm", "wanka", "wanka-las"]))
@SETTINGS
def test_nothing_started_takes_the_quota_a_reservation_counts_on(data, policy) -> None:
    """A reserved start waits for quota as well as room: nothing the cycle starts that still runs
    then (by its time limit) leaves the reserved job's queue short of quota at that start. Four
    8-card nodes; team (nominal 16, no borrowing or lending) has room for a 2x8 gang only once
    other's jobs on two nodes end."""
    ends = st.sampled_from([60.0, 600.0, 100000.0])
    limit = st.one_of(st.none(), st.sampled_from([60.0, 600.0, 6000.0]))
    doc = {
        "now": 30,
        "cluster": {
            "name": "four",
            "tiers": ["leaf"],
            "pools": [
                {"name": "a", "accelerator": "h100", "nodes": 4, "cards_per_node": 8, "layout": {"leaf": 4}}
            ],
        },
        "queues": {
            "organisations": [
                {
                    "name": "lab",
                    "quota": {"h100": {"nominal": 32}},
                    "queues": [
                        {
                            "name": "team",
                            "quota": {"h100": {"nominal": 16, "borrowing_limit": 0, "lending_limit": 0}},
                        },
                        {"name": "other", "quota": {"h100": {"nominal": 16, "borrowing_limit": 0}}},
                    ],
                }
            ]
        },
        "running": [
            {
                "id": f"o{n}",
                "queue": "other",
                "cards": cards,
                "nodes": [f"a-000{n}"],
                "start": 0,
                "time_limit_s": data.draw(ends),
            }
            for n, cards in ((1, 8), (2, data.draw(st.sampled_from([0, 4]))), (3, 4), (4, 4))
            if cards
        ],
        "pending": [
            {"id": "head", "queue": "team", "replicas": 2, "cards": 8, "submit": 1, "time_limit_s": 1000}
        ]
        + [
            {
                "id": f"s{i}",
                "queue": data.draw(st.sampled_from(["team", "other"])),
                "cards": data.draw(st.sampled_from([1, 2, 4])),
                "submit": 10 + i,
                "time_limit_s": data.draw(limit),
            }
            for i in range(data.draw(st.integers(1, 5)))
        ],
    }
    snapshot, config = build({**doc, "policy": policy})
    result = run_cycle(snapshot, config)
    reserved = {r.job_id: r for r in result.reservations}
    if "head" not in reserved or reserved["head"].start is None:
        return
    at, now = reserved["head"].start, snapshot.now
    started = {d.job_id for d in result.starts if d.preemptible_by != "head"}  # on loan: head evicts it
    team = [j for j in snapshot.pending if j.id in started and j.queue == "team"]
    held = sum(j.min_cards for j in team if j.time_limit_s is None or now + j.time_limit_s > at)
    need = 16  # head's 2x8, out of team's nominal 16
    assert 16 - held >= need, (
        f"{sorted(started)} started; at head's reserved start {at} team holds {held} of 16"
    )


@given(data=st.data(), policy=st.sampled_from(["wanka", "wanka-las", "wanka-fifo"]))
@SETTINGS
def test_a_job_on_loan_to_the_reserved_job_never_sets_its_reserved_start(data, policy) -> None:
    """Jobs on loan on a blocked job's nodes end when it can start (it evicts them, whatever their
    ranks), so only the others' ends set its reserved start: with or without time limits of their
    own, on one model or two (it is reserved where it starts first)."""
    models = data.draw(st.sampled_from([["h100"], ["h100", "a100"]]))
    nodes = data.draw(st.integers(2, 3))
    doc = {
        "now": 60,
        "cluster": {
            "name": "c",
            "tiers": ["leaf"],
            "pools": [
                {
                    "name": m[0],
                    "accelerator": m,
                    "nodes": nodes,
                    "cards_per_node": 8,
                    "layout": {"leaf": nodes},
                }
                for m in models
            ],
        },
    }
    running, ends = [], {}
    for m in models:
        for n in range(1, nodes + 1):
            spec = {"id": f"{m[0]}{n}", "cards": 8, "nodes": [f"{m[0]}-{n:04d}"], "start": 0}
            if data.draw(st.booleans()):  # on loan to big, with a time limit or none
                spec["on_loan_to"] = "big"
                spec["start"] = 50
                if data.draw(st.booleans()):
                    spec["time_limit_s"] = data.draw(st.sampled_from([100, 1000]))
            else:
                spec["time_limit_s"] = data.draw(st.sampled_from([100, 150, 200, 400]))
                ends[m] = max(ends.get(m, 0), spec["time_limit_s"])
            running.append(spec)
    if len(ends) < len(models) or any(end <= 60 for end in ends.values()):
        return  # a model all on loan to it: it starts now, no reservation
    doc["running"] = running
    doc["pending"] = [{"id": "big", "replicas": nodes, "cards": 8, "accelerators": models, "submit": 1,
                       "time_limit_s": 500}]  # fmt: skip
    snapshot, config = build({**doc, "policy": policy})
    result = run_cycle(snapshot, config)
    (reservation,) = [r for r in result.reservations if r.job_id == "big"]
    assert reservation.start == min(ends.values()), (reservation.start, ends)
