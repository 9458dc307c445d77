"""The twin's `tiresias` against the published Tiresias simulator (SymbioticLab/Tiresias, dlas-gpu),
on small cases where their models agree: the preset with the released simulator's LAS thresholds,
overheads off and a 1 s round (issue 14, item 9). Each case states when the published simulator
starts the jobs; the twin must start them then."""

import pytest

from wanka.core import Job, LasConfig, TaskGroup, get_policy
from wanka.models import load_cluster, parse_cluster
from wanka.sim.models import Models
from wanka.sim.replay import tenant_queues
from wanka.sim.scenario import LAS_THRESHOLDS
from wanka.sim.twin import SimConfig, Twin

RELEASED = LAS_THRESHOLDS["tiresias-released"]  # (3250, 7200) card-seconds


def tiresias(thresholds=RELEASED, starvation_factor=0.0):
    return get_policy("tiresias").with_(las=LasConfig(thresholds, starvation_factor))


def job(jid, submit, cards=1):
    return Job(jid, "t", "q", (TaskGroup("w", 1, cards),), submit_time=submit)


def run(cluster, jobs, policy=None):
    """Overheads off (no checkpoint writes, restarts or topology penalty), a round every second."""
    queues = tenant_queues(cluster, ["q"])
    twin = Twin(
        cluster,
        queues,
        jobs,
        policy or tiresias(),
        SimConfig(cycle_interval_s=1.0),
        Models().without_overheads(),
    )
    return {s.job.id: s for s in twin.run().stats}


def eight_long_jobs_then_a_short_one():
    """On `dev` (8 cards): eight 1-card jobs of 10,000 s at t=0, then `b` (1 card, 100 s) at t=100."""
    return [(job(f"a{i}", 0.0), 10_000.0) for i in range(8)] + [(job("b", 100.0), 100.0)]


@pytest.mark.parametrize(
    "thresholds, b_starts",
    [(RELEASED, 3250.0), (LAS_THRESHOLDS["wanka"], 3600.0)],
    ids=["released-3250", "wanka-3600"],
)
def test_crossing_a_threshold_lets_a_waiting_job_preempt_then(thresholds, b_starts):
    # the running jobs reach the first threshold together; b, still in the first queue, preempts one
    by = run(load_cluster("dev"), eight_long_jobs_then_a_short_one(), tiresias(thresholds))
    assert by["b"].first_start == b_starts and by["b"].end == b_starts + 100.0
    assert sum(by[f"a{i}"].preemptions for i in range(8)) == 1


def test_the_crossing_is_exact_for_a_gang_that_started_between_seconds():
    # an 8-card job from t=0.1 reaches 3,250 card-s at 0.1 + 3,250/8 = 406.35 s, not a round later
    jobs = [(job("a", 0.1, cards=8), 10_000.0), (job("b", 1.0), 100.0)]
    by = run(load_cluster("dev"), jobs)
    assert by["b"].first_start == pytest.approx(0.1 + 3250.0 / 8, abs=1e-9)
    assert by["a"].preemptions == 1


def test_more_than_sixteen_preemptors_start_at_the_same_instant():
    # 32 one-card jobs of 100,000 s fill 32 cards at t=0; 20 one-card jobs of 100 s arrive at 5,000.
    # The core lets 16 preempt per round; a follow-up round at the same instant starts the other 4.
    cluster = parse_cluster(
        {"name": "c32", "pools": [{"name": "n", "accelerator": "h100", "nodes": 4, "cards_per_node": 8}]}
    )
    jobs = [(job(f"long{i:02d}", 0.0), 100_000.0) for i in range(32)]
    jobs += [(job(f"short{i:02d}", 5000.0), 100.0) for i in range(20)]
    by = run(cluster, jobs)
    assert [by[f"short{i:02d}"].first_start for i in range(20)] == [5000.0] * 20
    assert sum(by[f"long{i:02d}"].preemptions for i in range(32)) == 20


@pytest.mark.parametrize("factor, b_preempted", [(0.0, 0), (2.0, 1)], ids=["off", "knob-2"])
def test_starvation_promotion_is_an_event_too(factor, b_preempted):
    # a and b take the whole node for 1,000 s each. b preempts a at 406.25 s (a crossed 3,250
    # card-s); with PROMOTEKNOB 2, a is due for promotion after waiting 2 x 406.25 s, at 1,218.75 s,
    # and preempts b then (both in the second queue otherwise: b would run to 1,406.25 s)
    jobs = [(job("a", 0.0, cards=8), 1000.0), (job("b", 10.0, cards=8), 1000.0)]
    by = run(load_cluster("dev"), jobs, tiresias((3250.0,), factor))
    assert by["b"].first_start == 406.25 and by["b"].preemptions == b_preempted
    if b_preempted:
        assert by["a"].end == 1218.75 + 1000.0  # it lost its first run: no checkpoint within 406 s
    else:
        assert by["b"].end == 1406.25


def test_a_job_alone_takes_its_stated_duration_with_overheads_off():
    by = run(load_cluster("dev"), [(job("a", 0.0), 1000.0)])
    assert (by["a"].first_start, by["a"].end) == (0.0, 1000.0)
