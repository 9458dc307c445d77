"""The running index a long-lived caller keeps (the twin, the control plane) must always equal one
built from scratch from the same jobs, whatever order jobs start and stop in. Hostile review: two
0-card jobs in one queue made the second removal fail, and every later cycle of the server."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_properties import SETTINGS, clusters, queue_trees
from wanka.core import Job, RunningIndex, TaskGroup
from wanka.core.state import GroupPlacement, Placement


def _placed(job_id: str, queue: str, model: str, node: int, cards: int) -> Job:
    job = Job(job_id, "t", queue, (TaskGroup("w", 1, cards),), start_time=0.0)
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
