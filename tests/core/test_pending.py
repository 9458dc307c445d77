"""The pending index: the waiting queue a long-lived caller keeps in the policy's order."""

from __future__ import annotations

import copy
from bisect import bisect_right
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_properties import SETTINGS, clusters, jobs, queue_trees
from wanka.core import (
    ClusterState,
    Job,
    JobOrder,
    PendingIndex,
    QueueTree,
    Snapshot,
    TaskGroup,
    get_policy,
    run_cycle,
)
from wanka.core.pending import STATIC_ORDERS
from wanka.core.session import Session
from wanka.models import load_cluster


def _policy_order(snapshot: Snapshot, order: JobOrder, preset: str = "wanka") -> list[str]:
    """The order the policy's own sort gives (what every cycle used to compute from scratch)."""
    config = get_policy(preset).with_(job_order=order)
    session = Session(replace(snapshot, pending=[]), config)
    return [j.id for j in session.ordering.sort(list(snapshot.pending))]


@given(data=st.data(), order=st.sampled_from(STATIC_ORDERS))
@SETTINGS
def test_kept_order_is_the_policys_order_through_adds_and_removes(data, order) -> None:
    cluster = data.draw(clusters())
    tree = data.draw(queue_trees(cluster))
    pool = data.draw(jobs(tree, "a", 1000.0)) + data.draw(jobs(tree, "b", 1000.0))
    for j in pool[::3]:  # ties in submit time and priority: the id decides
        j.submit_time = 500.0
    for j in pool[::2]:  # served before it was requeued: a lower LAS queue under priority_las
        j.attained_service = data.draw(st.sampled_from([100.0, 3600.0, 1e6]))
    thresholds = get_policy("wanka").las.thresholds
    index = PendingIndex(cluster, tree, order, (), thresholds)
    waiting: dict[str, Job] = {}
    for step in data.draw(st.lists(st.integers(0, max(len(pool) - 1, 0)), max_size=40)) if pool else []:
        job = pool[step]
        if job.id in index:
            assert index.remove(job.id) is job
            del waiting[job.id]
        else:
            index.add(job)
            waiting[job.id] = job
    snapshot = Snapshot(1000.0, cluster, ClusterState.empty(cluster), tree, list(waiting.values()), [])
    expected = _policy_order(snapshot, order)
    assert [j.id for j in index.jobs] == expected
    bulk = PendingIndex(cluster, tree, order, waiting.values(), thresholds)  # built at once, in numpy
    by_queue = {}
    for i in expected:
        by_queue.setdefault(tree.index.get(waiting[i].queue, -1), []).append(i)
    for kept in (index, bulk):
        assert [j.id for j in kept.jobs] == expected
        for cards in (0, 1, 4, 16, 1 << 20):
            assert [j.id for j in kept.needing_at_most(cards)] == [
                i for i in expected if waiting[i].min_cards <= cards
            ]
        assert {q: [j.id for j in js] for q, js in kept.queue_jobs().items()} == by_queue
    assert bulk.smallest_need() == index.smallest_need()  # needs counted in bulk as one by one
    if expected:  # changed before its first split: the splits follow the jobs as they are now
        late = PendingIndex(cluster, tree, order, waiting.values(), thresholds)
        late.remove(expected[0])
        rest = expected[1:]
        assert [j.id for j in late.needing_at_most(1 << 20)] == rest
        left = {q: [i for i in ids if i != expected[0]] for q, ids in by_queue.items()}
        split = {q: [j.id for j in js] for q, js in late.queue_jobs().items()}
        assert split == {q: ids for q, ids in left.items() if ids}
    if expected:  # split before its first change: the parts are made with the new job in place
        again = PendingIndex(cluster, tree, order, [waiting[i] for i in expected[1:]], thresholds)
        assert len(again.queue_jobs()) == len({q for q, ids in by_queue.items() if ids != [expected[0]]})
        assert len(list(again.needing_at_most(1 << 20))) == len(expected) - 1
        again.add(waiting[expected[0]])
        assert expected[0] in again and again.get(expected[0]) is waiting[expected[0]]
        assert [j.id for j in again.needing_at_most(1 << 20)] == expected
        assert {q: [j.id for j in js] for q, js in again.queue_jobs().items()} == by_queue
    for i in expected:  # the bulk keys are the keys an add computes: each job is found to remove
        assert bulk.remove(i) is waiting[i]
    assert not bulk.jobs and not bulk.queue_jobs()


@given(data=st.data(), policy=st.sampled_from(["fifo", "slurm", "tiresias", "drf", "wanka", "wanka-las"]))
@SETTINGS
def test_a_cycle_decides_the_same_with_a_kept_index(data, policy) -> None:
    cluster = data.draw(clusters())
    tree = data.draw(queue_trees(cluster))
    waiting = data.draw(jobs(tree, "p", 1000.0))
    config = get_policy(policy)
    index = PendingIndex(cluster, tree, config.job_order, (), config.las.thresholds)
    for job in reversed(waiting):
        index.add(job)
    plain = Snapshot(1000.0, cluster, ClusterState.empty(cluster), tree, waiting, [])
    kept = run_cycle(replace(plain, pending_index=index), config)
    fresh = run_cycle(plain, config)
    assert kept.decisions == fresh.decisions
    assert kept.reservations == fresh.reservations
    assert kept.unschedulable == fresh.unschedulable
    assert kept.order == fresh.order


def _job(id: str, queue: str, cards: int, submit: float, accel: tuple[str, ...] = ()) -> Job:
    return Job(id, "t", queue, (TaskGroup("w", 1, cards, accel),), submit_time=submit)


@pytest.fixture
def small():
    cluster = load_cluster("dev")
    flavors = [m.id for m in cluster.models]
    capacity = dict(zip(flavors, (int(c) for c in cluster.cards_by_model()), strict=True))
    return cluster, QueueTree.flat(flavors, capacity, ["alpha", "beta"])


def test_jobs_that_can_never_run_are_judged_once_and_set_aside(small) -> None:
    cluster, tree = small
    index = PendingIndex(cluster, tree, JobOrder.FIFO)
    index.add(_job("ok", "alpha", 1, 1.0))
    index.add(_job("nosuch", "gamma", 1, 2.0))
    index.add(_job("huge", "alpha", cluster.total_cards + 1, 3.0))
    assert set(index.rejected) == {"nosuch", "huge"}
    assert "unknown queue 'gamma'" in index.rejected["nosuch"]
    assert index.smallest_need() == 1  # only feasible jobs count
    snapshot = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, index.jobs, [], pending_index=index)
    result = run_cycle(snapshot, get_policy("fifo"))
    assert result.unschedulable == index.rejected
    assert [d.job_id for d in result.starts] == ["ok"]
    index.remove("nosuch")
    index.remove("huge")
    assert index.rejected == {}


def test_a_snapshot_rejects_an_index_that_does_not_match_it(small) -> None:
    cluster, tree = small
    job = _job("a", "alpha", 1, 0.0)
    index = PendingIndex(cluster, tree, JobOrder.FIFO, [job])
    base = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, [job], [], pending_index=index)
    with pytest.raises(ValueError, match="keeps fifo order; the policy sorts by priority"):
        run_cycle(base, get_policy("wanka"))
    with pytest.raises(ValueError, match=r"holds 1 jobs but snapshot\.pending 0"):
        run_cycle(replace(base, pending=[]), get_policy("fifo"))
    other = PendingIndex(cluster, copy.copy(tree), JobOrder.FIFO, [job])
    with pytest.raises(ValueError, match="another cluster or queue tree"):
        run_cycle(replace(base, pending_index=other), get_policy("fifo"))
    with pytest.raises(ValueError, match="already in the pending index"):
        index.add(job)


def test_the_order_a_cycle_reports_is_the_one_it_saw(small) -> None:
    cluster, tree = small
    first, second = _job("first", "alpha", 1, 0.0), _job("second", "beta", 1, 1.0)
    index = PendingIndex(cluster, tree, JobOrder.FIFO, [second, first])
    snapshot = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, index.jobs, [], pending_index=index)
    result = run_cycle(snapshot, get_policy("fifo"))
    assert result.order == ["first", "second"]  # read before the caller changes the index: kept
    late = run_cycle(snapshot, get_policy("fifo"))
    index.remove("first")
    with pytest.raises(RuntimeError, match=r"read CycleResult\.order first"):
        _ = late.order


@given(data=st.data(), preset=st.sampled_from(["wanka", "wanka-las"]))
@SETTINGS
def test_priority_las_order_is_class_then_attained_service_then_submit(data, preset) -> None:
    """``priority_las`` keys are static while a job waits: built in bulk or one by one, the index
    gives the order the policy sorts by (a requeued job's service moves it behind fresh ones), on
    the preset's ladder of LAS queues (one limit in ``wanka-las``, three in ``wanka``)."""
    cluster = data.draw(clusters())
    tree = data.draw(queue_trees(cluster))
    pool = data.draw(jobs(tree, "a", 1000.0))
    for j in pool:
        j.attained_service = data.draw(st.sampled_from([0.0, 100.0, 3600.0, 50_000.0, 360_000.0, 1e6]))
    thresholds = get_policy(preset).las.thresholds
    snapshot = Snapshot(1000.0, cluster, ClusterState.empty(cluster), tree, pool, [])
    expected = _policy_order(snapshot, JobOrder.PRIORITY_LAS, preset)
    one_by_one = PendingIndex(cluster, tree, JobOrder.PRIORITY_LAS, (), thresholds)
    for job in reversed(pool):
        one_by_one.add(job)
    assert [
        j.id for j in PendingIndex(cluster, tree, JobOrder.PRIORITY_LAS, pool, thresholds).jobs
    ] == expected
    assert [j.id for j in one_by_one.jobs] == expected
    keys = [(-j.priority, bisect_right(thresholds, j.attained_service), j.submit_time, j.id) for j in pool]
    assert expected == [j.id for _, j in sorted(zip(keys, pool, strict=True), key=lambda kj: kj[0])]
