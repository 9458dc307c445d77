import pytest

from wanka.core import TERMINAL_STATES, TRANSITIONS, InvalidTransition, Job, JobState, TaskGroup


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


def test_task_group_rejects_nonsense():
    with pytest.raises(ValueError, match="min_replicas"):
        TaskGroup("w", 2, 8, min_replicas=3)
    with pytest.raises(ValueError, match="replicas"):
        TaskGroup("w", 0, 8)
