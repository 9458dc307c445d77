import pytest

from wanka.core import JobKind
from wanka.models import SpecError, load_cluster, parse_job_spec, parse_queue_tree


def test_a_job_spec_becomes_a_core_job():
    spec = parse_job_spec(
        {
            "name": "llm-pretrain",
            "tenant": "acme",
            "queue": "acme-train",
            "priority_class": "high",
            "task_groups": [
                {"replicas": 32, "min_replicas": 16, "cards": 8, "accelerators": ["ascend-910c", "huawei"]}
            ],
            "time_limit_s": 86400,
            "checkpoint_interval_s": 1800,
        }
    )
    job = spec.to_job("j1", submit_time=5.0)
    assert job.total_cards == 256 and job.min_cards == 128 and job.elastic
    assert job.priority == 1000 and job.preemptible and job.kind is JobKind.TRAINING


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        parse_job_spec(data)
    return dict(err.value.problems)


def test_job_spec_errors_name_the_field_and_what_is_accepted():
    p = problems({"task_groups": [{"cards": 8, "accelerators": ["tpu"]}], "priority_class": "urgent"})
    assert "ascend-910c" in p["task_groups[0].accelerators"]
    assert "critical" in p["priority_class"]
    assert "task_groups" in problems({"task_groups": []})
    assert "unknown field" in problems({"task_groups": [{}], "gpus": 8})["gpus"]
    # what is accepted where the unknown field stands: the job's fields, or a task group's
    assert "task_groups" in problems({"task_groups": [{}], "gpus": 8})["gpus"]
    misspelt = problems({"task_groups": [{"cardz": 8}]})["task_groups[0].cardz"]
    assert "cards" in misspelt and "replicas" in misspelt and "task_groups" not in misspelt
    assert "min_replicas" in problems({"task_groups": [{"replicas": 2, "min_replicas": 3}]})["task_groups[0]"]


def test_queue_tree_spec_builds_and_checks_models():
    cluster = load_cluster("mixed-domestic")
    tree = parse_queue_tree(
        {
            "organisations": [
                {
                    "name": "acme",
                    "quota": {"ascend-910b3": {"nominal": 512}},
                    "queues": [
                        {
                            "name": "acme-train",
                            "quota": {"ascend-910b3": {"nominal": 256, "lending_limit": 64}},
                        }
                    ],
                },
            ]
        },
        cluster,
    )
    assert tree.is_leaf("acme-train") and not tree.is_leaf("acme")
    with pytest.raises(SpecError) as err:
        parse_queue_tree({"organisations": [{"name": "x", "quota": {"h100": {"nominal": 8}}}]}, cluster)
    assert "this cluster has no h100" in str(err.value)
    with pytest.raises(SpecError) as err:
        parse_queue_tree(
            {"organisations": [{"name": "x", "quota": {"ascend-910b3": {"nominal": -1}}}]}, cluster
        )
    assert "organisations[0].quota.ascend-910b3.nominal" in str(err.value)


def test_queue_time_limits_are_inherited_and_checked():
    cluster = load_cluster("dev")
    doc = {
        "organisations": [
            {
                "name": "lab",
                "max_time_limit_s": 7200,
                "queues": [{"name": "a", "default_time_limit_s": 600}, {"name": "b"}],
            }
        ]
    }
    tree = parse_queue_tree(doc, cluster)
    a, b = tree.index["a"], tree.index["b"]
    assert (tree.default_time_limit[a], tree.max_time_limit[a]) == (600, 7200)
    assert (tree.default_time_limit[b], tree.max_time_limit[b]) == (7200, 7200)  # Slurm: MaxTime
    doc["organisations"][0]["queues"][0]["default_time_limit_s"] = 0
    with pytest.raises(SpecError, match="default_time_limit_s"):
        parse_queue_tree(doc, cluster)
    bad = {"organisations": [{"name": "x", "default_time_limit_s": 9000, "max_time_limit_s": 60}]}
    with pytest.raises(SpecError, match="must not exceed max_time_limit_s"):
        parse_queue_tree(bad, cluster)
