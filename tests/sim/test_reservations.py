"""A large job at the head of the queue is not starved by a stream of small ones, whether or not
running jobs give time limits (issue 14, item 6): a reservation holds the capacity the running jobs
free for it (Slurm's backfill with DefaultTime/MaxTime does the same with known limits)."""

import pytest

from wanka.core import Job, TaskGroup, get_policy
from wanka.models import parse_cluster
from wanka.sim.models import Models
from wanka.sim.replay import tenant_queues
from wanka.sim.twin import SimConfig, Twin

TWO_NODES = {"name": "two", "pools": [{"name": "n", "accelerator": "h100", "nodes": 2, "cards_per_node": 8}]}


def stream(time_limits: bool) -> list[tuple[Job, float]]:
    """R1, R2 (8 cards) end at t=100 and t=50; BIG (16 cards) waits at the head; an 8-card job
    arrives every 30 s and runs 60 s (40 of them)."""

    def job(jid, submit, run_s, replicas=1):
        limit = run_s if time_limits else None
        group = TaskGroup("w", replicas, 8)
        return Job(jid, "t", "q", (group,), submit_time=submit, time_limit_s=limit), run_s

    jobs = [job("r1", 0.0, 100.0), job("r2", 0.0, 50.0), job("big", 1.0, 500.0, replicas=2)]
    return jobs + [job(f"s{i:02d}", 30.0 * (i + 1), 60.0) for i in range(40)]


@pytest.mark.parametrize("policy", ["slurm", "wanka"])
@pytest.mark.parametrize("time_limits", [True, False], ids=["limits", "no-limits"])
def test_the_head_job_starts_when_the_running_jobs_end(policy, time_limits):
    cluster = parse_cluster(TWO_NODES)
    twin = Twin(
        cluster,
        tenant_queues(cluster, ["q"]),
        stream(time_limits),
        get_policy(policy),
        SimConfig(cycle_interval_s=1.0),
        Models().without_overheads(),
    )
    by = {s.job.id: s for s in twin.run().stats}
    assert by["r1"].first_start == 0.0 and by["r2"].first_start == 0.0
    assert by["big"].first_start == 100.0
