"""What the Kubernetes backend reads from and writes to the API server, as objects: nodes to
inventory, tasks to pods, others' pods and PodGroups to workloads. No cluster needed (the kit's
tests, test_k8s.py, send the same objects through a real one)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanka.backends._k8s_foreign import _safe
from wanka.backends._k8s_podgroups import workload_of_group, workload_of_pod
from wanka.backends._k8s_pods import (
    DRAIN_TAINT,
    FINALIZER,
    namespace_for,
    node_info,
    pod_manifest,
)
from wanka.backends.base import Launch, TaskLaunch
from wanka.models.hardware import default_catalog

CATALOG = default_catalog()
TOPOLOGY = ("network.topology.kubernetes.io/block", "network.topology.kubernetes.io/rack")


def node(name="n1", resources=None, labels=None, ready="True", unschedulable=False, taints=()):
    alloc = {
        "cpu": "96",
        "memory": "1536Gi",
        **(resources if resources is not None else {"nvidia.com/gpu": "8"}),
    }
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"unschedulable": unschedulable, "taints": list(taints)},
        "status": {
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": ready}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
        },
    }


def test_a_nodes_model_comes_from_the_labels_its_device_plugin_sets():
    h100 = node(labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    assert node_info(h100, CATALOG, TOPOLOGY).model == "h100"
    ascend = node(
        resources={"huawei.com/Ascend910": "16"}, labels={"node.kubernetes.io/npu.chip.name": "910B4"}
    )
    info = node_info(ascend, CATALOG, TOPOLOGY)
    assert (info.model, info.cards, info.resource) == ("ascend-910b4", 16, "huawei.com/Ascend910")
    assert (info.cpus, info.memory_gib, info.address) == (96, 1536, "10.0.0.7")
    # wanka's own label wins; a resource of one model needs none
    assert node_info(node(labels={"wanka.io/accelerator": "h20"}), CATALOG, TOPOLOGY).model == "h20"
    assert node_info(node(resources={"amd.com/gpu": "8"}), CATALOG, TOPOLOGY).model == "mi300x"
    assert node_info(node(resources={}), CATALOG, TOPOLOGY) is None  # CPUs only: not wanka's


def test_readiness_cordons_and_topology_are_read_from_the_node():
    assert not node_info(node(ready="Unknown"), CATALOG, TOPOLOGY).ready
    assert node_info(node(unschedulable=True), CATALOG, TOPOLOGY).cordoned_by_others
    ours = node(unschedulable=True, taints=[{"key": DRAIN_TAINT, "effect": "NoSchedule"}])
    assert not node_info(ours, CATALOG, TOPOLOGY).cordoned_by_others  # wanka's own drain
    labels = {TOPOLOGY[0]: "b1", TOPOLOGY[1]: "r1"}
    assert node_info(node(labels=labels), CATALOG, TOPOLOGY).domains == ("b1/r1", "b1")  # innermost first
    assert node_info(node(labels={TOPOLOGY[1]: "r1"}), CATALOG, TOPOLOGY).domains == ()  # no block: none


@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_every_tenant_gets_a_namespace_of_its_own_that_kubernetes_accepts(tenants):
    names = [namespace_for(t, True, "wanka") for t in tenants]
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names), names
    assert len(set(names)) == len(names)
    assert namespace_for("anyone", False, "wanka") == "wanka"


def launch(argv=("python", "-c", "pass"), env=None, name="job"):
    task = TaskLaunch(1, "worker", "n1", (4, 5), {"RANK": "1", "CUDA_VISIBLE_DEVICES": "4,5"})
    return Launch(7, 2, name, tuple(argv), (task,), "/ck/7", env or {}, tenant="t1", tenant_id=3)


def manifest(lc, template=None, run_as=None):
    return pod_manifest(lc, lc.tasks[0], namespace="wanka-t1", resource="nvidia.com/gpu", cards=2,
                        visible_env="CUDA_VISIBLE_DEVICES", template=template or {}, grace_s=10,
                        run_as=run_as, base_env={})  # fmt: skip


def test_a_tasks_pod_is_the_template_with_wankas_part_laid_over_it():
    template = {
        "metadata": {"labels": {"team": "x"}},
        "spec": {
            "nodeName": "elsewhere",
            "containers": [{"name": "c", "image": "img:1"}, {"name": "sidecar"}],
        },
    }
    pod = manifest(launch(), template, run_as=(2000003, 2000003))
    assert pod["metadata"]["name"] == "wanka-7-2-1" and pod["metadata"]["namespace"] == "wanka-t1"
    assert pod["metadata"]["labels"] == {
        "team": "x",
        "wanka.io/job": "7",
        "wanka.io/run": "2",
        "wanka.io/task": "1",
    }
    assert pod["metadata"]["finalizers"] == [FINALIZER]
    spec = pod["spec"]
    assert spec["schedulerName"] == "wanka" and "nodeName" not in spec  # wanka binds it
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    main = spec["containers"][0]
    assert main["image"] == "img:1" and spec["containers"][1] == {"name": "sidecar"}
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"  # the device plugin numbers a container's cards from 0
    assert env["RANK"] == "1"
    assert {"name": "wanka-checkpoint", "mountPath": "/ck/7"} in main["volumeMounts"]
    sc = main["securityContext"]
    assert sc["runAsUser"] == 2000003 and sc["allowPrivilegeEscalation"] is False and not sc["privileged"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert manifest(launch())["spec"]["containers"][0]["image"] == "python:3.11-slim"


def test_a_tenants_strings_reach_the_pod_as_literal_data():
    # the kubelet expands $(VAR) in command, args and env values, and reads $$ as $
    lc = launch(argv=("sh", "-c", "echo $(HOME) $$"), env={"X": "$(SECRET)"}, name="x'; $(id)")
    pod = manifest(lc)
    main = pod["spec"]["containers"][0]
    assert main["command"] == ["sh", "-c", "echo $$(HOME) $$$$"]
    assert {e["name"]: e["value"] for e in main["env"]}["X"] == "$$(SECRET)"
    assert pod["metadata"]["annotations"]["wanka.io/job-name"] == "x'; $(id)"  # an annotation: data
    assert all("$" not in v and "'" not in v for v in pod["metadata"]["labels"].values())


def member(name, cards=1, role=None, cpu="2", memory="8Gi", resource="huawei.com/Ascend910"):
    labels = {"volcano.sh/task-spec": role} if role else {}
    limits = {resource: str(cards)} if cards else {}
    return {
        "metadata": {"name": name, "uid": f"u-{name}", "namespace": "team", "labels": labels},
        "spec": {
            "containers": [{"resources": {"limits": limits, "requests": {"cpu": cpu, "memory": memory}}}]
        },
        "status": {"phase": "Pending"},
    }


def group(min_member=3, **spec):
    meta = {"name": "trainer", "namespace": "team", "uid": "0f6c1f6e-aaaa-4bbb-8ccc-123456789abc"}
    return {"metadata": meta, "spec": {"minMember": min_member, **spec}}


def test_a_podgroups_pods_become_task_groups_by_role_ranked_in_name_order():
    pods = [member("w-1", 8, "worker"), member("m-0", 8, "master", cpu="500m"), member("w-0", 8, "worker")]
    w = workload_of_group(group(3, queue="research", priorityClassName="high"), pods, CATALOG)
    assert not w.problem and (w.queue, w.priority_class, w.resource) == (
        "research",
        "high",
        "huawei.com/Ascend910",
    )
    assert w.task_groups() == [
        {"role": "master", "replicas": 1, "cards": 8, "cpus": 1, "memory_gib": 8},
        {"role": "worker", "replicas": 2, "cards": 8, "cpus": 2, "memory_gib": 8},
    ]
    assert w.pods_by_role() == {"master": ["m-0"], "worker": ["w-0", "w-1"]}
    # one role, two shapes: two task groups
    mixed = workload_of_group(group(2), [member("a", 8), member("b", 4)], CATALOG)
    assert [(g["role"], g["cards"]) for g in mixed.task_groups()] == [("worker", 8), ("worker-2", 4)]


def test_a_podgroup_short_of_its_min_member_or_mixing_accelerators_says_why():
    short = workload_of_group(group(4), [member("a"), member("b")], CATALOG)
    assert short.problem == "2 of its minMember 4 pods exist: waiting for the rest"
    mixed = workload_of_group(group(2), [member("a"), member("b", resource="nvidia.com/gpu")], CATALOG)
    assert "different accelerators" in mixed.problem
    lone = workload_of_pod(member("solo", 2), CATALOG)
    assert (lone.kind, lone.key, lone.task_groups()[0]["cards"]) == ("Pod", "u-solo", 2)


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b", "", "x" * 65, "ABC"])
def test_a_claims_file_name_is_a_uid_or_nothing(key):
    with pytest.raises(ValueError):
        _safe(key)
