"""The policy's ranks of many running jobs at once are the ranks it gives each job alone."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wanka.core import ClusterState, Job, QueueTree, Snapshot, TaskGroup, get_policy
from wanka.core.config import LasConfig
from wanka.core.running import Running
from wanka.core.session import Session
from wanka.models import load_cluster

CLUSTER = load_cluster("dev")
FLAVORS = [m.id for m in CLUSTER.models]
TREE = QueueTree.flat(FLAVORS, {f: 8 for f in FLAVORS}, ["alpha"])
# on and around the limits, and none (NaN: a job that never reported its service)
SERVICE = st.sampled_from([0.0, 1.0, 3599.999, 3600.0, 3600.001, 36000.0, 1e6, float("nan")])


@st.composite
def running_jobs(draw) -> list[Running]:
    out = []
    for i in range(draw(st.integers(0, 30))):
        job = Job(
            f"r{i}",
            "alpha",
            "alpha",
            (TaskGroup(replicas=draw(st.integers(1, 4)), cards=draw(st.integers(0, 8))),),
            priority=draw(st.sampled_from([0, 100, 500, 1000])),
            attained_service=draw(SERVICE),
            last_run_end=draw(st.none() | st.floats(0.0, 2000.0)),
        )
        out.append(Running(job, None, 0, 0, float("inf")))
    return out


@given(
    running=running_jobs(),
    policy=st.sampled_from(["tiresias", "wanka", "wanka-las", "slurm", "fifo"]),
    starvation=st.sampled_from([0.0, 0.5, 2.0]),
    thresholds=st.sampled_from([(3600.0,), (3600.0, 36000.0), (3250.0, 7200.0, 36000.0)]),
)
@settings(max_examples=200, deadline=None)
def test_ranks_of_many_are_each_ones_rank(running, policy, starvation, thresholds) -> None:
    config = get_policy(policy)
    config = config.with_(las=LasConfig(thresholds, starvation))
    session = Session(Snapshot(1000.0, CLUSTER, ClusterState.empty(CLUSTER), TREE, [], []), config)
    priority = np.array([e.job.priority for e in running], dtype=np.int64)
    together = session.ordering.ranks(running, priority)
    alone = [session.ordering.rank(e.job) for e in running]
    assert together.tolist() == alone  # exactly: victims are ordered and compared by these values
    assert together.dtype == np.float64


def test_a_starved_job_ranks_in_the_top_queue_under_tiresias() -> None:
    config = get_policy("tiresias").with_(las=LasConfig((3600.0,), 2.0))
    session = Session(Snapshot(1000.0, CLUSTER, ClusterState.empty(CLUSTER), TREE, [], []), config)
    served = Job("s", "alpha", "alpha", (TaskGroup(cards=1),), attained_service=400.0)
    # 4,000 card-s on one card, factor 2: back in the top queue once it has waited 8,000 s
    jobs = [
        dataclasses.replace(served, id="waited", attained_service=4000.0, last_run_end=0.0),  # 1,000 s
        dataclasses.replace(served, id="promoted", attained_service=4000.0, last_run_end=-7000.0),  # 8,000 s
        dataclasses.replace(served, id="fresh", attained_service=0.0),
    ]
    running = [Running(j, None, 0, 0, float("inf")) for j in jobs]
    ranks = session.ordering.ranks(running, np.array([j.priority for j in jobs]))
    assert ranks.tolist() == [-1.0, -0.0, -0.0]
