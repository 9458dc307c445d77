import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanka.core import TERMINAL_STATES, TRANSITIONS, InvalidTransition, Job, JobState, TaskGroup
from wanka.core.jobs import las_services, lost_work_s


def job() -> Job:
    return Job("j1", "t", "q", (TaskGroup("w", 2, 8),))


@pytest.mark.parametrize(
    "path",
    [
        ["admitted", "running", "succeeded"],
        ["admitted", "running", "preempted", "pending", "admitted", "running", "failed"],
        [
            "admitted",
            "running",
            "pending",
            "admitted",
            "running",
            "cancelled",
        ],  # requeue after a node failure
        ["cancelled"],
    ],
    ids=["happy", "preempted-and-resumed", "requeued", "cancelled-while-pending"],
)
def test_allowed_paths(path):
    j = job()
    for state in path:
        j.transition(JobState(state))
    assert j.state == JobState(path[-1])


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_are_final(terminal):
    assert TRANSITIONS[terminal] == frozenset()


def test_a_forbidden_transition_names_what_is_allowed():
    j = job()
    with pytest.raises(InvalidTransition) as err:
        j.transition(JobState.SUCCEEDED)
    assert "pending to succeeded" in str(err.value) and "admitted" in str(err.value)


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(JobState)


def test_lost_work_counts_from_the_last_checkpoint():
    j = job()
    j.start_time = 0.0
    j.checkpoint_interval_s = 300.0
    assert j.lost_work_s(1000.0) == 100.0  # checkpoints at 300, 600, 900
    j.last_checkpoint_time = 950.0
    assert j.lost_work_s(1000.0) == 50.0


def test_lost_work_after_a_restart_delay_counts_checkpoints_from_its_end():
    j = job()
    j.start_time = 0.0
    j.checkpoint_interval_s = 300.0
    j.checkpoint_from = 120.0  # restoring the last checkpoint took two minutes
    assert j.lost_work_s(100.0) == 0.0  # still restoring: no new work to lose
    assert j.lost_work_s(1000.0) == 1000.0 - 720.0  # checkpoints at 420 and 720


def test_task_group_rejects_nonsense():
    with pytest.raises(ValueError, match="min_replicas"):
        TaskGroup("w", 2, 8, min_replicas=3)
    with pytest.raises(ValueError, match="replicas"):
        TaskGroup("w", 0, 8)


maybe_time = st.one_of(st.none(), st.floats(0, 5000))


@given(
    st.lists(
        st.tuples(maybe_time, maybe_time, maybe_time, st.sampled_from([None, 0.0, 60.0, 300.0, math.inf])),
        max_size=20,
    ),
    st.floats(0, 10000),
)
def test_lost_work_of_many_jobs_at_once_matches_one_at_a_time(rows, now):
    jobs = []
    for start, saved, origin, every in rows:
        j = job()
        j.start_time, j.last_checkpoint_time, j.checkpoint_from, j.checkpoint_interval_s = (
            start,
            saved,
            origin,
            every,
        )
        jobs.append(j)
    assert lost_work_s(jobs, now).tolist() == pytest.approx([j.lost_work_s(now) for j in jobs])


def test_a_copy_with_other_groups_counts_its_own_cards():
    """The totals are cached on the job; dataclasses.replace must not carry a stale one over."""
    elastic = Job("j1", "t", "q", (TaskGroup("w", 4, 8, min_replicas=1),))
    assert (elastic.total_cards, elastic.min_cards, elastic.elastic) == (32, 8, True)
    fixed = dataclasses.replace(elastic, groups=(TaskGroup("w", 2, 4),))
    assert (fixed.total_cards, fixed.min_cards, fixed.elastic) == (8, 8, False)


@given(
    st.lists(
        st.tuples(st.floats(0, 1e9), st.sampled_from([None, "svc"])),
        max_size=20,
    )
)
def test_las_service_of_many_jobs_at_once_matches_one_at_a_time(rows):
    jobs = []
    for attained, service in rows:
        j = job()
        j.attained_service, j.service = attained, service
        jobs.append(j)
    assert las_services(jobs).tolist() == [j.las_service for j in jobs]
