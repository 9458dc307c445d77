"""The twin replays dependencies and job arrays as the control plane runs them (core.eligibility):
a dependent starts when its dependency holds, never before; an array's throttle is never exceeded;
a dependency that can never hold cancels the job, and what depends on it in turn."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanka.core import Job, TaskGroup, get_policy
from wanka.core.eligibility import parse_dependencies
from wanka.models import load_cluster
from wanka.sim.models import Models
from wanka.sim.replay import tenant_queues, trace_jobs
from wanka.sim.traces import TraceError, read_wanka
from wanka.sim.twin import SimConfig, Twin


def run(jobs, policy="fifo"):
    cluster = load_cluster("dev")  # one node, 8 cards
    twin = Twin(
        cluster,
        tenant_queues(cluster, sorted({j.queue for j, _ in jobs})),
        jobs,
        get_policy(policy),
        SimConfig(cycle_interval_s=1.0),
        Models().without_overheads(),
    )
    result = twin.run()
    return {s.job.id: s for s in result.stats}, twin


def job(jid, submit=0.0, cards=1, dependency="", array_id=None, max_running=None):
    deps = parse_dependencies(dependency) if dependency else ()
    return Job(
        jid,
        "t",
        "q",
        (TaskGroup("w", 1, cards),),
        submit_time=submit,
        dependencies=deps,
        array_id=array_id,
        array_max_running=max_running,
    )


def test_a_chain_starts_each_job_when_the_one_before_succeeds():
    by, _ = run(
        [
            (job("prep"), 100.0),
            (job("train", dependency="afterok:prep"), 50.0),
            (job("report", dependency="afterany:train"), 10.0),
            (job("on-failure", dependency="afternotok:train"), 10.0),
            (job("alongside", dependency="after:prep"), 10.0),
        ]
    )
    assert by["prep"].first_start == 0.0
    assert by["alongside"].first_start == 1.0  # the round after prep started (rounds: 1 s)
    assert by["train"].first_start == 100.0 and by["report"].first_start == 150.0
    assert by["on-failure"].outcome == "cancelled" and by["on-failure"].first_start is None


def test_an_array_throttle_runs_at_most_n_elements_at_once_in_index_order():
    elements = [(job(f"a_{i}", array_id="a", max_running=2), 100.0) for i in range(6)]
    by, _ = run([*elements, (job("after-all", dependency="afterok:a"), 10.0)])
    starts = [by[f"a_{i}"].first_start for i in range(6)]
    assert starts == [0.0, 0.0, 100.0, 100.0, 200.0, 200.0]  # 8 cards free, yet two at a time
    assert by["after-all"].first_start == 300.0  # a dependency on an array is on all its elements


def test_a_dependency_that_never_holds_cancels_its_chain():
    by, twin = run(
        [
            (job("huge", cards=64), 10.0),  # never fits on 8 cards: unschedulable
            (job("next", dependency="afterok:huge"), 10.0),
            (job("last", dependency="afterok:next"), 10.0),
            (job("fallback", dependency="afternotok:huge"), 10.0),
        ]
    )
    assert by["huge"].outcome == "unschedulable"
    assert by["next"].outcome == by["last"].outcome == "cancelled"
    assert "never holds" in twin.cancelled["next"] and by["fallback"].outcome == "succeeded"


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_no_job_starts_before_its_dependencies_hold_and_no_array_exceeds_its_throttle(data):
    n = data.draw(st.integers(2, 12))
    jobs = []
    for i in range(n):
        earlier = [f"j{k}" for k in range(i)]
        kinds = data.draw(st.lists(st.sampled_from(["afterok", "afterany", "after"]), max_size=2))
        deps = ",".join(f"{k}:{data.draw(st.sampled_from(earlier))}" for k in kinds) if earlier else ""
        cards = data.draw(st.sampled_from([1, 2, 4, 8]))
        jobs.append((job(f"j{i}", data.draw(st.floats(0, 100)), cards, deps), data.draw(st.floats(1, 500))))
    size, throttle = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 3))
    jobs += [(job(f"arr_{i}", 0.0, 1, array_id="arr", max_running=throttle), 50.0) for i in range(size)]
    by, _ = run(jobs, data.draw(st.sampled_from(["fifo", "wanka", "slurm"])))
    for jid, s in by.items():
        for d in s.job.dependencies:
            other = by[d.job_id]
            if s.first_start is None:
                continue
            if d.kind.value == "after":
                assert other.first_start is not None and other.first_start <= s.first_start
            else:  # afterok / afterany: only after it ended
                assert other.end is not None and other.end <= s.first_start, (jid, d)
    spans = sorted((by[f"arr_{i}"].first_start, by[f"arr_{i}"].end) for i in range(size))
    for t, _ in spans:
        assert sum(1 for a, b in spans if a <= t < b) <= throttle


def test_trace_rows_carry_dependencies_and_arrays(tmp_path):
    f = tmp_path / "jobs.csv"
    f.write_text(
        "job_id,submit_s,duration_s,cards,tenant,queue,dependency,array\n"
        "prep,0,100,1,lab,,,\n"
        "sweep,0,50,1,lab,,afterok:prep,0-9%2\n"
        "train,0,200,8,lab,,afterok:sweep,\n"
    )
    trace = read_wanka(f)
    jobs = trace_jobs(trace, load_cluster("dev"))
    assert [j.id for j, _ in jobs] == ["prep", *[f"sweep_{i}" for i in range(10)], "train"]
    by, _ = run(jobs)
    assert by["sweep_0"].first_start == 100.0 and by["train"].first_start == 100.0 + 5 * 50.0


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("a,0,1,1,lab,,afterok:nope,", "dependency", "no row has job id 'nope'"),
        ("a,0,1,1,lab,,singleton,", "dependency", "singleton"),
        ("a,0,1,1,lab,,,5-1", "array", "ranges ascending"),
        ("a,0,1,1,lab,,sometime:3,", "dependency", "not a dependency kind"),
    ],
)
def test_a_bad_dependency_or_array_names_the_column(tmp_path, row, column, message):
    f = tmp_path / "jobs.csv"
    f.write_text("job_id,submit_s,duration_s,cards,tenant,queue,dependency,array\n" + row + "\n")
    with pytest.raises(TraceError, match=message) as info:
        read_wanka(f)
    assert info.value.column == column
