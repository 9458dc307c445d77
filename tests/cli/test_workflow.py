"""The everyday workflow of a Slurm user, through the real CLI, server and task processes on loopback:
sbatch-like flags, `--parsable`, nodes that mean nodes, `logs -f` on a waiting job, live output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

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
    blocker = as_member(
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
        str(release_blocker),
    ).stdout.strip()
    wait_for(
        lambda: (
            json.loads(as_member(server, member, tmp_path, "show", blocker, "--json").stdout)["state"]
            == "running"
        )
    )
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
