"""The Slurm backend against real Slurm daemons (munged, slurmctld, one slurmd per virtual node with
fake GPUs, all on 127.0.0.1, stopped by their pids) and a real wanka server driving them over HTTP.
`.ci/run` installs Debian's slurm-wlm and munge; skipped where they are missing or not root."""

from __future__ import annotations

import json
import sys

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import WORKER, ended, job_state, log_of, submit
from wanka.backends.slurm_testbed import SlurmCluster, available

pytestmark = pytest.mark.skipif(available() is not None, reason=f"no Slurm here: {available()}")
PY = sys.executable


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=4, gpus=8, leaf_size=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def server(slurm, tmp_path_factory):
    s = start_server(
        tmp_path_factory.mktemp("wanka-slurm-home"),
        ("--backend", "slurm", "--slurm-conf", str(slurm.conf), "--health-every", "0.3"),
    )
    yield s
    stop_server(s)


def slurm_job(slurm: SlurmCluster, job_id: int, run: int = 1) -> dict:
    jobs = json.loads(slurm.run("squeue", "--json", "--states=all"))["jobs"]
    return next(j for j in jobs if j["name"] == f"wanka-{job_id}-{run}")


def placed_on(c, job_id: int) -> list[str]:
    events = c.get(f"/v1/jobs/{job_id}/events").json()
    return [e["reason"] for e in events if e["state"] == "admitted"][-1].split("placed on ")[1].split(", ")


def test_the_inventory_is_slurms(server, slurm):
    with server.client(server.admin_token) as admin:
        nodes = admin.get("/v1/nodes").json()
    assert [(n["name"], n["model"], n["cards"], n["state"]) for n in nodes] == [
        (name, "h100", 8, "up") for name in slurm.names
    ]
    # topology.conf: two leaf switches of two nodes under one top switch (the cluster)
    assert [n["domain"] for n in nodes] == [["leaf0"], ["leaf0"], ["leaf1"], ["leaf1"]]


def test_a_two_node_gang_runs_where_wanka_placed_it_with_its_ranks_and_cards(server, slurm):
    user = make_member(server, "gang", "gang-user")
    show = "import json, os; print(json.dumps({k: v for k, v in os.environ.items()}))"
    with server.client(user) as c:
        jid = submit(c, task_groups=[{"replicas": 2, "cards": 8}], command=[PY, "-c", show])
        assert ended(c, jid)["state"] == "succeeded"
        nodes = placed_on(c, jid)
        envs = [json.loads(log_of(c, jid, task)) for task in (0, 1)]
    assert len(nodes) == 2 and nodes in (slurm.names[:2], slurm.names[2:])  # inside one leaf switch
    record = slurm_job(slurm, jid)
    assert record["job_state"] == "COMPLETED"
    assert slurm.run("scontrol", "show", "hostnames", record["nodes"]).split() == sorted(nodes)
    for rank, env in enumerate(envs):
        assert (env["RANK"], env["WORLD_SIZE"], env["NODE_RANK"], env["NNODES"]) == (
            str(rank),
            "2",
            str(rank),
            "2",
        )
        assert env["SLURMD_NODENAME"] == env["WANKA_NODE"] == nodes[rank]  # rank r on wanka's node r
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["WANKA_JOB_ID"] == str(jid)


def test_hostile_strings_stay_inert_under_slurm(server, tmp_path):
    user = make_member(server, "hostile-slurm", "hostile-slurm-user")
    canary = tmp_path / "owned"
    words = [f"$(touch {canary})", f"; touch {canary}", f"`touch {canary}`", "a\nb", "'\""]
    env = {"EVIL": f"$(touch {canary})'\"\n; touch {canary}"}
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))"
    with server.client(user) as c:
        jid = submit(c, name=f"x'; touch {canary}; '", command=[PY, "-c", program, *words], env=env)
        assert ended(c, jid)["state"] == "succeeded"
        assert json.loads(log_of(c, jid)) == [words, env["EVIL"]]
    assert not canary.exists()


def test_cancel_and_time_limit_become_scancel(server, slurm):
    user = make_member(server, "stop-slurm", "stop-slurm-user")
    sleeper = [PY, "-c", "import time; time.sleep(600)"]
    with server.client(user) as c:
        cancelled = submit(c, command=sleeper)
        limited = submit(c, command=sleeper, time_limit_s=2)
        wait_for(lambda: job_state(c, cancelled)["state"] == "running")
        c.post(f"/v1/jobs/{cancelled}/cancel")
        assert ended(c, cancelled)["state"] == "cancelled"
        job = ended(c, limited)
        assert job["state"] == "failed" and "time limit of 2 s" in job["reason"]
    assert slurm_job(slurm, cancelled)["job_state"] == "CANCELLED"
    assert slurm_job(slurm, limited)["job_state"] == "CANCELLED"


def test_a_node_downed_in_slurm_is_down_in_wanka_and_its_job_resumes_elsewhere(server, slurm):
    user = make_member(server, "down-slurm", "down-slurm-user")
    with server.client(user) as c, server.client(server.admin_token) as admin:
        jid = submit(
            c,
            command=[PY, "-c", WORKER, "80", "0.05"],
            task_groups=[{"replicas": 1, "cards": 8}],
            restart={"max": 1},
        )
        wait_for(lambda: job_state(c, jid)["state"] == "running")
        ckpt = server.home / "checkpoints" / str(jid)
        wait_for(lambda: (ckpt / "step").exists() and int((ckpt / "step").read_text()) >= 5)
        (node,) = placed_on(c, jid)
        slurm.run("scontrol", "update", f"nodename={node}", "state=down", "reason=PSU failure")
        try:
            wait_for(lambda: {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "down")
            job = ended(c, jid, 60)
            events = c.get(f"/v1/jobs/{jid}/events").json()
            assert job["state"] == "succeeded" and job["runs"] == 2, events
            assert placed_on(c, jid) != [node]
            assert int(log_of(c, jid, run=2).split("resumes at step ")[1].split()[0]) >= 5
        finally:
            slurm.run("scontrol", "update", f"nodename={node}", "state=resume")
        wait_for(lambda: {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "up")


def test_a_drain_in_wanka_is_a_drain_in_slurm(server, slurm):
    with server.client(server.admin_token) as admin:
        node = slurm.names[-1]
        assert admin.post(f"/v1/nodes/{node}/drain", json={"reason": "fan"}).status_code == 200
        info = {n["name"]: n for n in json.loads(slurm.run("sinfo", "--json"))["nodes"]}[node]
        assert "DRAIN" in info["state_flags"] and info["reason"] == "wanka: fan"
        assert {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "draining"
        admin.post(f"/v1/nodes/{node}/undrain")
        info = {n["name"]: n for n in json.loads(slurm.run("sinfo", "--json"))["nodes"]}[node]
        assert "DRAIN" not in info["state_flags"]
