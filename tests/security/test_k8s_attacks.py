"""Attacks on the Kubernetes backend by a hostile tenant — a member with a token and, where a
cluster allows it, rights to make pods, PodGroups and namespaces of its own — against the kit's real
API server and kubelet (as tests/backends/test_k8s.py, whose fixtures start them). Skipped where
the kit cannot run."""

# ruff: noqa: F811  (the kit's fixtures, imported from tests/backends/test_k8s.py, are the tests' arguments)
from __future__ import annotations

import json
import os

import pytest

from tests.backends.test_k8s import (  # noqa: F401  (kit, server, backend: fixtures)
    PY,
    _launch,
    backend,
    kit,
    member_pod,
    pods,
    server,
)
from tests.server.conftest import wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, job_state, log_of, submit
from wanka.backends import k8s_testbed
from wanka.backends.base import TaskState

pytestmark = pytest.mark.skipif(
    k8s_testbed.available() is not None, reason=f"real Kubernetes kit unavailable: {k8s_testbed.available()}"
)


def test_pods_run_as_the_tenants_own_uid_in_its_namespace_without_privilege(server, kit):
    user = make_member(server, "uid-k8s", "uid-k8s-user")
    with server.client(user) as c:
        jid = submit(c, command=[PY, "-c", "import time; time.sleep(600)"])
        wait_for(lambda: pods(kit, "wanka-uid-k8s", jid) and job_state(c, jid)["state"] == "running", 60)
        (pod,) = pods(kit, "wanka-uid-k8s", jid)
        c.post(f"/v1/jobs/{jid}/cancel")
        assert ended(c, jid, 60)["state"] == "cancelled"
    spec = pod["spec"]
    assert spec["schedulerName"] == "wanka" and spec["nodeName"] == kit.node_name
    assert spec["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910": "1"}
    if os.geteuid() == 0:
        sc = spec["containers"][0]["securityContext"]
        assert sc["runAsUser"] >= 2_000_000 and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not spec.get("automountServiceAccountToken")


def test_hostile_strings_stay_data_in_pods(server, kit, tmp_path):
    user = make_member(server, "hostile-k8s", "hostile-k8s-user")
    canary = tmp_path / "owned"
    words = [f"$(touch {canary})", f"; touch {canary}", f"`touch {canary}`", "a\nb", "'\"", "${HOME}"]
    env = {"EVIL": f"$(touch {canary})'\"\n; touch {canary} $(HOME)"}
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))"
    with server.client(user) as c:
        jid = submit(c, name=f"x'; touch {canary}; '", command=[PY, "-c", program, *words], env=env)
        assert ended(c, jid, 60)["state"] == "succeeded"
        # $(VAR) in a pod's command or env is Kubernetes' own expansion: wanka's strings are literal
        assert json.loads(log_of(c, jid)) == [words, env["EVIL"]]
    assert not canary.exists()


def test_a_pod_made_in_advance_under_a_runs_name_is_never_bound_nor_deleted(backend, kit):
    if not any(n["metadata"]["name"] == "direct" for n in kit.kube.get("/api/v1/namespaces")["items"]):
        kit.kube.post("/api/v1/namespaces", {"metadata": {"name": "direct"}})  # the backend's namespace
    squatter = kit.kit.host_python_pod("wanka-9003-1-0", ["-c", "pass"], labels={"wanka.io/job": "9003"})
    kit.kube.post("/api/v1/namespaces/direct/pods", squatter)  # its own spec, mounts, uid
    with pytest.raises(ValueError, match="not one wanka made"):
        backend.launch(_launch(backend, 9003, [kit.node_name]))
    there = kit.kube.get("/api/v1/namespaces/direct/pods/wanka-9003-1-0")
    assert not there["spec"].get("nodeName") and not there["metadata"].get("deletionTimestamp")
    kit.kube.delete("/api/v1/namespaces/direct/pods/wanka-9003-1-0", grace_period_seconds=0)


def test_a_look_alike_pod_in_another_namespace_never_stands_for_a_run(backend, kit):
    kk = kit.kit
    kit.kube.post("/api/v1/namespaces", {"metadata": {"name": "evil"}})
    fake = kk.host_python_pod(
        "wanka-9002-1-0",
        ["-c", "pass"],
        labels={"wanka.io/job": "9002", "wanka.io/run": "1", "wanka.io/task": "0"},
    )
    fake["metadata"]["finalizers"] = ["wanka.io/logs"]
    kit.kube.post("/api/v1/namespaces/evil/pods", fake)
    kk.bind(kit.kube, "evil", "wanka-9002-1-0", kit.node_name)
    backend.launch(_launch(backend, 9002, [kit.node_name], (PY, "-c", "import time; time.sleep(600)")))
    wait_for(
        lambda: (
            (kit.kube.get("/api/v1/namespaces/evil/pods/wanka-9002-1-0"))["status"].get("phase")
            == "Succeeded"
        )
    )
    # the real run is still running; the look-alike's end is not its end, and it is left alone
    assert [s.state for s in backend.status(9002, 1, 1)] == [TaskState.RUNNING]
    assert kit.kube.get("/api/v1/namespaces/evil/pods/wanka-9002-1-0")["metadata"]["finalizers"] == [
        "wanka.io/logs"
    ]
    backend.signal(9002, 1, 9)
    wait_for(lambda: backend.status(9002, 1, 1)[0].state is TaskState.EXITED, 60)
    kit.kube.patch("/api/v1/namespaces/evil/pods/wanka-9002-1-0", {"metadata": {"finalizers": None}})


def test_a_look_alike_of_a_tenants_pod_in_its_own_namespace_stands_for_nothing(server, kit):
    token = make_member(server, "ghost-k8s", "ghost-k8s-user")
    with server.client(token) as c:
        jid = submit(c, command=[PY, "-c", "import time; time.sleep(600)"], task_groups=[{"cards": 2}])
        wait_for(lambda: job_state(c, jid)["state"] == "running" and pods(kit, "wanka-ghost-k8s", jid), 60)
        labels = {"wanka.io/job": str(jid), "wanka.io/run": "1", "wanka.io/task": "0"}
        ghost = kit.kit.host_python_pod("ghost", ["-c", "pass"], labels=labels)
        ghost["metadata"]["finalizers"] = ["wanka.io/logs"]
        kit.kube.post("/api/v1/namespaces/wanka-ghost-k8s/pods", ghost)
        kit.kube.patch("/api/v1/namespaces/wanka-ghost-k8s/pods/ghost", {"metadata": {"finalizers": None}})
        kit.kube.delete("/api/v1/namespaces/wanka-ghost-k8s/pods/ghost", grace_period_seconds=0)
        wait_for(
            lambda: [p["metadata"]["name"] for p in pods(kit, "wanka-ghost-k8s", jid)] == [f"wanka-{jid}-1-0"]
        )
        assert job_state(c, jid)["state"] == "running"  # the ghost's end was not the task's
        c.post(f"/v1/jobs/{jid}/cancel")
        assert ended(c, jid, 60)["state"] == "cancelled"
    wait_for(lambda: pods(kit, "wanka-ghost-k8s", jid) == [], 60)  # the real pod was stopped


def test_a_namespace_someone_else_named_after_a_tenant_is_not_the_tenants(server, kit):
    kit.kube.post("/api/v1/namespaces", {"metadata": {"name": "wanka-victim-k8s"}})  # made first, unlabelled
    kit.kube.post("/api/v1/namespaces/wanka-victim-k8s/pods", member_pod(kit, "free-ride", None))
    victim = make_member(server, "victim-k8s", "victim-k8s-user")

    def said():
        pod = kit.kube.get("/api/v1/namespaces/wanka-victim-k8s/pods/free-ride")
        return " ".join(c.get("message", "") for c in pod["status"].get("conditions") or ())

    wait_for(lambda: "no wanka tenant" in said(), 30)  # its pods spend no one's quota
    with server.client(victim) as c:
        jid = submit(c, command=[PY, "-c", "pass"])
        job = ended(c, jid, 60)  # and the victim's pods are never put where its maker could read them
        assert job["state"] == "failed" and "wanka did not make it" in job["reason"], job
        assert c.get("/v1/jobs").json()["jobs"][0]["id"] == jid  # nothing of the free ride is the victim's
    assert not kit.kube.get("/api/v1/namespaces/wanka-victim-k8s/pods/free-ride")["spec"].get("nodeName")


def test_a_bigger_pod_slipped_into_an_admitted_podgroup_is_not_bound_in_its_place(server, kit):
    token = make_member(server, "swap-k8s", "swap-k8s-user")
    ns = {"metadata": {"name": "team-swap", "labels": {"wanka.io/tenant": "swap-k8s"}}}
    kit.kube.post("/api/v1/namespaces", ns)
    with server.client(token) as c:
        blocker = submit(c, command=[PY, "-c", "import time; time.sleep(600)"], task_groups=[{"cards": 8}])
        wait_for(lambda: job_state(c, blocker)["state"] == "running", 60)
        group = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                 "metadata": {"name": "g", "namespace": "team-swap"}, "spec": {"minMember": 1}}  # fmt: skip
        kit.kube.post("/apis/scheduling.volcano.sh/v1beta1/namespaces/team-swap/podgroups", group)
        kit.kube.post("/api/v1/namespaces/team-swap/pods", member_pod(kit, "p1", "g"))
        wait_for(
            lambda: [j for j in c.get("/v1/jobs").json()["jobs"] if j["name"] == "podgroup/team-swap/g"], 30
        )
        kit.kube.post("/api/v1/namespaces/team-swap/pods", member_pod(kit, "a-big", "g", cards=8))
        c.post(f"/v1/jobs/{blocker}/cancel")
        ended(c, blocker, 60)
        (job,) = [j for j in c.get("/v1/jobs").json()["jobs"] if j["name"] == "podgroup/team-swap/g"]
        assert ended(c, job["id"], 90)["state"] == "succeeded" and job["cards"] == 1
    assert kit.kube.get("/api/v1/namespaces/team-swap/pods/p1")["spec"]["nodeName"] == kit.node_name
    assert not kit.kube.get("/api/v1/namespaces/team-swap/pods/a-big")["spec"].get("nodeName")
