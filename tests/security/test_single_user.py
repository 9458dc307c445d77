"""Without root (or with --single-user) tasks run as the server's own user: what that server still
guarantees. Its logs are never read through a link, a task's own records cannot end its run early,
and a server that is not root runs one tenant's jobs only unless told otherwise."""

from __future__ import annotations

import os
import pwd
import shutil
import sys

import pytest

from tests.server.conftest import start_server, stop_server
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, log_of, submit

PY = sys.executable
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs servers as root and as nobody")

SWAP_LOG = r"""
import os
home = os.path.dirname(os.path.dirname(os.environ["WANKA_CHECKPOINT_DIR"]))
run = f"{home}/runs/{os.environ['WANKA_JOB_ID']}/{os.environ['WANKA_RUN']}"
os.symlink(f"{home}/admin-token", f"{run}/link")
os.replace(f"{run}/link", f"{run}/task-0.log")
"""

FORGE_EXIT = r"""
import os, time
home = os.path.dirname(os.path.dirname(os.environ["WANKA_CHECKPOINT_DIR"]))
run = f"{home}/runs/{os.environ['WANKA_JOB_ID']}/{os.environ['WANKA_RUN']}"
with open(f"{run}/task-0.exit", "w") as fh:
    fh.write(f"0 {time.time()}\n")
time.sleep(2)
raise SystemExit(3)
"""


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-single-user"), ("--virtual-cards", "2", "--single-user"))
    yield s
    stop_server(s)


def test_a_log_swapped_for_a_link_is_never_served(single):
    token = make_member(single, "linker", "linker-user")
    with single.client(token) as c:
        jid = submit(c, command=[PY, "-c", SWAP_LOG])
        assert ended(c, jid)["state"] == "succeeded"
        r = c.get(f"/v1/jobs/{jid}/logs")
    assert r.status_code == 403, r.text
    assert single.admin_token not in r.text


def test_a_forged_exit_record_neither_ends_the_run_nor_its_bill(single):
    token = make_member(single, "forger", "forger-user")
    with single.client(token) as c:
        jid = submit(c, command=[PY, "-c", FORGE_EXIT])
        job = ended(c, jid)
    assert job["state"] == "failed" and job["reason"] == "task 0 exited with code 3", job
    assert job["end_time"] - job["start_time"] >= 2  # billed for all the time it ran


def test_a_server_that_is_not_root_runs_one_tenants_jobs_only(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.chown(home, "nobody")
    server = start_server(home, ("--virtual-cards", "2"), user="nobody")
    try:
        first = make_member(server, "lab-first", "first-user")
        second = make_member(server, "lab-second", "second-user")
        with server.client(first) as a, server.client(second) as b:
            one = submit(a, command=[PY, "-c", "print('first')"])
            assert ended(a, one)["state"] == "succeeded"
            assert "first" in log_of(a, one)
            assert os.stat(home / "work" / str(one)).st_uid == pwd.getpwnam("nobody").pw_uid
            two = submit(b, command=[PY, "-c", "print('second')"])
            job = ended(b, two)
        assert job["state"] == "failed" and "lab-first's jobs only" in job["reason"], job
        assert "--single-user" in job["reason"]
        assert "--single-user" in (home / "server.log").read_text()  # said at start, too
    finally:
        stop_server(server)
