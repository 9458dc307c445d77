"""A tenant's running tasks are capped: its other jobs wait, nobody else's do."""

from __future__ import annotations

import json
import os
import pwd
import sys

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, job_state, submit
from wanka.backends.isolation import ACCOUNTS_FILE, IsolationError, tenant_account

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(600)"]


def test_a_tenant_over_its_task_and_waiting_caps_waits_and_others_do_not(tmp_path):
    server = start_server(
        tmp_path,
        ("--virtual-cards", "8", "--max-running-tasks-per-tenant", "2", "--max-waiting-jobs-per-tenant", "2"),
    )
    try:
        busy = make_member(server, "lab-busy", "busy-user")
        other = make_member(server, "lab-other", "other-user")
        with server.client(busy) as b, server.client(other) as o:
            first = [submit(b, command=SLEEP) for _ in range(2)]
            wait_for(lambda: all(job_state(b, j)["state"] == "running" for j in first))
            third = submit(b, command=SLEEP)
            theirs = submit(o, command=SLEEP)
            wait_for(lambda: job_state(o, theirs)["state"] == "running")
            assert job_state(b, third)["state"] == "pending"  # 5 free cards, but the cap holds it
            fourth = submit(b, command=SLEEP)  # two waiting now: the most it may keep
            r = b.post("/v1/jobs", json={"task_groups": [{"cards": 1}], "command": SLEEP})
            assert r.status_code == 429 and "--max-waiting-jobs-per-tenant" in r.text
            b.post(f"/v1/jobs/{fourth}/cancel")
            r = b.post("/v1/jobs", json={"task_groups": [{"replicas": 3, "cards": 1}], "command": SLEEP})
            assert r.status_code == 422 and "task_groups[*].replicas" in r.text  # could never run
            b.post(f"/v1/jobs/{first[0]}/cancel")
            assert ended(b, first[0])["state"] == "cancelled"
            wait_for(lambda: job_state(b, third)["state"] == "running")
            for j in (first[1], third):
                b.post(f"/v1/jobs/{j}/cancel")
            o.post(f"/v1/jobs/{theirs}/cancel")
    finally:
        stop_server(server)


@pytest.mark.skipif(os.geteuid() != 0, reason="creates and maps Unix accounts")
def test_tenants_map_to_their_own_accounts_or_the_operators_choice(tmp_path):
    uids = (2_050_000, 2_050_099)
    a = tenant_account(tmp_path, "lab-a", 1, uids)
    assert (a.uid, a.name) == (2_050_001, "wk2050001") and pwd.getpwuid(a.uid).pw_name == "wk2050001"
    assert tenant_account(tmp_path, "lab-a", 1, uids) == a  # the same account every time
    with pytest.raises(IsolationError, match="past the task uid range"):
        tenant_account(tmp_path, "lab-z", 100, uids)
    (tmp_path / ACCOUNTS_FILE).write_text(json.dumps({"lab-b": "nobody", "lab-r": "root"}))
    assert tenant_account(tmp_path, "lab-b", 2, uids).uid == pwd.getpwnam("nobody").pw_uid
    with pytest.raises(IsolationError, match="never run as root"):
        tenant_account(tmp_path, "lab-r", 3, uids)
    with pytest.raises(IsolationError, match="not a wanka account"):  # a uid someone else owns
        tenant_account(tmp_path / "other", "lab-x", 0, (65534, 65534))
