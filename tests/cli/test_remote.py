"""The `wanka` client commands against a real server on loopback, as separate processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.server.conftest import start_server, stop_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-cli-home"))
    yield s
    stop_server(s)


def wanka(
    tmp_path, *args, token: str | None = None, url: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANKA_CONFIG": str(tmp_path / "client.json"), "COLUMNS": "200"}
    env.pop("WANKA_TOKEN", None)
    env.pop("WANKA_URL", None)
    if token:
        env["WANKA_TOKEN"] = token
    if url:
        env["WANKA_URL"] = url
    r = subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_an_admin_and_a_member_work_through_the_cli(server, tmp_path):
    r = wanka(tmp_path, "login", "--url", server.url, "--token", server.admin_token)
    assert "as admin (admin)" in r.stdout
    config = tmp_path / "client.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["url"] == server.url

    wanka(tmp_path, "tenants", "create", "cli-lab")
    assert "cli-lab" in [t["name"] for t in json.loads(wanka(tmp_path, "tenants", "list", "--json").stdout)]
    made = json.loads(wanka(tmp_path, "tokens", "create", "cli-user", "--tenant", "cli-lab", "--json").stdout)
    member = made["token"]
    # the same line again (a README step run twice) gives the member a second token; the same
    # name in another tenant is refused: it would be a token for someone else
    again = wanka(tmp_path, "tokens", "create", "cli-user", "--tenant", "cli-lab", "--json")
    again = json.loads(again.stdout)
    assert again["user"] == "cli-user" and again["token"] != member
    wanka(tmp_path, "tenants", "create", "cli-lab-2")
    r = wanka(tmp_path, "tokens", "create", "cli-user", "--tenant", "cli-lab-2", check=False)
    assert r.returncode == 1 and "exists" in r.stderr

    # hostile strings reach the task as plain argv: no shell ever sees them
    words = ["$(id)", "; echo owned", "a\nb", "'\"`uname`\"'", "&& rm -rf ~"]
    argv = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *words]
    r = wanka(
        tmp_path, "submit", "--cards", "1", "--name", "x; $(reboot)", "--json", "--", *argv, token=member
    )
    job = json.loads(r.stdout)
    assert job["tenant"] == "cli-lab" and job["state"] == "pending"
    listed = json.loads(wanka(tmp_path, "jobs", "--json", token=member).stdout)["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0]["spec"]["command"] == argv and listed[0]["name"] == "x; $(reboot)"
    out = wanka(tmp_path, "logs", str(job["id"]), "-f", token=member).stdout
    assert json.loads(out) == words

    shown = wanka(tmp_path, "show", str(job["id"]), token=member).stdout
    assert f"job {job['id']}" in shown and "submitted" in shown and "succeeded" in shown
    r = wanka(tmp_path, "cancel", str(job["id"]), token=member, check=False)
    assert r.returncode == 1 and "already succeeded" in r.stderr
    sleeper = json.loads(
        wanka(
            tmp_path,
            "submit",
            "--cards",
            "1",
            "--json",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(600)",
            token=member,
        ).stdout
    )
    wanka(tmp_path, "cancel", str(sleeper["id"]), token=member)
    wait_for(
        lambda: (
            json.loads(wanka(tmp_path, "show", str(sleeper["id"]), "--json", token=member).stdout)["state"]
            == "cancelled"
        )
    )
    usage = json.loads(wanka(tmp_path, "usage", "--json", token=member).stdout)
    assert [b["tenant"] for b in usage["bills"]] == ["cli-lab"] and usage["bills"][0]["card_hours"] > 0

    queues = json.loads(wanka(tmp_path, "queues", "--json", token=member).stdout)
    assert [q["name"] for q in queues] == ["cli-lab"]
    nodes = json.loads(wanka(tmp_path, "nodes", "--json", token=member).stdout)
    r = wanka(tmp_path, "nodes", "drain", nodes[0]["name"], token=member, check=False)
    assert r.returncode == 1 and "403: admins only" in r.stderr
    assert "draining" in wanka(tmp_path, "nodes", "drain", nodes[0]["name"], "--reason", "fan").stdout
    assert "up" in wanka(tmp_path, "nodes", "undrain", nodes[0]["name"]).stdout

    wanka(tmp_path, "tokens", "revoke", str(made["id"]))
    r = wanka(tmp_path, "jobs", token=member, check=False)
    assert r.returncode == 1 and "401" in r.stderr and "wanka login" in r.stderr  # and what to do


def test_bad_input_is_refused_with_the_field_named(server, tmp_path):
    def wanka_(*args, check):
        return wanka(tmp_path, *args, token=server.admin_token, url=server.url, check=check)

    spec = tmp_path / "job.yaml"
    spec.write_text("task_groups:\n  - replicas: 1\n    cards: 99\ncommand: [python3]\n")
    r = wanka_("submit", str(spec), check=False)
    assert r.returncode == 1 and "task_groups[0].cards" in r.stderr
    r = wanka_("submit", "--cards", "1", check=False)
    assert r.returncode == 2 and "command after --" in r.stderr
    queues = tmp_path / "queues.yaml"
    queues.write_text("organisations:\n  - name: x\n    colour: red\n")
    r = wanka_("quotas", "apply", str(queues), check=False)
    assert r.returncode == 1 and "colour" in r.stderr and "unknown field" in r.stderr


def test_an_unreachable_server_is_one_clear_line(tmp_path):
    env_url = "http://127.0.0.1:9"  # discard port: nothing listens
    r = subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", "jobs"],
        env={**os.environ, "WANKA_CONFIG": str(tmp_path / "none.json"), "WANKA_URL": env_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and f"cannot reach {env_url}" in r.stderr


def test_operators_disable_tenants_and_users_and_tokens_expire_through_the_cli(server, tmp_path):
    def admin(*args, check=True):
        return wanka(tmp_path, *args, token=server.admin_token, url=server.url, check=check)

    admin("tenants", "create", "cli-off")
    made = json.loads(admin("tokens", "create", "cli-off-user", "--tenant", "cli-off", "--json").stdout)
    member = made["token"]
    assert wanka(tmp_path, "jobs", token=member, url=server.url).returncode == 0
    assert "disabled" in admin("tenants", "disable", "cli-off").stdout
    tenants = json.loads(admin("tenants", "list", "--json").stdout)
    assert next(t for t in tenants if t["name"] == "cli-off")["disabled"] is True
    r = wanka(tmp_path, "jobs", token=member, url=server.url, check=False)
    assert r.returncode == 1 and "401" in r.stderr
    admin("tenants", "enable", "cli-off")
    assert "disabled" in admin("users", "disable", "cli-off-user").stdout
    assert wanka(tmp_path, "jobs", token=member, url=server.url, check=False).returncode == 1
    admin("users", "enable", "cli-off-user")
    assert wanka(tmp_path, "jobs", token=member, url=server.url).returncode == 0
    short = json.loads(admin("tokens", "create", "cli-off-user", "--expires-in", "3600", "--json").stdout)
    assert short["expires_at"] == pytest.approx(short["created_at"] + 3600)
    # a member's strings are data in every table: a job named like markup breaks nobody's listing
    r = wanka(tmp_path, "submit", "--cards", "1", "--name", "[/]", "--", "true", token=member, url=server.url)
    assert (
        "[/]" in admin("jobs").stdout
        and "[/]" in wanka(tmp_path, "jobs", token=member, url=server.url).stdout
    )
    # a price that is not a number is the server's to refuse, naming the field
    prices = tmp_path / "prices.yaml"
    prices.write_text("currency: CNY\ncard_hour: {ascend-910c: .nan}\n")
    r = admin("prices", "apply", str(prices), check=False)
    assert r.returncode == 1 and "card_hour" in r.stderr and "Traceback" not in r.stderr
