"""The running index a long-lived caller keeps (the twin, the control plane) must always equal one
built from scratch from the same jobs, whatever order jobs start and stop in. Hostile review: two
0-card jobs in one queue made the second removal fail, and every later cycle of the server."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_properties import SETTINGS, clusters, queue_trees
from wanka.core import Job, RunningIndex, TaskGroup
from wanka.core.jobs import lost_work_at, lost_work_s
from wanka.core.running import RunningColumns
from wanka.core.state import GroupPlacement, Placement
from wanka.core.whatif import TaskTable


def _placed(job_id: str, queue: str, model: str, node: int, cards: int) -> Job:
    job = Job(job_id, "t", queue, (TaskGroup("w", 1, cards),), start_time=0.0, checkpoint_interval_s=30.0)
    mask = (1 << cards) - 1
    job.placement = Placement(model, (GroupPlacement("w", (node,), (mask,), cards),))
    return job


@given(data=st.data())
@SETTINGS
def test_the_kept_index_equals_a_fresh_one_after_any_starts_and_stops(data) -> None:
    cluster = data.draw(clusters())
    tree = data.draw(queue_trees(cluster))
    leaves = [n for n in tree.names if tree.is_leaf(n)]
    index = RunningIndex(cluster, tree)
    running: dict[str, Job] = {}
    for step in range(data.draw(st.integers(1, 30))):
        if running and data.draw(st.booleans()):
            gone = data.draw(st.sampled_from(sorted(running)))
            index.remove(gone)
            del running[gone]
        else:
            node = data.draw(st.integers(0, cluster.num_nodes - 1))
            cards = data.draw(st.sampled_from([0, 0, 1, 2]))  # CPU-only tasks hold no card
            model = cluster.models[cluster.node_model[node]].id
            job = _placed(f"j{step}", data.draw(st.sampled_from(leaves)), model, node, cards)
            index.add(job, 0.0)
            running[job.id] = job
        fresh = RunningIndex.build(cluster, tree, running.values(), 0.0)
        assert (index.held, index.cpus, index.memory) == (fresh.held, fresh.cpus, fresh.memory)
        assert list(index.entries) == list(fresh.entries)
        _assert_same_columns(index.columns(), fresh.columns())
        _assert_columns_describe(index, list(running.values()))


def _assert_same_columns(kept: RunningColumns, fresh: RunningColumns) -> None:
    for f in dataclasses.fields(RunningColumns):
        a, b = getattr(kept, f.name), getattr(fresh, f.name)
        if f.name == "position":  # per index row: only the live rows' positions must agree
            assert sorted(a[a >= 0].tolist()) == b.tolist()
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name


def _assert_columns_describe(index: RunningIndex, jobs: list[Job]) -> None:
    """Row i of the columns is the i-th job of ``entries``; its tasks are that job's tasks."""
    c = index.columns()
    entries = list(index.entries.values())
    assert c.ids.tolist() == [e.job.id for e in entries]
    assert c.cards.tolist() == [e.cards for e in entries]
    assert [c.position[e.row] for e in entries] == list(range(len(entries)))
    np.testing.assert_array_equal(
        lost_work_at(50.0, c.start, c.saved, c.every, c.origin), lost_work_s([e.job for e in entries], 50.0)
    )
    table = TaskTable(entries)
    for name in ("task_entry", "task_node", "task_cards", "task_cpus", "task_mem"):
        np.testing.assert_array_equal(getattr(c, name), getattr(table, name), err_msg=name)


def test_the_columns_survive_compaction(monkeypatch):
    """Rows of stopped jobs are dropped once they are many; the live rows keep their order."""
    from wanka.core import QueueTree
    from wanka.models.cluster import load_cluster

    monkeypatch.setattr(RunningIndex, "compact_after", 2)
    cluster = load_cluster("dev")
    model = cluster.models[0].id
    tree = QueueTree.flat([model], {model: 8}, ["q"])
    index = RunningIndex(cluster, tree)
    jobs = {}
    for i in range(40):
        job = _placed(f"j{i:02d}", "q", model, i % cluster.num_nodes, 0)
        job.checkpoint_interval_s, job.start_time = 7.0 + i, float(i)
        index.add(job, 0.0)
        jobs[job.id] = job
        if i % 3:
            gone = sorted(jobs)[0]
            index.remove(gone)
            del jobs[gone]
        _assert_columns_describe(index, list(jobs.values()))
    assert len(index._rows) < 40  # compacted at least once


def test_two_cpu_only_jobs_of_one_queue_start_and_stop():
    from wanka.core import QueueTree
    from wanka.models.cluster import load_cluster

    cluster = load_cluster("dev")
    model = cluster.models[0].id
    tree = QueueTree.flat([model], {model: 8}, ["q"])
    index = RunningIndex(cluster, tree)
    for job_id in ("a", "b"):
        index.add(_placed(job_id, "q", model, 0, 0), 0.0)
    index.remove("a")
    index.remove("b")  # raised KeyError: (queue, flavor)
    assert index.held == {} and len(index) == 0
