"""Bad input from a member, over real HTTP: each gets a 4xx naming the field and what is accepted,
and nothing is stored. The kinds: numbers past what any cluster holds, strings a database or the
kernel cannot take (NUL, over-long), bodies over the cap, prices that are not prices, priority
classes not granted, and accounts that lock the operator out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, submit

PY = sys.executable
OK = {"task_groups": [{"cards": 1}], "command": [PY, "-c", "print('ok')"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-inputs-home"), ("--virtual-cards", "4"))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def member(server):
    return make_member(server, "lab-inputs", "inputs-user")


@pytest.fixture(scope="module")
def tenants(server, member):
    """Every tenant these tests use, made before any quota document (which must then name each)."""
    return {"lab-inputs": member, "lab-gone": make_member(server, "lab-gone", "gone-user")}


def job_count(server) -> int:
    with server.client(server.admin_token) as admin:
        return len(admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])


def fields(response) -> str:
    detail = response.json()["detail"]
    return json.dumps(detail)


def spec(**changes) -> dict:
    out = json.loads(json.dumps(OK))
    for key, value in changes.items():
        if key.startswith("group_"):
            out["task_groups"][0][key[len("group_") :]] = value
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param(spec(group_cpus=2_147_483_648), 422, "task_groups[0].cpus", id="cpus past int32"),
        pytest.param(
            spec(group_memory_gib=2_147_483_648), 422, "task_groups[0].memory_gib", id="memory past int32"
        ),
        pytest.param(spec(group_cpus=4096), 422, "CPUs", id="cpus no node has"),
        pytest.param(spec(group_memory_gib=1_000_000), 422, "memory", id="memory no node has"),
        pytest.param(
            spec(group_replicas=100_000, group_cards=0), 422, "task_groups[*].replicas", id="fork bomb"
        ),
        pytest.param(spec(name="a\x00b"), 422, "name", id="NUL in name"),
        pytest.param(spec(command=[PY, "-c", "print(1)\x00"]), 422, "command[2]", id="NUL in argv"),
        pytest.param(spec(env={"A": "x\x00y"}), 422, "env.A", id="NUL in env value"),
        pytest.param(
            spec(command=[PY, "x" * 140_000]), 422, "command[1]", id="argv string past MAX_ARG_STRLEN"
        ),
        pytest.param(
            spec(env={f"V{i}": "x" * 100_000 for i in range(12)}), 413, "body", id="env past the body cap"
        ),
        pytest.param(spec(queue="q" * 65), 422, "queue", id="queue name too long"),
        pytest.param(spec(time_limit_s=1e300), 422, "time_limit_s", id="time limit past ten years"),
        pytest.param(spec(priority_class="critical"), 403, "priority_class", id="critical not granted"),
        pytest.param(spec(preemptible=False), 403, "preemptible", id="never preempted, not granted"),
        pytest.param(
            spec(env={f"V{i}": "x" * 100_000 for i in range(3)}), 422, "256 KiB", id="env past 256 KiB"
        ),
    ],
)
def test_a_bad_submission_is_refused_naming_the_field_and_nothing_is_stored(
    server, member, body, status, field
):
    before = job_count(server)
    with server.client(member) as c:
        r = c.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    assert field in r.text
    assert job_count(server) == before


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        # hostile review: a lone surrogate in the argv was stored (500), then broke every listing
        # of the tenant and the admin's, and killed the supervisor with its devices handed out
        pytest.param(spec(command=["true", "\udc80"]), "command[1]", "surrogate", id="surrogate in argv"),
        pytest.param(spec(command=["\ud800"]), "command[0]", "surrogate", id="surrogate argv[0]"),
        pytest.param(spec(name="x\udfff"), "name", "unicode", id="surrogate in name"),
        pytest.param(spec(env={"A": "\udc80"}), "env.A", "surrogate", id="surrogate in env"),
        # hostile review: escape sequences in a name acted on the admin's terminal (clear screen,
        # OSC 52 to the clipboard, cursor moves), a newline faked rows
        pytest.param(spec(name="evil\x1b[2J\x1b]52;c;cm0K\x1b\\"), "name", "control", id="ESC in name"),
        pytest.param(spec(name="ok\nfake row"), "name", "control", id="newline in name"),
        pytest.param(spec(name="a\x9bb"), "name", "control", id="C1 CSI in name"),
        pytest.param(spec(name="txt\u202egnp.exe"), "name", "control", id="bidi override in name"),
        pytest.param(spec(name="a\u200bb"), "name", "control", id="zero-width space in name"),
        pytest.param(spec(name="a\u2028b"), "name", "control", id="line separator in name"),
        pytest.param(spec(name="a\u200fb"), "name", "control", id="right-to-left mark in name"),
    ],
)
def test_text_that_is_no_text_or_acts_on_terminals_is_refused(server, member, body, field, says):
    before = job_count(server)
    raw = json.dumps(body).encode()  # ASCII escapes: a surrogate travels as JSON allows it
    with server.client(member) as c:
        r = c.post("/v1/jobs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert field in r.text and says in r.text
        assert c.get("/v1/jobs").status_code == 200
    assert job_count(server) == before


def test_a_script_argument_may_hold_newlines_and_tabs(server, member):
    # control characters are refused in labels only: a `python -c` program is many lines
    with server.client(member) as c:
        r = c.post("/v1/jobs", json=spec(command=[PY, "-c", "import sys\n\tpass"]))
        assert r.status_code == 201, r.text
        c.post(f"/v1/jobs/{r.json()['id']}/cancel")


def test_a_body_over_the_cap_is_refused_before_parsing_and_others_are_served_meanwhile(server, member):
    before = job_count(server)
    huge = json.dumps(spec(name="x", env={f"V{i}": "y" * 60_000 for i in range(900)})).encode()  # ~54 MB
    assert len(huge) > 50 * 2**20
    with server.client(member) as c:
        r = c.post("/v1/jobs", content=huge, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.text
        # chunked, no Content-Length: cut off at the cap as it is read
        chunks = (huge[i : i + 65536] for i in range(0, 8 * 2**20, 65536))
        r = c.post("/v1/jobs", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v1/whoami").status_code == 200
    assert job_count(server) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "says"),
    [
        ("post", "/v1/users/admin/tokens", {"label": "a\x00b"}, "label", "NUL"),
        ("post", "/v1/nodes/local-0001/drain", {"reason": "a\x00b"}, "reason", "NUL"),
        ("post", "/v1/users/admin/tokens", {"label": "a\x1b[2Jb"}, "label", "control"),
        ("post", "/v1/nodes/local-0001/drain", {"reason": "a\nb"}, "reason", "control"),
        ("post", "/v1/tenants", {"name": "a\x00b"}, "name", "pattern"),  # names: letters, digits, -
        ("post", "/v1/users", {"name": "u1", "role": "member", "tenant": "a\x00b"}, "tenant", "NUL"),
        ("get", "/v1/jobs?queue=a%00b", None, "path", "NUL"),
        ("get", "/v1/users/a%00b/tokens", None, "path", "NUL"),
    ],
)
def test_nul_is_refused_in_every_string_the_api_takes(server, method, path, body, field, says):
    with server.client(server.admin_token) as admin:
        r = admin.request(method.upper(), path, json=body)
    assert r.status_code == 422, r.text
    assert field in r.text and says in r.text


def test_a_page_of_the_job_list_is_bounded_in_bytes_and_a_log_offset_in_range(server, member):
    big = spec(env={"A": "x" * 100_000, "B": "y" * 100_000})
    with server.client(member) as c:
        ids = [submit(c, **big) for _ in range(30)]
        page = c.get("/v1/jobs", params={"limit": 1000}).json()
        assert 15 <= len(page["jobs"]) < 30 and page["next_before_id"] is not None
        rest = c.get("/v1/jobs", params={"limit": 1000, "before_id": page["next_before_id"]}).json()
        assert {j["id"] for j in page["jobs"] + rest["jobs"]} >= set(ids)
        for jid in ids:
            c.post(f"/v1/jobs/{jid}/cancel")
        done = submit(c, **OK)
        assert ended(c, done)["state"] == "succeeded"
        r = c.get(f"/v1/jobs/{done}/logs", params={"offset": 2**62})
        assert r.status_code == 200 and r.json()["data"] == "", r.text


def test_queue_names_are_bounded_to_what_the_database_stores(server):
    doc = {"organisations": [{"name": "lab-inputs", "queues": [{"name": "q" * 65}]}]}
    with server.client(server.admin_token) as admin:
        r = admin.put("/v1/quotas", json=doc)
    assert r.status_code == 422 and "organisations[0].queues[0].name" in r.text


def test_priority_classes_are_granted_by_the_quota_document(server, member, tenants):
    with server.client(server.admin_token) as admin, server.client(member) as c:
        assert c.post("/v1/jobs", json=spec(priority_class="high")).status_code == 201  # granted by default
        r = c.post("/v1/jobs", json=spec(priority_class="critical"))
        assert r.status_code == 403 and "granted" in r.text
        tenants = [t["name"] for t in admin.get("/v1/tenants").json()]
        doc = {"organisations": [{"name": t} for t in tenants]}
        doc["organisations"][tenants.index("lab-inputs")]["priority_classes"] = ["normal", "critical"]
        assert admin.put("/v1/quotas", json=doc).status_code == 200
        assert c.post("/v1/jobs", json=spec(priority_class="critical")).status_code == 201
        r = c.post("/v1/jobs", json=spec(priority_class="high"))  # no longer granted
        assert r.status_code == 403
        doc["organisations"][tenants.index("lab-inputs")]["priority_classes"] = ["bogus"]
        r = admin.put("/v1/quotas", json=doc)
        assert r.status_code == 422 and "priority_classes" in r.text
        del doc["organisations"][tenants.index("lab-inputs")]["priority_classes"]
        assert admin.put("/v1/quotas", json=doc).status_code == 200


def test_a_workdir_that_does_not_exist_fails_the_job_with_the_reason(server, member):
    with server.client(member) as c:
        jid = submit(c, **spec(workdir="/nonexistent"))
        job = ended(c, jid)
    assert job["state"] == "failed" and "workdir '/nonexistent'" in job["reason"], job


def test_prices_are_finite_canonical_and_never_reprice_the_past(server, member):
    with server.client(server.admin_token) as admin, server.client(member) as c:
        raw = b'{"currency": "CNY", "card_hour": {"ascend-910c": Infinity}}'
        r = admin.put("/v1/prices", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "card_hour" in r.text
        r = admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"ascend-910c": -1}})
        assert r.status_code == 422
        r = admin.put("/v1/prices", json={"card_hour": {"ascend-910c": 1}, "effective_from": 1})
        assert r.status_code == 422 and "effective_from" in r.text
        assert admin.get("/v1/usage").status_code == 200  # nothing bad was stored
        # a price named by the model's display name is stored under the catalog id metering uses
        r = admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"Ascend 910C": 10.0}})
        assert r.status_code == 200 and r.json()["card_hour"] == {"ascend-910c": 10.0}, r.text
        jid = submit(c, **spec(command=[PY, "-c", "import time; time.sleep(0.5)"]))
        assert ended(c, jid)["state"] == "succeeded"
        before = c.get("/v1/usage").json()["bills"][0]
        priced = before["card_hours"] - before["unpriced_card_hours"]  # earlier jobs ran unpriced
        assert before["cost"] == pytest.approx(priced * 10.0) and before["cost"] > 0
        assert (
            admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"ascend-910c": 99.0}}).status_code
            == 200
        )
        after = c.get("/v1/usage").json()["bills"][0]
        assert after["cost"] == pytest.approx(before["cost"])  # the past run keeps its price
        r = admin.put("/v1/prices", json={"currency": "USD", "card_hour": {"ascend-910c": 1.0}})
        assert r.status_code == 422 and "currency" in r.text


def test_the_operator_cannot_be_locked_out(server):
    env = {**os.environ, "WANKA_HOME": str(server.home)}
    with server.client(server.admin_token) as admin:
        tokens = [t for t in admin.get("/v1/tokens").json() if t["user"] == "admin" and not t["revoked_at"]]
        for t in tokens[1:]:
            admin.delete(f"/v1/tokens/{t['id']}")
        r = admin.delete(f"/v1/tokens/{tokens[0]['id']}")
        assert r.status_code == 409 and "last working admin token" in r.text
        assert admin.get("/v1/whoami").status_code == 200
        r = admin.post("/v1/users/admin/disable")
        assert r.status_code == 409
    # with local access to the database, an operator can always get a new admin token
    out = subprocess.run(
        [PY, "-m", "wanka.cli.main", "db", "admin-token", "--database", server.database],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    recovery = out.stdout.strip()
    assert recovery.startswith("wk_")
    with server.client(recovery) as again:
        assert again.get("/v1/whoami").json()["role"] == "admin"
        listed = again.get("/v1/tokens").json()
        mine = next(t for t in listed if t["label"] == "recovery token" and not t["revoked_at"])
        assert again.delete(f"/v1/tokens/{mine['id']}").status_code == 200  # no longer the last


def test_tokens_expire(server, member):
    with server.client(member) as c:
        r = c.post("/v1/users/inputs-user/tokens", json={"label": "short", "expires_in_s": 1})
        assert r.status_code == 201 and r.json()["expires_at"] is not None
        short = r.json()["token"]
    with server.client(short) as s:
        wait_for(lambda: s.get("/v1/whoami").status_code == 401, timeout=10)
        assert "expired" in s.get("/v1/whoami").text
    with server.client(member) as c:
        r = c.post(
            "/v1/users/inputs-user/tokens",
            content=b'{"expires_in_s": Infinity}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422 and "expires_in_s" in r.text


def test_a_disabled_tenant_loses_access_and_its_jobs_but_keeps_its_bills(server, tenants):
    token = tenants["lab-gone"]
    with server.client(server.admin_token) as admin, server.client(token) as c:
        sleeper = submit(c, command=[PY, "-c", "import time; print('up', flush=True); time.sleep(600)"])
        wait_for(lambda: c.get(f"/v1/jobs/{sleeper}").json()["state"] == "running")
        r = admin.post("/v1/tenants/lab-gone/disable")
        assert r.status_code == 200 and r.json()["disabled"]
        r = c.get("/v1/whoami")
        assert r.status_code == 401 and "tenant lab-gone is disabled" in r.text
        job = wait_for(
            lambda: (j := admin.get(f"/v1/jobs/{sleeper}").json())["state"] == "cancelled" and j, timeout=30
        )
        assert "disabled" in job["reason"]
        r = admin.post("/v1/jobs", json={**OK, "tenant": "lab-gone"})
        assert r.status_code == 403
        bills = admin.get("/v1/usage", params={"tenant": "lab-gone"}).json()["bills"]
        assert bills and bills[0]["card_hours"] > 0  # its history stays for billing
        assert admin.post("/v1/tenants/lab-gone/enable").status_code == 200
        assert c.get("/v1/whoami").status_code == 200
