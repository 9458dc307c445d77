"""`wanka run` and `wanka attach`: a real terminal in an interactive job's first task, through the
real server's WebSocket, with the CLI itself on a pseudo-terminal as a person's shell would be."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys

import pytest

from tests.cli.test_remote import wanka
from tests.server.conftest import start_server, stop_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-interactive"), ("--virtual-cards", "4"))
    yield s
    stop_server(s)


def member_of(server, tmp_path, tenant: str) -> str:
    wanka(tmp_path, "tenants", "create", tenant, token=server.admin_token, url=server.url)
    made = wanka(
        tmp_path,
        "tokens",
        "create",
        f"{tenant}-user",
        "--tenant",
        tenant,
        "--json",
        token=server.admin_token,
        url=server.url,
    )
    return json.loads(made.stdout)["token"]


def on_a_terminal(server, token, *args):
    """The CLI with a pseudo-terminal for its stdin and stdout; (process, the terminal's master)."""
    master, slave = pty.openpty()
    env = {**os.environ, "WANKA_URL": server.url, "WANKA_TOKEN": token, "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanka.cli.main", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    return proc, master


def read_until(master: int, wanted: bytes, seen: bytearray) -> bytes:
    """Read the terminal until the pattern ``wanted`` has appeared (a broken relay fails the wait)."""

    def arrived():
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
        return re.search(wanted, bytes(seen)) is not None

    wait_for(arrived, timeout=60)
    return bytes(seen)


def test_run_gives_a_terminal_in_the_job_and_exit_ends_it(server, tmp_path):
    token = member_of(server, tmp_path, "term")
    proc, master = on_a_terminal(server, token, "run", "--cards", "1", "--", "sh")
    seen = bytearray()
    try:
        read_until(master, rb"\$ ", seen)  # sh's prompt: the job runs and its terminal is ours
        os.write(master, b"tty; echo job=$WANKA_JOB_ID user=$(id -u)\n")
        out = read_until(master, rb"user=\d+", seen)  # the answer, not the echo of the line
        assert b"/dev/pts/" in out  # a real terminal in the task, not a pipe
        os.write(master, b"exit 3\n")
        assert proc.wait(60) == 3  # as srun: the command exits with the task's code
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    job_id = int(re.search(rb"job=(\d+)", bytes(seen)).group(1))
    with server.client(token) as c:
        wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "failed")
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["reason"] == "task 0 exited with code 3" and job["spec"]["kind"] == "interactive"
        log = c.get(f"/v1/jobs/{job_id}/logs").json()["data"]
        assert "job=" in log  # the session's transcript is the task's log
    uid = int(re.search(rb"user=(\d+)", bytes(seen)).group(1))
    if os.geteuid() == 0:  # as root the task ran as the tenant's own account, never root
        assert uid >= 2_000_000


def test_attach_refuses_other_tenants_strangers_and_batch_jobs(server, tmp_path):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    owner, other = member_of(server, tmp_path, "attach-a"), member_of(server, tmp_path, "attach-b")
    proc, master = on_a_terminal(server, owner, "run", "--cards", "1", "--", "sh")
    seen = bytearray()
    try:
        read_until(master, rb"\$ ", seen)
        with server.client(owner) as c:
            job = next(j for j in c.get("/v1/jobs").json()["jobs"] if j["state"] == "running")
            batch = c.post(
                "/v1/jobs", json={"task_groups": [{"cards": 1}], "command": ["sleep", "30"]}
            ).json()
            wait_for(lambda: c.get(f"/v1/jobs/{batch['id']}").json()["state"] == "running")
        address = server.url.replace("http", "ws", 1)

        def refused(job_id, token):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with connect(f"{address}/v1/jobs/{job_id}/attach", additional_headers=headers, proxy=None) as ws:
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=30)
                return ws.close_code, ws.close_reason

        assert refused(job["id"], other) == (4404, f"no job {job['id']}")  # as for a job that is not there
        assert refused(job["id"], None)[0] == 4401
        assert refused(job["id"], "wk_forged")[0] == 4401
        code, why = refused(batch["id"], owner)
        assert code == 4409 and "not interactive" in why
        # nothing the stranger sent reached the owner's terminal
        os.write(master, b"echo still-mine\n")
        read_until(master, rb"\nstill-mine\r\n", seen)
        os.write(master, b"exit\n")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        with server.client(owner) as c:
            for j in c.get("/v1/jobs").json()["jobs"]:
                if j["state"] in ("pending", "running"):
                    c.post(f"/v1/jobs/{j['id']}/cancel")


def test_cancelling_an_interactive_job_hangs_its_terminal_up(server, tmp_path):
    token = member_of(server, tmp_path, "hangup")
    proc, master = on_a_terminal(server, token, "run", "--cards", "1", "--", "sh")
    seen = bytearray()
    try:
        read_until(master, rb"\$ ", seen)
        with server.client(token) as c:
            job = next(j for j in c.get("/v1/jobs").json()["jobs"] if j["state"] == "running")
            c.post(f"/v1/jobs/{job['id']}/cancel")
            wait_for(lambda: c.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled")
        assert proc.wait(60) == 1  # the attachment ended with the terminal, and said why
        read_until(master, rb"cancelled", seen)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_a_command_that_ends_at_once_still_shows_its_output_and_code(server, tmp_path):
    """A task may end before the terminal reaches it: its output comes from its log instead, and
    the command still exits with the task's code (it answered "terminal is not open" before)."""
    token = member_of(server, tmp_path, "quick")
    program = "echo started-$((6*7)); exit 3"
    proc, master = on_a_terminal(server, token, "run", "--cards", "1", "--", "sh", "-c", program)
    seen = bytearray()
    try:
        read_until(master, rb"started-42", seen)
        assert proc.wait(60) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_an_interrupt_while_run_waits_cancels_its_job(server, tmp_path):
    """As salloc gives its allocation up: Ctrl-C while `wanka run` waits for cards cancels the job,
    which would otherwise start later with nobody attached and hold a card for its time limit."""
    token = member_of(server, tmp_path, "impatient")
    with server.client(token) as c:
        blocker = c.post(
            "/v1/jobs", json={"task_groups": [{"cards": 4}], "command": ["sleep", "600"]}
        ).json()["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{blocker}").json()["state"] == "running")
        proc, master = on_a_terminal(server, token, "run", "--cards", "1", "--", "sh")
        seen = bytearray()
        try:
            read_until(master, rb"waiting", seen)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C on the user's terminal sends
            assert proc.wait(60) == 130
            waiting = re.search(rb"job (\d+): waiting", bytes(seen)).group(1).decode()
            assert c.get(f"/v1/jobs/{waiting}").json()["state"] == "cancelled"
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
            c.post(f"/v1/jobs/{blocker}/cancel")
