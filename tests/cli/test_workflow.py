"""The everyday workflow of a Slurm user, through the real CLI, server and task processes on loopback:
sbatch-like flags, `--parsable`, nodes that mean nodes, `logs -f` on a waiting job, live output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.cli.test_remote import wanka
from tests.server.conftest import start_server, stop_server, wait_for

WAIT_FOR = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(
        tmp_path_factory.mktemp("wanka-workflow"), ("--virtual-cards", "8", "--virtual-nodes", "2")
    )
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def member(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("admin-cli")
    wanka(home, "tenants", "create", "flow", token=server.admin_token, url=server.url)
    made = wanka(
        home,
        "tokens",
        "create",
        "flow-user",
        "--tenant",
        "flow",
        "--json",
        token=server.admin_token,
        url=server.url,
    )
    return json.loads(made.stdout)["token"]


def as_member(server, member, tmp_path, *args, check=True):
    return wanka(tmp_path, *args, token=member, url=server.url, check=check)


def fill_cluster(server, member, tmp_path, release) -> str:
    """A job on all 8 cards that runs until the file ``release`` exists; its id, once running."""
    job = as_member(
        server,
        member,
        tmp_path,
        "submit",
        "-n",
        "2",
        "--cards",
        "4",
        "--parsable",
        "--",
        sys.executable,
        "-c",
        WAIT_FOR,
        str(release),
    ).stdout.strip()
    wait_for(
        lambda: (
            json.loads(as_member(server, member, tmp_path, "show", job, "--json").stdout)["state"]
            == "running"
        )
    )
    return job


def test_sbatch_flags_reach_the_job_and_nodes_mean_nodes(server, member, tmp_path):
    argv = [sys.executable, "-c", "import os; print(os.environ['GREETING'], os.environ['NNODES'])"]
    flags = ["-N", "2", "--cards", "1", "-t", "1:00:00", "--mem", "2G", "--cpus", "1", "-e", "GREETING=hi"]
    flags += ["--priority", "low", "--kind", "batch", "--restart", "2", "-J", "flags", "--parsable"]
    r = as_member(server, member, tmp_path, "submit", *flags, "--", *argv)
    job_id = r.stdout.strip()
    assert job_id.isdigit(), r.stdout  # --parsable: the id alone, for $(…) in scripts
    spec = json.loads(as_member(server, member, tmp_path, "show", job_id, "--json").stdout)["spec"]
    group = spec["task_groups"][0]
    assert (group["replicas"], group["tasks_per_node"], group["cards"]) == (2, 1, 1)
    assert (group["cpus"], group["memory_gib"], spec["time_limit_s"]) == (1, 2, 3600.0)
    assert spec["env"] == {"GREETING": "hi"} and spec["restart"] == {"max": 2}
    assert (spec["priority_class"], spec["kind"], spec["name"]) == ("low", "batch", "flags")
    assert as_member(server, member, tmp_path, "logs", job_id, "-f").stdout == "hi 2\n"
    listed = json.loads(as_member(server, member, tmp_path, "jobs", "--json").stdout)["jobs"]
    job = next(j for j in listed if str(j["id"]) == job_id)
    assert job["nodes"] == ["local-0001", "local-0002"] and job["user"] == "flow-user"
    table = as_member(server, member, tmp_path, "jobs").stdout
    assert "flow-user" in table and "local-0001,local-0002" in table and "elapsed" in table


def test_logs_follow_waits_for_a_job_that_has_not_started_and_shows_prints_as_written(
    server, member, tmp_path
):
    release_blocker, release_job = tmp_path / "go-blocker", tmp_path / "go-job"
    fill_cluster(server, member, tmp_path, release_blocker)
    # a plain print(), no flush: PYTHONUNBUFFERED (the task contract) makes it reach the log at once
    script = f"print('first')\n{WAIT_FOR}print('second')\n"
    job = as_member(
        server,
        member,
        tmp_path,
        "submit",
        "--cards",
        "1",
        "--parsable",
        "--",
        sys.executable,
        "-c",
        script,
        str(release_job),
    ).stdout.strip()
    assert json.loads(as_member(server, member, tmp_path, "show", job, "--json").stdout)["state"] == "pending"
    follow = subprocess.Popen(
        [sys.executable, "-m", "wanka.cli.main", "logs", job, "-f"],
        env={**os.environ, "WANKA_URL": server.url, "WANKA_TOKEN": member},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        release_blocker.touch()  # the blocker ends, the job starts, `logs -f` must still be there
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(follow.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)  # only a broken follow (or a buffered print) makes this wait run out
        assert first == ["first\n"], (first, follow.stderr.read() if follow.poll() is not None else "")
        release_job.touch()
        out, err = follow.communicate(timeout=120)
        assert follow.returncode == 0 and out == "second\n", err
    finally:
        if follow.poll() is None:
            follow.kill()


def test_whoami_cluster_status_and_quotas_show(server, member, tmp_path):
    assert as_member(server, member, tmp_path, "whoami").stdout.strip() == (
        f"flow-user (member, tenant flow) at {server.url}"
    )
    who = json.loads(as_member(server, member, tmp_path, "whoami", "--json").stdout)
    assert (who["name"], who["role"], who["tenant"], who["url"]) == (
        "flow-user",
        "member",
        "flow",
        server.url,
    )
    release = tmp_path / "go"
    job = as_member(
        server,
        member,
        tmp_path,
        "submit",
        "--cards",
        "3",
        "--parsable",
        "--",
        sys.executable,
        "-c",
        WAIT_FOR,
        str(release),
    ).stdout.strip()
    try:
        wait_for(
            lambda: (
                json.loads(as_member(server, member, tmp_path, "show", job, "--json").stdout)["state"]
                == "running"
            )
        )
        status = json.loads(as_member(server, member, tmp_path, "cluster", "status", "--json").stdout)
        assert status["cards"] == 8 and status["allocated_by_tenant"] == {"flow": 3}
        quotas = json.loads(as_member(server, member, tmp_path, "quotas", "show", "--json").stdout)
        assert [(q["name"], q["in_use"]) for q in quotas] == [("flow", {"ascend-910c": 3})]
        table = as_member(server, member, tmp_path, "quotas", "show").stdout
        assert "in use" in table and "flow" in table
    finally:
        release.touch()


def job_state(server, member, tmp_path, job_id: str) -> dict:
    return json.loads(as_member(server, member, tmp_path, "show", job_id, "--json").stdout)


def test_hold_update_release_and_requeue(server, member, tmp_path):
    release_blocker = tmp_path / "go"
    blocker = fill_cluster(server, member, tmp_path, release_blocker)
    try:
        job = as_member(
            server,
            member,
            tmp_path,
            "submit",
            "--cards",
            "1",
            "--parsable",
            "--",
            sys.executable,
            "-c",
            "print('ran')",
        ).stdout.strip()
        assert "held" in as_member(server, member, tmp_path, "hold", job).stdout
        r = as_member(server, member, tmp_path, "update", job, "--priority", "low", "-t", "2h")
        assert "held, low, time limit 7200 s" in r.stdout
        shown = job_state(server, member, tmp_path, job)
        assert shown["spec"]["priority_class"] == "low" and shown["spec"]["time_limit_s"] == 7200
        events = [e["reason"] for e in shown["events"]]
        assert "held by flow-user" in events and any("time_limit_s 7200" in e for e in events)
        # the blocker ends; a held job does not start however free the cluster is
        release_blocker.touch()
        wait_for(lambda: job_state(server, member, tmp_path, blocker)["state"] == "succeeded")
        marker = json.loads(
            as_member(
                server, member, tmp_path, "submit", "-n", "2", "--cards", "4", "--json", "--", "true"
            ).stdout
        )
        wait_for(lambda: job_state(server, member, tmp_path, str(marker["id"]))["state"] == "succeeded")
        assert job_state(server, member, tmp_path, job)["state"] == "held"  # a later, larger job ran past it
        as_member(server, member, tmp_path, "release", job)
        assert as_member(server, member, tmp_path, "logs", job, "-f").stdout == "ran\n"
        assert job_state(server, member, tmp_path, job)["state"] == "succeeded"
        # a finished job comes back with the same id, as a new run
        assert "pending" in as_member(server, member, tmp_path, "requeue", job).stdout
        wait_for(lambda: job_state(server, member, tmp_path, job)["state"] == "succeeded")
        again = job_state(server, member, tmp_path, job)
        assert again["runs"] == 2 and "requeued by flow-user" in [e["reason"] for e in again["events"]]
        assert as_member(server, member, tmp_path, "logs", job, "--run", "2").stdout == "ran\n"
        # another queue must be one of the tenant's, as at submission; nothing changes otherwise
        r = as_member(server, member, tmp_path, "requeue", job, "-q", "not-ours", check=False)
        assert r.returncode == 1 and "'not-ours' is not a queue of flow" in r.stderr
        assert job_state(server, member, tmp_path, job)["queue"] == "flow"
        # acct shows the last run's task, -D every run's (as sacct; newcomer review: two like rows)
        columns = ("-o", "jobid,run,state")
        last = as_member(server, member, tmp_path, "acct", "-j", job, *columns).stdout
        every = as_member(server, member, tmp_path, "acct", "-j", job, "-D", *columns).stdout
        assert last.count(f"{job}.0") == 1 and every.count(f"{job}.0") == 2, (last, every)
    finally:
        release_blocker.touch()


def test_what_cannot_change_is_refused_with_why(server, member, tmp_path):
    job = as_member(
        server, member, tmp_path, "submit", "--cards", "1", "--parsable", "--", "true"
    ).stdout.strip()
    wait_for(lambda: job_state(server, member, tmp_path, job)["state"] == "succeeded")
    r = as_member(server, member, tmp_path, "hold", job, check=False)
    assert r.returncode == 1 and "not waiting" in r.stderr
    r = as_member(server, member, tmp_path, "update", job, "--time", "5", check=False)
    assert r.returncode == 1 and "only a waiting job can be changed" in r.stderr
    r = as_member(server, member, tmp_path, "release", job, check=False)
    assert r.returncode == 1 and "not held" in r.stderr
    r = as_member(server, member, tmp_path, "update", job, "--priority", "critical", check=False)
    assert r.returncode == 1
    r = as_member(server, member, tmp_path, "cancel", job, "999999", check=False)
    assert r.returncode == 1 and "already succeeded" in r.stderr and "no job 999999" in r.stderr


def test_a_member_cannot_release_an_operators_hold(server, member, tmp_path):
    release = tmp_path / "go"
    blocker = fill_cluster(server, member, tmp_path, release)
    try:
        job = as_member(
            server, member, tmp_path, "submit", "--cards", "1", "--parsable", "--", "true"
        ).stdout.strip()
        wanka(tmp_path, "hold", job, token=server.admin_token, url=server.url)
        r = as_member(server, member, tmp_path, "release", job, check=False)
        assert r.returncode == 1 and "held by an admin" in r.stderr
        assert job_state(server, member, tmp_path, job)["state"] == "held"
        wanka(tmp_path, "release", job, token=server.admin_token, url=server.url)
        # a member's own hold, then the operator's on top: the member can no longer lift it
        # (newcomer review: the admin's hold was refused, "not waiting")
        as_member(server, member, tmp_path, "hold", job)
        wanka(tmp_path, "hold", job, token=server.admin_token, url=server.url)
        r = as_member(server, member, tmp_path, "release", job, check=False)
        assert r.returncode == 1 and "held by an admin" in r.stderr
        wanka(tmp_path, "release", job, token=server.admin_token, url=server.url)
        assert job_state(server, member, tmp_path, job)["state"] in (
            "pending",
            "admitted",
            "running",
            "succeeded",
        )
    finally:
        release.touch()
    wait_for(lambda: job_state(server, member, tmp_path, blocker)["state"] == "succeeded")


def test_a_retried_submission_with_the_same_key_makes_one_job(server, member, tmp_path):
    args = ["submit", "--cards", "1", "--idempotency-key", "nightly-2026-11-30", "--json", "--", "true"]
    first = json.loads(as_member(server, member, tmp_path, *args).stdout)
    second = json.loads(as_member(server, member, tmp_path, *args).stdout)
    assert first["id"] == second["id"]
    listed = json.loads(as_member(server, member, tmp_path, "jobs", "--json", "--limit", "1000").stdout)[
        "jobs"
    ]
    assert [j["id"] for j in listed].count(first["id"]) == 1
    # the same key for a different request is a mistake, named
    r = as_member(
        server,
        member,
        tmp_path,
        "submit",
        "--cards",
        "2",
        "--idempotency-key",
        "nightly-2026-11-30",
        "--",
        "true",
        check=False,
    )
    assert r.returncode == 1 and "Idempotency-Key" in r.stderr and str(first["id"]) in r.stderr


class DropFirstReply:
    """A loopback HTTP proxy that delivers the first request to the server, then closes the
    connection instead of passing the reply on: a reply lost on the way, as a client sees it."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _message(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            with conn:
                request = self._message(conn)
                if not request:
                    continue
                with socket.create_connection(self.upstream) as up:
                    up.sendall(request)
                    reply = self._message(up)
                if self.dropped == 0:
                    self.dropped += 1  # the server did the work; the client never hears of it
                    continue
                conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


def test_the_sdk_retries_a_lost_reply_without_making_a_second_job(server, member):
    from wanka.client import Client

    proxy = DropFirstReply(server.url)
    try:
        with Client(proxy.url, member) as c:
            job = c.submit({"name": "lost-reply", "task_groups": [{"cards": 1}], "command": ["true"]})
    finally:
        proxy.close()
    assert proxy.dropped == 1
    with Client(server.url, member) as c:
        named = [j for j in c.jobs(limit=1000)["jobs"] if j["name"] == "lost-reply"]
    assert [j["id"] for j in named] == [job["id"]]


def submit_id(server, member, tmp_path, *args) -> str:
    return as_member(server, member, tmp_path, "submit", "--parsable", *args).stdout.strip()


def test_dependencies_run_a_pipeline_in_order_and_cancel_what_can_never_run(server, member, tmp_path):
    go = tmp_path / "go"
    first = submit_id(server, member, tmp_path, "--cards", "1", "--", sys.executable, "-c", WAIT_FOR, str(go))
    ok = submit_id(server, member, tmp_path, "--cards", "1", "-d", f"afterok:{first}", "--", "echo", "ok")
    started = submit_id(
        server, member, tmp_path, "--cards", "1", "-d", f"after:{first}", "--", "echo", "with"
    )
    not_ok = submit_id(
        server, member, tmp_path, "--cards", "1", "-d", f"afternotok:{first}", "--", "echo", "no"
    )
    chained = submit_id(
        server, member, tmp_path, "--cards", "1", "-d", f"afterok:{not_ok}", "--", "echo", "x"
    )
    try:
        wait_for(lambda: job_state(server, member, tmp_path, started)["state"] == "succeeded")
        waiting = job_state(server, member, tmp_path, ok)
        assert (
            waiting["state"] == "pending" and waiting["reason"] == f"waiting for dependency afterok:{first}"
        )
        assert waiting["runs"] == 0
    finally:
        go.touch()
    assert as_member(server, member, tmp_path, "logs", ok, "-f").stdout == "ok\n"
    wait_for(lambda: job_state(server, member, tmp_path, chained)["state"] == "cancelled")
    never = job_state(server, member, tmp_path, not_ok)
    assert never["state"] == "cancelled" and never["runs"] == 0
    assert f"afternotok:{first} never holds: job {first} succeeded" in never["reason"]
    assert f"job {not_ok} cancelled" in job_state(server, member, tmp_path, chained)["reason"]


def test_a_dependency_on_another_tenants_job_is_no_job(server, member, tmp_path):
    other = wanka(
        tmp_path,
        "submit",
        "--tenant",
        "flow2",
        "--parsable",
        "--",
        "true",
        token=server.admin_token,
        url=server.url,
        check=False,
    )
    if other.returncode:  # the tenant does not exist yet
        wanka(tmp_path, "tenants", "create", "flow2", token=server.admin_token, url=server.url)
        other = wanka(
            tmp_path,
            "submit",
            "--tenant",
            "flow2",
            "--parsable",
            "--",
            "true",
            token=server.admin_token,
            url=server.url,
        )
    theirs = other.stdout.strip()
    r = as_member(server, member, tmp_path, "submit", "-d", f"afterany:{theirs}", "--", "true", check=False)
    assert r.returncode == 1 and f"dependency: no job {theirs}" in r.stderr
    r = as_member(server, member, tmp_path, "submit", "-d", "afterok:1?afterok:2", "--", "true", check=False)
    assert r.returncode == 1 and "not supported" in r.stderr


def test_an_array_runs_one_job_per_index_at_most_n_at_once(server, member, tmp_path):
    # each element records its index and waits for its own go-file: the test decides when each ends
    script = (
        "import os, sys, time\n"
        "i = os.environ['WANKA_ARRAY_INDEX']\n"
        "print(i, os.environ['WANKA_ARRAY_JOB_ID'])\n"
        "go = os.path.join(sys.argv[1], 'go-' + i)\n"
        "while not os.path.exists(go): time.sleep(0.05)\n"
    )
    r = as_member(
        server,
        member,
        tmp_path,
        "submit",
        "--cards",
        "1",
        "--array",
        "0-8:2%2",
        "--json",
        "--",
        sys.executable,
        "-c",
        script,
        str(tmp_path),
    )
    head = json.loads(r.stdout)
    array = str(head["id"])
    assert head["array_elements"] == 5 and head["array_index"] == 0

    def elements():
        listed = json.loads(as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout)[
            "jobs"
        ]
        return {j["array_index"]: j for j in listed}

    try:
        assert sorted(elements()) == [0, 2, 4, 6, 8]
        for index in [0, 2, 4, 6, 8]:
            wait_for(lambda index=index: elements()[index]["state"] == "running")
            now = elements()
            running = sorted(i for i, j in now.items() if j["state"] == "running")
            assert len(running) <= 2, running
            waiting = [j for j in now.values() if j["state"] == "pending"]
            assert all(
                j["reason"] == "array throttle: 2 elements at once"
                for j in waiting
                if j["array_index"] > index + 2
            )
            (tmp_path / f"go-{index}").touch()
        wait_for(lambda: all(j["state"] == "succeeded" for j in elements().values()))
        assert as_member(server, member, tmp_path, "logs", f"{array}_4").stdout == f"4 {array}\n"
    finally:
        for i in range(0, 9, 2):
            (tmp_path / f"go-{i}").touch()


def test_an_array_is_cancelled_held_and_released_as_a_whole_or_by_element(server, member, tmp_path):
    go = tmp_path / "go"
    fill_cluster(server, member, tmp_path, go)
    try:
        array = submit_id(server, member, tmp_path, "--cards", "1", "--array", "1-4", "--", "true")
        assert (
            as_member(server, member, tmp_path, "cancel", f"{array}_3").stdout.strip().endswith("cancelled")
        )
        as_member(server, member, tmp_path, "hold", array)
        states = {
            j["array_index"]: j["state"]
            for j in json.loads(
                as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout
            )["jobs"]
        }
        assert states == {1: "held", 2: "held", 3: "cancelled", 4: "held"}
        as_member(server, member, tmp_path, "release", array)
        as_member(server, member, tmp_path, "cancel", array)
        states = {
            j["array_index"]: j["state"]
            for j in json.loads(
                as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout
            )["jobs"]
        }
        assert set(states.values()) == {"cancelled"}
    finally:
        go.touch()


def test_an_operator_holds_a_whole_queue_and_releases_it(server, member, tmp_path):
    def admin(*args, check=True):
        return wanka(tmp_path, *args, token=server.admin_token, url=server.url, check=check)

    r = as_member(server, member, tmp_path, "queues", "hold", "flow", check=False)
    assert r.returncode == 1 and "admins only" in r.stderr
    assert "queue flow held: " in admin("queues", "hold", "flow", "--reason", "maintenance").stdout
    try:
        job = submit_id(server, member, tmp_path, "--cards", "1", "--", "echo", "after the hold")
        # a job of another queue runs meanwhile: the cluster is free, the hold is what keeps ours
        admin("tenants", "create", "other-flow", check=False)
        other = admin("submit", "--tenant", "other-flow", "--parsable", "--", "true").stdout.strip()
        wait_for(lambda: json.loads(admin("show", other, "--json").stdout)["state"] == "succeeded")
        held = job_state(server, member, tmp_path, job)
        assert held["state"] == "pending" and held["runs"] == 0
        assert held["reason"] == "queue flow held by admin: maintenance"
        listed = json.loads(as_member(server, member, tmp_path, "queues", "--json").stdout)
        assert [q["held"] for q in listed if q["name"] == "flow"] == ["maintenance"]
    finally:
        admin("queues", "release", "flow")
    assert as_member(server, member, tmp_path, "logs", job, "-f").stdout == "after the hold\n"
    r = admin("queues", "release", "flow", check=False)
    assert r.returncode == 1 and "not held" in r.stderr


def test_acct_shows_each_task_with_its_exit_code_node_and_peak_memory(server, member, tmp_path):
    # rank 1 holds ~64 MiB, then fails with 3; rank 0 succeeds
    script = (
        "import os\nif os.environ['RANK'] == '1':\n    block = bytearray(64 * 1024 * 1024)\n    os._exit(3)\n"
    )
    job = submit_id(
        server,
        member,
        tmp_path,
        "-N",
        "2",
        "--cards",
        "1",
        "-J",
        "acct-me",
        "--",
        sys.executable,
        "-c",
        script,
    )
    wait_for(lambda: job_state(server, member, tmp_path, job)["state"] == "failed")
    page = json.loads(as_member(server, member, tmp_path, "acct", "-j", job, "--json").stdout)
    [row] = page["jobs"]
    assert (row["id"], row["name"], row["state"], row["exit_code"]) == (int(job), "acct-me", "failed", 3)
    assert row["nodes"] == ["local-0001", "local-0002"] and row["card_hours"] > 0
    tasks = {t["task"]: t for t in row["tasks"]}
    assert (tasks[0]["exit_code"], tasks[1]["exit_code"]) == (0, 3)
    assert (tasks[0]["state"], tasks[1]["state"]) == ("completed", "failed")
    assert {tasks[0]["node"], tasks[1]["node"]} == {"local-0001", "local-0002"}
    assert tasks[1]["max_rss_kib"] >= 64 * 1024 > tasks[0]["max_rss_kib"]
    text = as_member(server, member, tmp_path, "acct", "-j", job, "-o", "jobid,state,exitcode,maxrss").stdout
    assert f"{job}.1" in text and "failed" in text
    # a window that ends before the job was submitted leaves it out; one around it keeps it
    listed = json.loads(
        as_member(
            server, member, tmp_path, "acct", "--from", "2000-01-01", "--to", "2000-01-02", "--json"
        ).stdout
    )
    assert listed["jobs"] == []
    around = json.loads(
        as_member(
            server, member, tmp_path, "acct", "--from", "2000-01-01", "--json", "--limit", "1000"
        ).stdout
    )
    assert int(job) in [j["id"] for j in around["jobs"]]
    assert {j["tenant"] for j in around["jobs"]} == {"flow"}  # a member sees only its own tenant
    r = as_member(server, member, tmp_path, "acct", "-o", "jobid,nonsense", check=False)
    assert r.returncode == 2 and "nonsense" in r.stderr


def test_acct_names_a_task_wanka_stopped_by_why_not_by_the_signal_it_died_of(server, member, tmp_path):
    # sacct shows a cancelled step as CANCELLED, not FAILED with SIGTERM's 143 (nor COMPLETED when
    # the task exits 0 on SIGTERM, as this one does); likewise a time limit
    exits_0 = (
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\ntime.sleep(600)"
    )
    cancelled = submit_id(
        server, member, tmp_path, "-N", "2", "--cards", "1", "--", sys.executable, "-c", exits_0
    )
    timed = submit_id(server, member, tmp_path, "--cards", "1", "--time", "1s", "--", "sleep", "600")
    wait_for(lambda: job_state(server, member, tmp_path, cancelled)["state"] == "running")
    as_member(server, member, tmp_path, "cancel", cancelled)
    wait_for(lambda: job_state(server, member, tmp_path, cancelled)["state"] == "cancelled")
    wait_for(lambda: job_state(server, member, tmp_path, timed)["state"] == "failed")
    for job, state in ((cancelled, "cancelled"), (timed, "timeout")):
        [row] = json.loads(as_member(server, member, tmp_path, "acct", "-j", job, "--json").stdout)["jobs"]
        assert row["tasks"] and {t["state"] for t in row["tasks"]} == {state}, row["tasks"]
    text = as_member(server, member, tmp_path, "acct", "-j", cancelled, "-o", "jobid,state").stdout
    assert f"{cancelled}.1" in text and "failed" not in text
    # the job line of a job its time limit ended says so, as sacct's TIMEOUT (newcomer review)
    text = as_member(server, member, tmp_path, "acct", "-j", timed, "-o", "jobid,state").stdout
    assert "failed" not in text and text.count("timeout") == 2, text
    # a gang whose rank 0 fails: rank 1, stopped for it, was cancelled, not failed (newcomer review)
    gang = submit_id(
        server,
        member,
        tmp_path,
        "-N",
        "2",
        "--cards",
        "1",
        "--",
        "sh",
        "-c",
        '[ "$RANK" = 0 ] && exit 5; sleep 60',
    )
    wait_for(lambda: job_state(server, member, tmp_path, gang)["state"] == "failed")
    [row] = json.loads(as_member(server, member, tmp_path, "acct", "-j", gang, "--json").stdout)["jobs"]
    assert sorted((t["task"], t["state"], t["exit_code"]) for t in row["tasks"]) == [
        (0, "failed", 5),
        (1, "cancelled", 143),
    ]


def test_a_lone_program_after_the_double_dash_is_the_command_not_a_spec_file(server, member, tmp_path):
    # hostile review: `wanka submit -- /bin/sh` read /bin/sh as a YAML spec ("not UTF-8 text")
    job = submit_id(server, member, tmp_path, "--cards", "1", "--", "/bin/true")
    wait_for(lambda: job_state(server, member, tmp_path, job)["state"] == "succeeded")
    assert job_state(server, member, tmp_path, job)["spec"]["command"] == ["/bin/true"]


def test_usage_over_a_range_of_days(server, member, tmp_path):
    today = json.loads(as_member(server, member, tmp_path, "usage", "--json").stdout)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    ranged = json.loads(
        as_member(server, member, tmp_path, "usage", "--from", day, "--to", day, "--json").stdout
    )
    assert ranged["month"] == f"{day}..{day}" and ranged["end"] - ranged["start"] == 86400
    assert [b["tenant"] for b in ranged["bills"]] == [b["tenant"] for b in today["bills"]] == ["flow"]
    r = as_member(server, member, tmp_path, "usage", "--from", "2026-02-30", check=False)
    assert r.returncode == 1 and "from" in r.stderr
    r = as_member(
        server, member, tmp_path, "usage", "--from", "2020-01-01", "--to", "2026-01-01", check=False
    )
    assert r.returncode == 1 and "366" in r.stderr


def test_a_job_submitted_held_waits_until_released(server, member, tmp_path):
    job = submit_id(
        server, member, tmp_path, "-H", "--cards", "1", "--array", "0-1", "--", "echo", "released"
    )
    states = {
        j["state"]
        for j in json.loads(as_member(server, member, tmp_path, "jobs", "--array", job, "--json").stdout)[
            "jobs"
        ]
    }
    assert states == {"held"}
    assert job_state(server, member, tmp_path, job)["reason"] == "held by flow-user"
    as_member(server, member, tmp_path, "release", job)
    assert as_member(server, member, tmp_path, "logs", f"{job}_1", "-f").stdout == "released\n"


def test_a_tenant_added_after_a_quota_document_can_submit_at_once(server, tmp_path):
    def admin(*args, check=True):
        return wanka(tmp_path, *args, token=server.admin_token, url=server.url, check=check)

    quotas = tmp_path / "queues.yaml"
    names = [t["name"] for t in json.loads(admin("tenants", "list", "--json").stdout)]
    quotas.write_text("organisations:\n" + "".join(f"  - name: {n}\n" for n in names))
    admin("quotas", "apply", str(quotas))
    admin("tenants", "create", "late-lab")
    token = json.loads(admin("tokens", "create", "late-user", "--tenant", "late-lab", "--json").stdout)[
        "token"
    ]
    r = wanka(tmp_path, "submit", "--parsable", "--", "echo", "late", token=token, url=server.url)
    assert wanka(tmp_path, "logs", r.stdout.strip(), "-f", token=token, url=server.url).stdout == "late\n"
    admin("quotas", "apply", str(quotas), check=False)  # the document in force now names late-lab too
    shown = json.loads(admin("queues", "--json").stdout)
    assert "late-lab" in [q["name"] for q in shown]


def test_requeue_and_acct_take_an_array_as_a_whole(server, member, tmp_path):
    array = submit_id(server, member, tmp_path, "--cards", "1", "--array", "0-2", "--", "true")
    wait_for(
        lambda: (
            {
                j["state"]
                for j in json.loads(
                    as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout
                )["jobs"]
            }
            == {"succeeded"}
        )
    )
    assert "every element" in as_member(server, member, tmp_path, "requeue", array).stdout
    wait_for(
        lambda: (
            [
                j["runs"]
                for j in json.loads(
                    as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout
                )["jobs"]
            ]
            == [2, 2, 2]
            and {
                j["state"]
                for j in json.loads(
                    as_member(server, member, tmp_path, "jobs", "--array", array, "--json").stdout
                )["jobs"]
            }
            == {"succeeded"}
        )
    )
    rows = json.loads(as_member(server, member, tmp_path, "acct", "-j", array, "--json").stdout)["jobs"]
    assert sorted(j["array_index"] for j in rows) == [0, 1, 2]
