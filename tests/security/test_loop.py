"""One bad job never stops the loop: a job the scheduling core cannot handle (here stored by an
older version, before submissions were bounded) is held with the reason its owner and the
operator read, counted in /metrics, and everyone else is scheduled in the same tick."""

from __future__ import annotations

import sys
import time

from sqlalchemy import create_engine, insert, select

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, submit
from wanka.server import tables

PY = sys.executable


def test_a_job_that_breaks_the_core_is_held_and_the_others_run(tmp_path):
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    token = make_member(server, "lab-loop", "loop-user")
    stop_server(server)
    engine = create_engine(server.database)
    with engine.begin() as conn:  # what main stored before bounds: 2^31 tasks of no cards
        tenant = conn.scalar(select(tables.Tenant.id).where(tables.Tenant.name == "lab-loop"))
        user = conn.scalar(select(tables.User.id).where(tables.User.name == "loop-user"))
        spec = {
            "tenant": "lab-loop",
            "queue": "lab-loop",
            "name": "overflow",
            "task_groups": [{"replicas": 2**31, "cards": 0}],
            "command": [PY, "-c", "print(1)"],
        }
        bad = conn.execute(
            insert(tables.Job).returning(tables.Job.id),
            {
                "tenant_id": tenant,
                "user_id": user,
                "queue": "lab-loop",
                "name": "overflow",
                "spec": spec,
                "state": "pending",
                "reason": "",
                "cards": 0,
                "submit_time": time.time(),
                "runs": 0,
                "failures": 0,
                "cancel_requested": False,
            },
        ).scalar_one()
    engine.dispose()
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        with server.client(token) as c, server.client(server.admin_token) as admin:
            good = submit(c, command=[PY, "-c", "print('fine')"])
            assert ended(c, good)["state"] == "succeeded"
            held = wait_for(lambda: (j := c.get(f"/v1/jobs/{bad}").json())["state"] == "held" and j)
            assert "OverflowError" in held["reason"] and "scheduler failed" in held["reason"]
            events = [e["state"] for e in c.get(f"/v1/jobs/{bad}/events").json()]
            assert events[-1] == "held"
            metrics = admin.get("/metrics").text
            assert 'wanka_jobs_held_total{reason="scheduler_error"} 1.0' in metrics
            # and it can be cancelled like any waiting job
            assert c.post(f"/v1/jobs/{bad}/cancel").json()["state"] == "cancelled"
    finally:
        stop_server(server)
