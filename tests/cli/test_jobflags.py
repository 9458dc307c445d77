"""`wanka submit`'s flags: Slurm's formats (sbatch(1)) turned into a job spec."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanka.cli.jobflags import apply_flags, parse_env, parse_memory_gib, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30 * 60),  # a bare number is minutes, as in Slurm
        ("5:30", 5 * 60 + 30),  # minutes:seconds
        ("1:02:03", 3723),  # hours:minutes:seconds
        ("2-3", 2 * 86400 + 3 * 3600),  # days-hours
        ("2-3:04", 2 * 86400 + 3 * 3600 + 4 * 60),
        ("2-3:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("90s", 90),
        ("30m", 1800),
        ("1.5h", 5400),
        ("1d", 86400),
    ],
)
def test_time_limits_read_as_slurm_reads_them(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "-5", "0", "0s", "1w", "1-"])
def test_a_time_that_is_not_one_is_refused_with_the_formats(text):
    with pytest.raises(ValueError, match=r"time|more than 0"):
        parse_time(text)


@given(st.integers(0, 365), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_every_days_hours_minutes_seconds_form_agrees(d, h, m, s):
    total = d * 86400 + h * 3600 + m * 60 + s
    if total == 0:
        return
    assert parse_time(f"{d}-{h}:{m:02d}:{s:02d}") == total
    if d == 0:
        assert parse_time(f"{h}:{m:02d}:{s:02d}") == total


@pytest.mark.parametrize(
    ("text", "gib"),
    [("64G", 64), ("64GB", 64), ("1T", 1024), ("512M", 1), ("2048", 2), ("1025M", 2), ("0", 0)],
)
def test_memory_reads_as_slurm_mem_rounded_up_to_whole_gib(text, gib):
    assert parse_memory_gib(text) == gib


@pytest.mark.parametrize("text", ["", "lots", "5X", "-1G"])
def test_memory_that_is_not_an_amount_is_refused(text):
    with pytest.raises(ValueError, match="memory"):
        parse_memory_gib(text)


def test_env_pairs_keep_everything_after_the_first_equals_sign():
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="NAME=value"):
        parse_env(["NOPE"])


def test_nodes_mean_nodes_as_in_slurm():
    one_each = apply_flags({}, {"nodes": 4, "cards": 8, "command": ["x"]})["task_groups"][0]
    assert one_each == {"cards": 8, "replicas": 4, "tasks_per_node": 1}
    two_each = apply_flags({}, {"nodes": 2, "tasks_per_node": 2, "command": ["x"]})["task_groups"][0]
    assert two_each == {"replicas": 4, "tasks_per_node": 2}
    spread = apply_flags({}, {"nodes": 2, "tasks": 5, "command": ["x"]})["task_groups"][0]
    assert spread == {"replicas": 5, "tasks_per_node": 3}  # 3 + 2: both nodes used
    tasks_only = apply_flags({}, {"tasks": 3, "command": ["x"]})["task_groups"][0]
    assert tasks_only == {"replicas": 3}  # packed as the scheduler sees fit


def test_flags_win_over_the_file_and_keep_the_rest_of_it():
    spec = {
        "name": "from-file",
        "env": {"A": "file", "B": "file"},
        "restart": {"max": 1},
        "task_groups": [{"role": "master", "cards": 1}, {"role": "worker", "replicas": 2, "cards": 8}],
        "command": ["python", "train.py"],
    }
    out = apply_flags(
        spec, {"name": "flag", "env": {"B": "flag"}, "restart": 3, "cards": 2, "priority_class": "high"}
    )
    assert out["name"] == "flag" and out["priority_class"] == "high"
    assert out["env"] == {"A": "file", "B": "flag"} and out["restart"] == {"max": 3}
    assert out["task_groups"] == [{"role": "master", "cards": 2}, spec["task_groups"][1]]
    assert out["command"] == ["python", "train.py"] and spec["name"] == "from-file"  # not mutated
