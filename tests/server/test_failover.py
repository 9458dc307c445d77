"""One scheduler per database: two servers on one database (SQLite, or PostgreSQL in the second
pass) never give a card twice, and when the leader dies (SIGKILL) the standby takes over within
15 s, adopting what runs: every job ends exactly once and none is lost or started twice."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import httpx
from sqlalchemy import create_engine, text

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member

TERMINAL = ("succeeded", "failed", "cancelled")

# marks its start (a second start of the same job would find the mark), then runs a while
TASK = r"""
import os, sys, time
marks, seconds = sys.argv[1], float(sys.argv[2])
try:
    fd = os.open(os.path.join(marks, os.environ["WANKA_JOB_ID"]), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
except FileExistsError:
    open(os.path.join(marks, "twice-" + os.environ["WANKA_JOB_ID"]), "w").close()
time.sleep(seconds)
"""


def submit_marking(client, marks, seconds: float) -> int:
    spec = {
        "task_groups": [{"cards": 1}],
        "command": [sys.executable, "-c", TASK, str(marks), f"{seconds:.2f}"],
    }
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def role(server) -> str:
    try:
        return httpx.get(server.url + "/healthz", timeout=2).json()["role"]
    except httpx.TransportError:
        return "down"


def runs_and_placements(database: str) -> list[tuple[int, float, float, dict]]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    'SELECT r.job_id, r.start, r."end", j.placement FROM job_runs r '
                    "JOIN jobs j ON j.id = r.job_id"
                )
            ).all()
    finally:
        engine.dispose()
    import json

    return [(r[0], r[1], r[2], r[3] if isinstance(r[3], dict) else json.loads(r[3])) for r in rows]


def cards_of(placement: dict) -> set[tuple[str, int]]:
    out = set()
    for g in placement["groups"]:
        for node, mask in zip(g["nodes"], g["masks"], strict=True):
            out |= {(node, bit) for bit in range(64) if mask >> bit & 1}
    return out


def test_two_servers_on_one_database_schedule_as_one(tmp_path):
    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o1777)  # tasks run under their tenant's account (as root)
    first = start_server(home, ("--virtual-cards", "4"))
    second = start_server(home, ("--virtual-cards", "4"))
    try:
        assert sorted([role(first), role(second)]) == ["leader", "standby"]
        token = make_member(first, "two", "two-user")
        rng = random.Random(13)
        ids = []
        for i in range(24):  # through both APIs
            with (first if i % 2 else second).client(token) as c:
                ids.append(submit_marking(c, marks, rng.uniform(0.1, 0.6)))
        with second.client(token) as c:
            wait_for(
                lambda: all(c.get(f"/v1/jobs/{i}").json()["state"] == "succeeded" for i in ids), timeout=120
            )
        runs = runs_and_placements(first.database)
        assert sorted(r[0] for r in runs) == sorted(ids)  # one run each
        for a in runs:
            for b in runs:
                if a[0] < b[0] and a[1] < b[2] and b[1] < a[2]:  # ran at the same time
                    assert not cards_of(a[3]) & cards_of(b[3]), (a, b)
        assert sorted(os.listdir(marks), key=int) == [str(i) for i in sorted(ids)]
    finally:
        stop_server(first)
        stop_server(second)


def test_the_standby_takes_over_within_15_s_when_the_leader_dies(tmp_path):
    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o1777)
    leader = start_server(home, ("--virtual-cards", "8"))
    standby = start_server(home, ("--virtual-cards", "8"))
    try:
        assert (role(leader), role(standby)) == ("leader", "standby")
        token = make_member(standby, "failover", "failover-user")
        rng = random.Random(20261129)
        with standby.client(token) as c:
            ids = [submit_marking(c, marks, rng.uniform(0.2, 1.5)) for _ in range(100)]

            def done() -> int:
                jobs = c.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
                return sum(j["state"] in TERMINAL for j in jobs)

            wait_for(lambda: done() >= 20, timeout=120)
            os.kill(leader.proc.pid, signal.SIGKILL)  # mid-run: jobs running, admitted, waiting
            leader.proc.wait()
            died = time.monotonic()
            wait_for(lambda: role(standby) == "leader", timeout=30)
            takeover = time.monotonic() - died
            assert takeover <= 15, takeover
            wait_for(lambda: done() == 100, timeout=240, every=0.5)
            for job_id in ids:
                job = c.get(f"/v1/jobs/{job_id}").json()
                events = c.get(f"/v1/jobs/{job_id}/events").json()
                ends = [e["state"] for e in events if e["state"] in TERMINAL]
                assert job["state"] == "succeeded" and ends == ["succeeded"], (job, events)
                assert job["runs"] == 1 and [e["state"] for e in events].count("admitted") == 1, events
        assert not [m for m in os.listdir(marks) if m.startswith("twice-")]  # none started twice
        assert sorted(os.listdir(marks), key=int) == [str(i) for i in sorted(ids)]
        print(f"takeover after the leader's SIGKILL: {takeover:.1f} s")
    finally:
        stop_server(leader)
        stop_server(standby)
