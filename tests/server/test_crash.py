"""Crash safety: the server is killed with SIGKILL at random moments while 200 jobs are submitted
and run; after each kill it is restarted on the same database. In the end every job has reached
exactly one terminal state and no job was started twice."""

from __future__ import annotations

import os
import random
import sys
import time

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member

JOBS, KILLS = 200, 6
TERMINAL = {"succeeded", "failed", "cancelled"}

# a start is an exclusive create: a second start of the same job leaves a trace and fails
TASK = """
import os, random, sys, time
marks = sys.argv[1]
try:
    fd = os.open(os.path.join(marks, os.environ["WANKA_JOB_ID"]), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
except FileExistsError:
    open(os.path.join(marks, "twice-" + os.environ["WANKA_JOB_ID"]), "w").close()
    sys.exit(1)
time.sleep(random.random() * 0.3)
"""


def test_sigkill_at_random_moments_loses_no_job_and_starts_none_twice(tmp_path):
    rng = random.Random(20261129)
    home, marks = tmp_path / "home", tmp_path / "marks"
    home.mkdir()
    marks.mkdir()
    marks.chmod(0o1777)  # tasks run under their tenant's account (as root): like /tmp, for anyone
    options = ("--virtual-cards", "8")
    server = start_server(home, options)
    token = make_member(server, "crash", "crash-user")
    spec = {"task_groups": [{"cards": 1}], "command": [sys.executable, "-I", "-S", "-c", TASK, str(marks)]}
    submitted = 0
    kills = 0
    try:
        while kills < KILLS:
            # submit a batch, then kill at a random moment while it is being scheduled and run
            batch = min(JOBS - submitted, rng.randint(25, 45))
            with server.client(token) as c:
                for _ in range(batch):
                    assert c.post("/v1/jobs", json=spec).status_code == 201
            submitted += batch
            time.sleep(rng.uniform(0.05, 1.5))
            server.proc.kill()  # SIGKILL: no clean-up of any kind
            server.proc.wait()
            kills += 1
            server = start_server(home, options)
        with server.client(token) as c:
            while submitted < JOBS:
                assert c.post("/v1/jobs", json=spec).status_code == 201
                submitted += 1

            def all_ended():
                jobs = c.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
                return len(jobs) == JOBS and all(j["state"] in TERMINAL for j in jobs) and jobs

            jobs = wait_for(all_ended, 180, 0.5)
            for job in jobs:
                events = c.get(f"/v1/jobs/{job['id']}/events").json()
                ends = [e["state"] for e in events if e["state"] in TERMINAL]
                assert ends == [job["state"]], (job, events)  # exactly one terminal state
                starts = [e for e in events if e["state"] == "admitted"]
                assert len(starts) == 1 and job["runs"] == 1, (job, events)
    finally:
        if server.proc.poll() is None:
            stop_server(server)
    assert kills >= 5
    assert not [m for m in os.listdir(marks) if m.startswith("twice-")]  # none started twice
    assert sorted(os.listdir(marks), key=int) == [str(j["id"]) for j in sorted(jobs, key=lambda j: j["id"])]
    assert all(j["state"] == "succeeded" for j in jobs), [j for j in jobs if j["state"] != "succeeded"]
