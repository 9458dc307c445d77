"""The examples run for real: the CPU PyTorch DDP gang (gloo) submitted through the HTTP API, and
its recovery from a killed task by resuming from the checkpoint. Needs torch (`.ci/run` installs
the CPU build); skipped without it."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-ddp-home"), ("--virtual-cards", "4"))
    yield s
    stop_server(s)


def gang(steps: int, every: int, step_time: float) -> dict:
    spec = yaml.safe_load((ROOT / "examples" / "ddp-gang.yaml").read_text())
    spec["command"] = [
        sys.executable,
        "examples/ddp_train.py",
        "--steps",
        str(steps),
        "--every",
        str(every),
        "--step-time",
        str(step_time),
    ]
    spec["workdir"] = str(ROOT)
    return spec


def ended(c, jid: int, timeout: float = 180) -> dict:
    return wait_for(
        lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("succeeded", "failed", "cancelled") and j,
        timeout,
        0.2,
    )


def logs(c, jid: int, task: int, run: int | None = None) -> str:
    params = {"task": task, **({"run": run} if run else {})}
    r = c.get(f"/v1/jobs/{jid}/logs", params=params)
    return r.json()["data"] if r.status_code == 200 else ""  # 409 until it has started


def test_the_ddp_example_runs_as_a_two_task_gang_each_task_on_its_own_card(server):
    token = make_member(server, "ddp", "ddp-user")
    with server.client(token) as c:
        r = c.post("/v1/jobs", json=gang(60, 20, 0.0))
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        job = ended(c, jid)
        events = [e["reason"] for e in c.get(f"/v1/jobs/{jid}/events").json()]
        assert job["state"] == "succeeded" and job["runs"] == 1, (events, logs(c, jid, 0, 1))
        out = [logs(c, jid, task) for task in (0, 1)]
    devices = []
    for rank, text in enumerate(out):
        assert f"rank {rank}/2 run 1" in text and f"rank {rank} done: 60 steps" in text
        seen = re.search(r"'ASCEND_RT_VISIBLE_DEVICES': '([0-9,]+)'", text).group(1).split(",")
        assert len(seen) == 2  # one Ascend 910C card = two dies, and nothing more
        devices.append(set(seen))
    assert not devices[0] & devices[1]  # each task sees only its own card


def test_a_killed_ddp_task_is_requeued_and_resumes_from_its_checkpoint(server):
    token = make_member(server, "ddp-restart", "ddp-restart-user")
    with server.client(token) as c:
        jid = c.post("/v1/jobs", json=gang(400, 20, 0.02)).json()["id"]
        wait_for(lambda: "step 60 " in logs(c, jid, 0), 120, 0.2)  # three checkpoints written
        pid = int((server.home / "runs" / str(jid) / "1" / "task-1.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)  # rank 1 dies mid-run
        job = ended(c, jid)
        assert job["state"] == "succeeded" and job["runs"] == 2, job
        second = logs(c, jid, 0, run=2)
        resumed = int(re.search(r"rank 0 starts at step (\d+)", second).group(1))
        assert resumed >= 60, second  # the step counter continued from the checkpoint
        assert "rank 0 done: 400 steps" in second
        events = c.get(f"/v1/jobs/{jid}/events").json()
        assert any("task 1 was killed; restart 1 of 3" in e["reason"] for e in events), events
