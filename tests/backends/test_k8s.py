"""The Kubernetes backend against a real API server, kubelet and containerd (the project's kit:
``shared/k8s``, all on 127.0.0.1, stopped by pid) and a real wanka server driving it over HTTP.
Pods on the kit's one real node (``kit-node``, 8 Ascend cards advertised) really run this
machine's Python; fake nodes (Node objects with no kubelet, moved along by the kit's
FakeKubelet) stand for the rest of a cluster. Skipped where the kit cannot run (not root, kit or
its packages missing: `.ci/setup` installs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

import tests.conftest as top
from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import WORKER, ended, job_state, log_of, submit
from wanka.backends import k8s_testbed
from wanka.backends.base import Launch, TaskLaunch, TaskState

pytestmark = pytest.mark.skipif(
    k8s_testbed.available() is not None, reason=f"real Kubernetes kit unavailable: {k8s_testbed.available()}"
)
PY = sys.executable
CHIP = {"node.kubernetes.io/npu.chip.name": "910B3"}  # what the Ascend device plugin labels


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    k = k8s_testbed.KubeKit(tmp_path_factory.mktemp("k8s")).start()
    fake = k.kit.FakeKubelet(k.kube, prefix="fake-")
    try:  # stopped by its pids whatever fails from here: a set-up that fails must not leave a kit
        k.kube.patch(f"/api/v1/nodes/{k.node_name}", {"metadata": {"labels": CHIP}})
        install = wanka_cli("k8s", "install", "--kubeconfig", str(k.kubeconfig))
        assert "CustomResourceDefinition podgroups.scheduling.volcano.sh created" in install.stdout, install
        fake.start()
        yield k
    finally:
        if fake.is_alive():
            fake.stop()
        k.stop()


def server_args(kit, where) -> tuple[str, ...]:
    template = where / "pod.yaml"
    template.write_text(yaml.safe_dump(kit.host_template()))
    # a grace period the kubelet's own stop fits in on a loaded machine (the tasks here exit on
    # SIGTERM at once: it costs no time), before wanka's SIGKILL
    return ("--backend", "kubernetes", "--kubeconfig", str(kit.kubeconfig), "--namespace-per-tenant",
            "--pod-template", str(template), "--health-every", "0.3", "--grace", "10")  # fmt: skip


@pytest.fixture(scope="module")
def server(kit, tmp_path_factory):
    home = tmp_path_factory.mktemp("wanka-k8s-home")
    s = start_server(home, server_args(kit, home))
    yield s
    stop_server(s)


def wanka_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [PY, "-m", "wanka.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def pods(kit, namespace: str, job_id: int | None = None) -> list[dict]:
    query = {"labelSelector": f"wanka.io/job={job_id}"} if job_id else {}
    return kit.kube.get(f"/api/v1/namespaces/{namespace}/pods", **query)["items"]


def placed_on(c, job_id: int) -> list[str]:
    events = c.get(f"/v1/jobs/{job_id}/events").json()
    return [e["reason"] for e in events if e["state"] == "admitted"][-1].split("placed on ")[1].split(", ")


def nodes_of(admin) -> dict[str, dict]:
    return {n["name"]: n for n in admin.get("/v1/nodes").json()}


def test_the_inventory_is_the_clusters_nodes(server, kit):
    with server.client(server.admin_token) as admin:
        nodes = admin.get("/v1/nodes").json()
    # huawei.com/Ascend910 counts every 910 model; the device plugin's chip label says which
    assert [(n["name"], n["model"], n["cards"], n["state"]) for n in nodes] == [
        (kit.node_name, "ascend-910b3", 8, "up")
    ]


def test_a_gang_runs_as_pods_bound_where_wanka_placed_them_with_ranks_devices_and_exit_codes(
    server, kit, tmp_path
):
    user = make_member(server, "gang-k8s", "gang-k8s-user")
    show = (
        "import json, os, sys; print(json.dumps(dict(os.environ)), flush=True); "
        "sys.exit(int(os.environ['RANK']) * 3)"
    )
    with server.client(user) as c:
        jid = submit(c, task_groups=[{"replicas": 2, "cards": 4}], command=[PY, "-c", show])
        job = ended(c, jid, 60)
        assert job["state"] == "failed" and "task 1 exited with code 3" in job["reason"], job
        envs = [json.loads(log_of(c, jid, task)) for task in (0, 1)]
    for rank, env in enumerate(envs):
        assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["NNODES"]) == (
            str(rank),
            "2",
            str(rank),
            "1",
        )
        assert env["WANKA_NODE"] == kit.node_name and env["MASTER_ADDR"] == "127.0.0.1"
        # the device plugin shows a container its own cards from 0: wanka says how many, not which
        assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1,2,3"
        assert env["WANKA_CHECKPOINT_DIR"].endswith(f"/checkpoints/{jid}")
    # `wanka logs` reads the kept log after the pod is gone
    r = subprocess.run(
        [PY, "-m", "wanka.cli.main", "logs", str(jid), "--task", "1"],
        env={
            **os.environ,
            "WANKA_URL": server.url,
            "WANKA_TOKEN": user,
            "WANKA_CONFIG": str(tmp_path / "c.json"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["RANK"] == "1", r.stdout + r.stderr
    wait_for(lambda: pods(kit, "wanka-gang-k8s", jid) == [])  # let go once their ends were kept


def test_cancel_and_time_limit_are_graceful_deletions_whose_sigterm_reaches_the_task(server, kit):
    user = make_member(server, "stop-k8s", "stop-k8s-user")
    graceful = [PY, "-c", WORKER, "100000", "0.05"]  # saves its step on SIGTERM
    with server.client(user) as c:
        cancelled = submit(c, command=graceful)
        limited = submit(c, command=graceful, time_limit_s=10)
        wait_for(lambda: "resumes at step" in log_of(c, cancelled), 60)
        wait_for(lambda: "resumes at step" in log_of(c, limited), 60)  # its SIGTERM handler is set
        c.post(f"/v1/jobs/{cancelled}/cancel")
        assert ended(c, cancelled, 60)["state"] == "cancelled"
        assert "SIGTERM: saved step" in log_of(c, cancelled)
        job = ended(c, limited, 60)
        assert job["state"] == "failed" and "time limit of 10 s" in job["reason"]
        assert "SIGTERM: saved step" in log_of(c, limited)


SLOW_SAVE = r"""
import os, signal, sys, time
ckpt = os.environ["WANKA_CHECKPOINT_DIR"]
def save(*_):
    open(os.path.join(ckpt, "saving"), "w").close()
    while not os.path.exists(os.path.join(ckpt, "go")):  # the test says when the save is done
        time.sleep(0.05)
    print("SIGTERM: saved", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, save)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_a_pod_posted_failed_past_its_deadline_keeps_its_grace_until_its_container_ends(kit, tmp_path):
    # kubelet v1.20 posts the pod Failed (DeadlineExceeded) before it stops the container: the
    # SIGTERM handler still runs then, and its grace period is its own, not cut short by wanka.
    # A grace period no machine's slowness reaches: the test, not a clock, ends the save.
    home = top.reachable_by_tasks(tmp_path / "home")
    s = start_server(home, (*server_args(kit, tmp_path)[:-2], "--grace", "600"))
    try:
        user = make_member(s, "slow-save-k8s", "slow-save-k8s-user")
        ns = "wanka-slow-save-k8s"
        with s.client(user) as c:
            jid = submit(c, command=[PY, "-c", SLOW_SAVE])
            wait_for(lambda: "ready" in log_of(c, jid), 60)
            ckpt = home / "checkpoints" / str(jid)
            c.post(f"/v1/jobs/{jid}/cancel")
            wait_for(lambda: (ckpt / "saving").exists(), 60)
            wait_for(lambda: pods(kit, ns, jid)[0]["status"].get("phase") == "Failed", 60)
            assert job_state(c, jid)["state"] != "cancelled" and pods(kit, ns, jid)  # still saving
            (ckpt / "go").touch()
            job = ended(c, jid, 60)
            assert job["state"] == "cancelled", job
            assert "SIGTERM: saved" in log_of(c, jid)
            events = c.get(f"/v1/jobs/{jid}/events").json()
            assert not any("refused by the node" in e["reason"] for e in events), events
    finally:
        stop_server(s)


def test_preemption_stops_the_victims_pod_gracefully_and_it_resumes_from_its_checkpoint(server, kit):
    user = make_member(server, "preempt-k8s", "preempt-k8s-user")
    with server.client(user) as c:
        low = submit(
            c,
            command=[PY, "-c", WORKER, "100", "0.05"],
            task_groups=[{"replicas": 1, "cards": 8}],  # every card of the kit's node
            priority_class="low",
            env={"EXIT_ON_TERM": "0"},
        )
        wait_for(lambda: job_state(c, low)["state"] == "running", 60)
        step = server.home / "checkpoints" / str(low) / "step"
        wait_for(lambda: step.exists() and int(step.read_text()) >= 5, 60)
        high = submit(
            c, command=[PY, "-c", "print('urgent')"], task_groups=[{"cards": 8}], priority_class="high"
        )
        assert ended(c, high, 90)["state"] == "succeeded"
        job = ended(c, low, 120)
        events = c.get(f"/v1/jobs/{low}/events").json()
        assert job["state"] == "succeeded" and job["runs"] == 2, [e["reason"] for e in events]
        said = [(e["state"], e["reason"]) for e in events]
        assert [e["state"] for e in events][:5] == [
            "pending",
            "admitted",
            "running",
            "preempted",
            "pending",
        ], said
        first = log_of(c, low, run=1)
        assert "SIGTERM: saved step" in first, (first, said)  # the kubelet's SIGTERM, in its grace period
        assert int(log_of(c, low, run=2).split("resumes at step ")[1].split()[0]) >= 5


def test_a_node_made_not_ready_downs_it_in_wanka_and_its_job_resumes_on_another(server, kit):
    kk = kit.kit
    kk.create_fake_nodes(kit.kube, 2, prefix="fake-nr-", resources={"huawei.com/Ascend910": "8"}, labels=CHIP)
    user = make_member(server, "down-k8s", "down-k8s-user")
    with server.client(user) as c, server.client(server.admin_token) as admin:
        wait_for(
            lambda: (
                {"fake-nr-00000", "fake-nr-00001"}
                <= {n for n, v in nodes_of(admin).items() if v["state"] == "up"}
            )
        )
        admin.post(f"/v1/nodes/{kit.node_name}/drain", json={"reason": "keep off"})
        try:
            jid = submit(
                c, command=[PY, "-c", "pass"], task_groups=[{"replicas": 1, "cards": 8}], restart={"max": 1}
            )
            wait_for(lambda: job_state(c, jid)["state"] == "running", 60)
            (node,) = placed_on(c, jid)
            (pod,) = pods(kit, "wanka-down-k8s", jid)
            assert pod["spec"]["nodeName"] == node and node.startswith("fake-nr-")
            # what the node-lifecycle controller does when a kubelet stops reporting
            now = kk.now_iso()
            ready = {"type": "Ready", "status": "False", "reason": "NodeStatusUnknown",
                     "lastHeartbeatTime": now, "lastTransitionTime": now}  # fmt: skip
            kit.kube.patch(f"/api/v1/nodes/{node}/status", {"status": {"conditions": [ready]}})
            wait_for(lambda: nodes_of(admin)[node]["state"] == "down", 30)
            wait_for(lambda: job_state(c, jid)["runs"] == 2 and job_state(c, jid)["state"] == "running", 60)
            (other,) = placed_on(c, jid)
            assert other != node
            (pod,) = pods(kit, "wanka-down-k8s", jid)
            assert pod["metadata"]["name"] == f"wanka-{jid}-2-0" and pod["spec"]["nodeName"] == other
            kk.finish_pod(kit.kube, "wanka-down-k8s", f"wanka-{jid}-2-0", 0)
            job = ended(c, jid, 60)
            assert job["state"] == "succeeded" and job["runs"] == 2
            reasons = [e["reason"] for e in c.get(f"/v1/jobs/{jid}/events").json()]
            assert "a node it ran on went down; restart 1 of 1" in reasons, reasons
        finally:
            admin.post(f"/v1/nodes/{kit.node_name}/undrain")
            kk.delete_fake_nodes(kit.kube, prefix="fake-nr-")
        wait_for(
            lambda: (
                "fake-nr-00000" not in nodes_of(admin) or nodes_of(admin)["fake-nr-00000"]["state"] == "down"
            )
        )


def test_a_drain_in_wanka_is_a_cordon_with_a_taint(server, kit):
    with server.client(server.admin_token) as admin:
        assert admin.post(f"/v1/nodes/{kit.node_name}/drain", json={"reason": "fan"}).status_code == 200
        node = kit.kube.get(f"/api/v1/nodes/{kit.node_name}")
        assert node["spec"]["unschedulable"] is True
        assert {"key": "wanka.io/drain", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert nodes_of(admin)[kit.node_name]["state"] == "draining"  # its own cordon: not a fault
        admin.post(f"/v1/nodes/{kit.node_name}/undrain")
        node = kit.kube.get(f"/api/v1/nodes/{kit.node_name}")
        assert not node["spec"].get("unschedulable") and not node["spec"].get("taints")
        assert nodes_of(admin)[kit.node_name]["state"] == "up"
        # a cordon by someone else (kubectl cordon) takes the node out of wanka's hands too
        kit.kube.patch(f"/api/v1/nodes/{kit.node_name}", {"spec": {"unschedulable": True}})
        try:
            wait_for(lambda: nodes_of(admin)[kit.node_name]["state"] == "down")
        finally:
            kit.kube.patch(f"/api/v1/nodes/{kit.node_name}", {"spec": {"unschedulable": None}})
        wait_for(lambda: nodes_of(admin)[kit.node_name]["state"] == "up")


def test_tenants_namespaces_stay_within_their_quotas(kit, tmp_path):
    # a server of its own: the quota tree it puts in force is no other test's
    server = start_server(top.reachable_by_tasks(tmp_path / "home"), server_args(kit, tmp_path))
    try:
        _quotas_hold(server, kit)
    finally:
        stop_server(server)


def _quotas_hold(server, kit):
    a_tok, b_tok = make_member(server, "qa-k8s", "qa-k8s-user"), make_member(server, "qb-k8s", "qb-k8s-user")
    sleep = [PY, "-c", "import time; time.sleep(600)"]
    with server.client(server.admin_token) as admin:
        orgs = [
            {"name": t, "quota": {"ascend-910b3": {"nominal": 4}},
             "queues": [{"name": f"{t}-q", "quota": {"ascend-910b3": {"nominal": 4, "borrowing_limit": 0}}}]}
            for t in ("qa-k8s", "qb-k8s")
        ]  # fmt: skip
        r = admin.put("/v1/quotas", json={"organisations": orgs})
        assert r.status_code == 200, r.text
    with server.client(a_tok) as a, server.client(b_tok) as b:
        a1 = submit(a, command=sleep, task_groups=[{"replicas": 1, "cards": 4}])
        a2 = submit(a, command=sleep, task_groups=[{"replicas": 1, "cards": 2}])
        b1 = submit(b, command=sleep, task_groups=[{"replicas": 2, "cards": 2}])
        wait_for(lambda: job_state(a, a1)["state"] == job_state(b, b1)["state"] == "running", 60)
        assert job_state(a, a2)["state"] == "pending"  # A's 4 cards are in use: its quota holds
        cards = {
            ns: sum(
                int(p["spec"]["containers"][0]["resources"]["limits"]["huawei.com/Ascend910"])
                for p in pods(kit, ns)
            )
            for ns in ("wanka-qa-k8s", "wanka-qb-k8s")
        }
        assert cards == {"wanka-qa-k8s": 4, "wanka-qb-k8s": 4}
        assert b.get(f"/v1/jobs/{a1}").status_code == 404  # nothing of the other tenant's
        for c, j in ((a, a1), (a, a2), (b, b1)):
            c.post(f"/v1/jobs/{j}/cancel")
        for c, j in ((a, a1), (a, a2), (b, b1)):
            ended(c, j, 60)


def test_a_restarted_server_adopts_running_pods_and_starts_nothing_twice(kit, tmp_path):
    home = top.reachable_by_tasks(tmp_path / "home")
    template = tmp_path / "pod.yaml"
    template.write_text(yaml.safe_dump(kit.host_template()))
    args = ("--backend", "kubernetes", "--kubeconfig", str(kit.kubeconfig), "--pod-template", str(template),
            "--namespace", "adopt")  # fmt: skip
    s = start_server(home, args)
    try:
        user = make_member(s, "adopt-k8s", "adopt-k8s-user")
        with s.client(user) as c:
            jid = submit(c, command=[PY, "-c", WORKER, "100000", "0.05"])
            wait_for(lambda: "resumes at step" in log_of(c, jid), 60)
        (before,) = pods(kit, "adopt", jid)
    finally:
        stop_server(s)
    s = start_server(home, args)
    try:
        with s.client(user) as c:
            wait_for(lambda: job_state(c, jid)["state"] == "running")
            # the adopted pod is the same object, not a new run
            (after,) = pods(kit, "adopt", jid)
            assert after["metadata"]["uid"] == before["metadata"]["uid"] and job_state(c, jid)["runs"] == 1
            c.post(f"/v1/jobs/{jid}/cancel")
            assert ended(c, jid, 60)["state"] == "cancelled"
            assert "SIGTERM: saved step" in log_of(c, jid)
    finally:
        stop_server(s)


# --- the backend alone -----------------------------------------------------------------------


@pytest.fixture
def backend(kit, tmp_path):
    from wanka.backends.k8s import KubernetesBackend

    b = KubernetesBackend(tmp_path / "home", kubeconfig=str(kit.kubeconfig), namespace="direct",
                          pod_template=kit.host_template(), single_user=True)  # fmt: skip
    yield b
    b.close()


def _launch(b, job_id: int, nodes: list[str], argv=(PY, "-c", "pass")) -> Launch:
    tasks = tuple(TaskLaunch(i, "worker", n, (0,), {"RANK": str(i)}) for i, n in enumerate(nodes))
    return Launch(job_id, 1, "j", tuple(argv), tasks, b.checkpoint_dir(job_id), tenant="t", tenant_id=1)


def test_a_gang_that_cannot_be_bound_whole_leaves_no_pod(backend, kit):
    # the second task's node does not exist in Kubernetes: its binding fails, the first pod goes too
    kit.kit.create_fake_nodes(
        kit.kube, 1, prefix="fake-gone-", resources={"huawei.com/Ascend910": "8"}, labels=CHIP
    )
    wait_for(lambda: any("fake-gone-00000" in p["node_names"] for p in backend.cluster_spec()["pools"]))
    kit.kube.delete("/api/v1/nodes/fake-gone-00000")  # gone between the decision and the binding
    with pytest.raises(ValueError):
        backend.launch(_launch(backend, 9001, [kit.node_name, "fake-gone-00000"]))
    wait_for(lambda: pods(kit, "direct", 9001) == [])
    assert [s.state for s in backend.status(9001, 1, 2)] == [TaskState.ABSENT] * 2


# --- others' pods: PodGroups and lone pods with schedulerName wanka ------------------------------

PODGROUP_YAML = """
apiVersion: v1
kind: Namespace
metadata:
  name: team-pg
  labels: {wanka.io/tenant: pg-k8s}
---
apiVersion: scheduling.volcano.sh/v1beta1
kind: PodGroup
metadata: {name: trainer, namespace: team-pg}
spec: {minMember: 4, queue: default, priorityClassName: high}
"""


def member_pod(kit, name: str, group: str | None, cards: int = 1, program: str = "print('hello')") -> dict:
    pod = kit.kit.host_python_pod(name, ["-c", program], resources={"huawei.com/Ascend910": str(cards)})
    if group:
        pod["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": group}
    return pod


def test_wanka_k8s_install_is_idempotent_and_prints_what_it_applies(kit):
    again = wanka_cli("k8s", "install", "--kubeconfig", str(kit.kubeconfig))
    assert "CustomResourceDefinition podgroups.scheduling.volcano.sh updated" in again.stdout
    assert "ClusterRole wanka-server updated" in again.stdout
    printed = json.loads(wanka_cli("k8s", "install", "--print").stdout)
    assert [i["kind"] for i in printed["items"]] == ["CustomResourceDefinition", "ClusterRole"]


def test_a_podgroup_of_4_pods_is_gang_bound_only_when_all_4_exist_and_its_status_says_so(server, kit):
    token = make_member(server, "pg-k8s", "pg-k8s-user")
    for doc in yaml.safe_load_all(PODGROUP_YAML):  # as `kubectl apply -f` would
        plural = "namespaces" if doc["kind"] == "Namespace" else None
        path = (
            "/api/v1/namespaces"
            if plural
            else "/apis/scheduling.volcano.sh/v1beta1/namespaces/team-pg/podgroups"
        )
        kit.kube.post(path, doc)
    for i in range(3):
        kit.kube.post("/api/v1/namespaces/team-pg/pods", member_pod(kit, f"trainer-{i}", "trainer"))

    def group():
        return kit.kube.get("/apis/scheduling.volcano.sh/v1beta1/namespaces/team-pg/podgroups/trainer")

    # three of four: nothing bound, and both the PodGroup and each pod say why
    wait_for(
        lambda: "3 of its minMember 4 pods exist" in str(group().get("status", {}).get("conditions")), 30
    )
    assert group()["status"]["phase"] == "Pending"

    def scheduled(pod: str) -> dict:  # {} until wanka wrote the condition (a new pod has no status yet)
        conditions = kit.kube.get(f"/api/v1/namespaces/team-pg/pods/{pod}")["status"].get("conditions") or ()
        return next((c for c in conditions if c["type"] == "PodScheduled"), {})

    wait_for(lambda: "3 of its minMember 4 pods exist" in scheduled("trainer-0").get("message", ""), 30)
    assert scheduled("trainer-0")["status"] == "False" and scheduled("trainer-0")["reason"] == "Unschedulable"
    assert all(not p["spec"].get("nodeName") for p in pods(kit, "team-pg"))

    kit.kube.post("/api/v1/namespaces/team-pg/pods", member_pod(kit, "trainer-3", "trainer"))
    wait_for(lambda: all(p["status"].get("phase") == "Succeeded" for p in pods(kit, "team-pg")), 90)
    assert {p["spec"]["nodeName"] for p in pods(kit, "team-pg")} == {kit.node_name}
    wait_for(lambda: group()["status"]["phase"] == "Completed", 30)
    with server.client(token) as c:  # a job of the namespace's tenant, billed and visible to it
        (job,) = [j for j in c.get("/v1/jobs").json()["jobs"] if j["name"] == "podgroup/team-pg/trainer"]
        assert job["state"] == "succeeded" and job["cards"] == 4 and job["user"] == "k8s-pg-k8s"
        assert "hello" in log_of(c, job["id"], 3)
    events = kit.kube.get("/api/v1/namespaces/team-pg/events")["items"]
    assert {e["involvedObject"]["name"] for e in events if e["reason"] == "Scheduled"} == {
        f"trainer-{i}" for i in range(4)
    }


def test_a_gang_that_can_never_fit_is_bound_not_at_all_and_says_why(server, kit):
    make_member(server, "big-k8s", "big-k8s-user")
    kit.kube.post(
        "/api/v1/namespaces", {"metadata": {"name": "team-big", "labels": {"wanka.io/tenant": "big-k8s"}}}
    )
    group = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
             "metadata": {"name": "huge", "namespace": "team-big"}, "spec": {"minMember": 2}}  # fmt: skip
    kit.kube.post("/apis/scheduling.volcano.sh/v1beta1/namespaces/team-big/podgroups", group)
    for i in range(2):  # 2 x 6 cards: the one 8-card node holds one, and a gang is all or none
        kit.kube.post("/api/v1/namespaces/team-big/pods", member_pod(kit, f"huge-{i}", "huge", cards=6))
    path = "/apis/scheduling.volcano.sh/v1beta1/namespaces/team-big/podgroups/huge"

    def said():
        return str(kit.kube.get(path).get("status", {}).get("conditions")).lower()

    # refused as never fitting here (or, while nodes that left may come back, waiting for cards)
    try:
        wait_for(lambda: "never" in said() or "waiting for cards" in said(), 30)
    except AssertionError:
        raise AssertionError(f"the PodGroup says {said()}") from None
    assert kit.kube.get(path)["status"]["phase"] == "Pending"
    assert all(not p["spec"].get("nodeName") for p in pods(kit, "team-big"))


def test_pods_in_a_namespace_of_no_tenant_run_nothing_and_say_so(server, kit):
    kit.kube.post("/api/v1/namespaces", {"metadata": {"name": "nobody"}})
    kit.kube.post("/api/v1/namespaces/nobody/pods", member_pod(kit, "stray", None))

    def message():
        pod = kit.kube.get("/api/v1/namespaces/nobody/pods/stray")
        return " ".join(c.get("message", "") for c in pod["status"].get("conditions") or ())

    wait_for(lambda: "no wanka tenant" in message(), 30)
    assert "label it wanka.io/tenant=TENANT" in message()
    assert not kit.kube.get("/api/v1/namespaces/nobody/pods/stray")["spec"].get("nodeName")


def test_cancelling_a_podgroups_job_in_wanka_deletes_its_pods_gracefully(server, kit):
    token = make_member(server, "cancel-pg-k8s", "cancel-pg-k8s-user")
    ns = {"metadata": {"name": "team-cancel", "labels": {"wanka.io/tenant": "cancel-pg-k8s"}}}
    kit.kube.post("/api/v1/namespaces", ns)
    meta = {"name": "sleepers", "namespace": "team-cancel"}
    group = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup", "metadata": meta,
             "spec": {"minMember": 2}}  # fmt: skip
    kit.kube.post("/apis/scheduling.volcano.sh/v1beta1/namespaces/team-cancel/podgroups", group)
    trap = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(7)); time.sleep(600)"
    for i in range(2):
        kit.kube.post(
            "/api/v1/namespaces/team-cancel/pods", member_pod(kit, f"sleeper-{i}", "sleepers", program=trap)
        )
    with server.client(token) as c:
        wait_for(lambda: [j for j in c.get("/v1/jobs").json()["jobs"] if j["state"] == "running"], 60)
        (job,) = c.get("/v1/jobs").json()["jobs"]
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        assert ended(c, job["id"], 60)["state"] == "cancelled"
    wait_for(lambda: pods(kit, "team-cancel") == [], 60)  # deleted by wanka, their SIGTERM honoured
