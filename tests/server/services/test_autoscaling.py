"""The example PyTorch model server as a service, with real processes and real HTTP on loopback:
it scales with the load and back, rolls over to a new version, survives a killed replica, and
wakes from zero replicas; no request is lost on the way."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.server.conftest import wait_for
from tests.server.services.helpers import MODEL_SERVER, REPLICA_APP, Load, apply, show, wait_replicas
from tests.server.test_api import make_member

pytest.importorskip("torch")

PREDICT = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}


@pytest.fixture(scope="module")
def acme(server):
    token = make_member(server, "acme", "acme-dev")
    with server.client(token) as c:
        yield c, token


def _mlp(name: str, **over) -> dict:
    spec = {
        "name": name,
        "command": MODEL_SERVER,
        "cards": 0,
        "replicas": {"min": 1, "max": 3},
        "readiness": {"path": "/healthz", "interval_s": 0.5},
        "scaling": {
            "metric": "rps",
            "target": 4,
            "window_s": 2,
            "scale_up_delay_s": 1,
            "scale_down_delay_s": 4,
        },
    }
    return {**spec, **over}


def test_a_rising_load_scales_the_model_server_to_three_and_back_to_one_after_the_delay(server, acme):
    client, token = acme
    apply(client, _mlp("mlp-scale"))
    wait_replicas(client, "mlp-scale", ready=1, total=1)
    with Load(server.gateway, token, "/services/acme/mlp-scale/predict", rate=2, json=PREDICT) as load:
        wait_for(lambda: load.sent >= 4, 30)
        assert show(client, "mlp-scale")["desired"] == 1  # 2 requests/s: one replica is enough
        load.rate = 6
        wait_for(lambda: show(client, "mlp-scale")["desired"] == 2, 30)
        load.rate = 14
        s = wait_replicas(client, "mlp-scale", ready=3, total=3, timeout=90)
        assert s["desired"] == 3
        wait_for(lambda: len(load.replicas) == 3, 30)  # every replica answers (least outstanding)
    assert load.failures == [], load.failures
    s = wait_replicas(client, "mlp-scale", ready=1, total=1, timeout=60)
    assert s["desired"] == 1
    events = " | ".join(e["message"] for e in s["events"])
    assert "1 -> 2 replicas" in events and "-> 3 replicas" in events and "-> 1 replicas" in events, events
    # the minimum replica is never preempted; the extra ones were
    assert [r["preemptible"] for r in s["replicas"]] == [False]


def test_a_rolling_update_under_steady_load_loses_no_request(server, acme):
    client, token = acme
    spec = {
        "name": "roll",
        "command": REPLICA_APP,
        "cards": 0,
        "replicas": {"min": 2, "max": 2},
        "readiness": {"path": "/ready", "interval_s": 0.3},
    }
    first = apply(client, spec)
    wait_replicas(client, "roll", ready=2, total=2)
    old = {r["job"] for r in first["replicas"]} | {r["job"] for r in show(client, "roll")["replicas"]}
    most = 0
    with Load(server.gateway, token, "/services/acme/roll/headers", rate=25) as load:
        wait_for(lambda: load.sent >= 20, 30)
        assert apply(client, {**spec, "env": {"VERSION": "2"}})["generation"] == 2

        def rolled():
            nonlocal most
            s = show(client, "roll")
            live = [r for r in s["replicas"] if r["state"] in ("pending", "admitted", "running")]
            most = max(most, len(live))
            done = s["ready"] == 2 and all(r["generation"] == 2 for r in live) and len(live) == 2
            return s if done else None

        s = wait_for(rolled, 90, every=0.1)
        new = {r["job"] for r in s["replicas"]}
        wait_for(lambda: sum(load.replicas[str(j)] for j in new) >= 20, 30)
    assert load.failures == [], load.failures
    assert load.sent >= 50
    assert not new & old
    assert most <= 3  # max_surge 1: never more than one replica above the two
    assert {int(j) for j in load.replicas} >= new  # both new replicas answered


def _pids_of(job_id: int) -> list[int]:
    """The processes of a job's task (found by the WANKA_JOB_ID in their environment)."""
    marker = f"WANKA_JOB_ID={job_id}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def test_killing_a_replica_loses_no_request_that_could_be_retried(server, acme):
    client, token = acme
    spec = {
        "name": "sturdy",
        "command": REPLICA_APP,
        "cards": 0,
        "replicas": {"min": 2, "max": 2},
        "readiness": {"path": "/ready", "interval_s": 5},  # the gateway notices before any probe
    }
    apply(client, spec)
    s = wait_replicas(client, "sturdy", ready=2, total=2)
    victim = s["replicas"][0]["job"]
    with Load(server.gateway, token, "/services/acme/sturdy/headers", rate=30) as load:
        wait_for(lambda: load.replicas[str(victim)] >= 5, 30)
        for pid in _pids_of(victim):
            os.kill(pid, signal.SIGKILL)
        with server.client(server.admin_token) as admin:
            wait_for(lambda: admin.get(f"/v1/jobs/{victim}").json()["state"] == "failed", 30)
        before = load.sent
        wait_for(lambda: load.sent >= before + 30, 30)
    assert load.failures == [], load.failures
    s = show(client, "sturdy")
    assert any("back-off" in e["message"] for e in s["events"]) or len(s["replicas"]) == 2


def test_scaled_to_zero_a_service_wakes_on_the_first_request_and_sleeps_again(server, acme):
    client, token = acme
    spec = {
        "name": "sleepy",
        "command": REPLICA_APP,
        "cards": 0,
        "replicas": {"min": 0, "max": 1},
        "readiness": {"path": "/ready", "interval_s": 0.2},
        "scaling": {
            "metric": "inflight",
            "target": 1,
            "window_s": 1,
            "scale_up_delay_s": 0,
            "scale_down_delay_s": 2,
        },
        "wake_timeout_s": 60,
    }
    s = apply(client, spec)
    assert s["desired"] == 0 and s["replicas"] == []
    gateway = httpx.Client(base_url=server.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=90)
    with gateway:
        r = gateway.get("/services/acme/sleepy/headers")
        assert r.status_code == 200, r.text
        woke = show(client, "sleepy")
        assert any("scale from zero" in e["message"] for e in woke["events"])
        wait_for(lambda: show(client, "sleepy")["replicas"] == [], 60)  # idle: back to zero
        assert show(client, "sleepy")["desired"] == 0
        assert gateway.get("/services/acme/sleepy/headers").status_code == 200  # and wakes again
