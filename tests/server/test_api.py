"""The REST API over real HTTP: tenants and tokens, submission, isolation, bad input."""

from __future__ import annotations

import json
import stat

import pytest
from sqlalchemy import create_engine, select

from wanka.server.tables import Base


def make_member(server, tenant: str, user: str) -> str:
    with server.client(server.admin_token) as admin:
        if admin.post("/v1/tenants", json={"name": tenant}).status_code not in (201, 409):
            raise AssertionError("tenant")
        r = admin.post("/v1/users", json={"name": user, "role": "member", "tenant": tenant})
        assert r.status_code == 201, r.text
        r = admin.post(f"/v1/users/{user}/tokens", json={"label": "tests"})
        assert r.status_code == 201, r.text
        return r.json()["token"]


JOB = {"name": "train", "task_groups": [{"replicas": 1, "cards": 2}], "command": ["python", "-c", "print(1)"]}


def test_first_start_writes_the_admin_token_for_its_owner_only_and_stores_only_hashes(server):
    token_file = server.home / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    with server.client(server.admin_token) as admin:
        assert admin.get("/v1/whoami").json()["role"] == "admin"
    member_token = make_member(server, "hashcheck", "hash-user")
    engine = create_engine(server.database)
    try:  # every cell of every table, as text: no token anywhere
        with engine.connect() as conn:
            stored = " ".join(
                str(cell)
                for table in Base.metadata.sorted_tables
                for row in conn.execute(select(table))
                for cell in row
            )
    finally:
        engine.dispose()
    assert "hash-user" in stored  # the dump did read the tables
    assert server.admin_token not in stored and member_token not in stored
    assert server.admin_token[3:20] not in stored  # nor a long piece of one


def test_a_member_submits_lists_and_cancels_own_jobs_with_events(server, drained):
    token = make_member(server, "lab-a", "alice")
    with server.client(token) as alice:
        r = alice.post("/v1/jobs", json=JOB)
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["tenant"] == "lab-a" and job["queue"] == "lab-a" and job["state"] == "pending"
        assert job["cards"] == 2 and job["spec"]["command"] == ["python", "-c", "print(1)"]
        listed = alice.get("/v1/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        r = alice.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
        events = alice.get(f"/v1/jobs/{job['id']}/events").json()
        assert [e["state"] for e in events] == ["pending", "cancelled"]
        assert "alice" in events[-1]["reason"]
        assert alice.get(f"/v1/jobs/{job['id']}/logs").status_code == 409  # never started: no output


def test_tenants_never_see_or_touch_each_others_jobs(server, drained):
    a = make_member(server, "iso-a", "iso-alice")
    b = make_member(server, "iso-b", "iso-bob")
    with server.client(a) as alice, server.client(b) as bob:
        job = alice.post("/v1/jobs", json=JOB).json()
        jid = job["id"]
        assert bob.get(f"/v1/jobs/{jid}").status_code == 404
        assert bob.get(f"/v1/jobs/{jid}/events").status_code == 404
        assert bob.post(f"/v1/jobs/{jid}/cancel").status_code == 404
        assert bob.get(f"/v1/jobs/{jid}/logs").status_code == 404
        assert all(j["tenant"] == "iso-b" for j in bob.get("/v1/jobs").json()["jobs"])
        assert jid not in [j["id"] for j in bob.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]]
        assert bob.post("/v1/jobs", json={**JOB, "tenant": "iso-a"}).status_code == 403
        assert bob.post("/v1/jobs", json={**JOB, "queue": "iso-a"}).status_code == 422
        assert bob.post("/v1/tenants", json={"name": "evil"}).status_code == 403
        assert bob.post("/v1/users/iso-alice/tokens", json={}).status_code == 404
        assert alice.get(f"/v1/jobs/{jid}").json()["state"] == "pending"  # untouched


def test_a_revoked_token_stops_working_at_once(server):
    token = make_member(server, "rev", "rev-user")
    with server.client(token) as user:
        assert user.get("/v1/jobs").status_code == 200
        mine = user.get("/v1/tokens").json()
        assert [t["user"] for t in mine] == ["rev-user"] and "token" not in mine[0]
        assert user.delete(f"/v1/tokens/{mine[0]['id']}").status_code == 200
        assert user.get("/v1/jobs").status_code == 401
    with server.client("wk_not-a-token") as nobody:
        assert nobody.get("/v1/jobs").status_code == 401
    with server.client() as anonymous:
        assert anonymous.get("/v1/jobs").status_code == 401


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"task_groups": [{"cards": 2, "accelerators": ["h900"]}]}, "accelerators", "ascend-910c"),
        ({"task_groups": [{"replicas": 200, "cards": 8}]}, "task_groups", "largest request that could fit"),
        ({"priority_class": "urgent"}, "priority_class", "critical"),
        ({"env": {"WANKA_JOB_ID": "x"}}, "env", "set by wanka"),
        ({"task_groups": []}, "task_groups", "at least 1"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"colour": "blue"}, "colour", "task_groups"),  # the fields accepted there
        ({"task_groups": [{"cards": 1, "cardz": 2}]}, "cardz", "accepted here: accelerators, cards"),
        ({"command": []}, "command", "argv"),
        ({"restart": {"max": -1}}, "restart.max", "greater than or equal to 0"),
        ({"workdir": "relative/dir"}, "workdir", "^/"),
        # counts are JSON integers: lax parsing took "1" and true as 1 (hostile review)
        ({"task_groups": [{"replicas": 1, "cards": "1"}]}, "cards", "valid integer"),
        ({"task_groups": [{"replicas": True, "cards": 1}]}, "replicas", "valid integer"),
        ({"task_groups": [{"cards": 1, "accelerators": ["x" * 100_000]}]}, "accelerators", "at most 64"),
    ],
)
def test_bad_input_names_the_field_and_what_is_accepted_and_stores_nothing(server, change, field, says):
    token = make_member(server, "bad", f"bad-{abs(hash(str(change))) % 10**8}")
    with server.client(token) as user:
        before = len(user.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        r = user.post("/v1/jobs", json={**JOB, **change})
        assert r.status_code == 422
        assert field in r.text and says in r.text
        assert len(user.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


@pytest.mark.parametrize(("field", "token"), [("time_limit_s", "NaN"), ("checkpoint_interval_s", "Infinity")])
def test_a_time_that_is_not_finite_is_named_as_such(server, field, token):
    """Python's JSON reads NaN and Infinity: the refusal says the number must be finite, not that
    it is too large (hostile review)."""
    member = make_member(server, "finite", f"finite-{len(field)}")
    body = json.dumps(JOB)[:-1] + f', "{field}": {token}}}'
    with server.client(member) as user:
        r = user.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and field in r.text and "finite number" in r.text, r.text


def test_listing_pages_newest_first_and_filters_by_state(server, drained):
    token = make_member(server, "pages", "pager")
    with server.client(token) as user:
        ids = [user.post("/v1/jobs", json=JOB).json()["id"] for _ in range(5)]
        user.post(f"/v1/jobs/{ids[0]}/cancel")
        first = user.get("/v1/jobs", params={"limit": 2}).json()
        second = user.get("/v1/jobs", params={"limit": 2, "before_id": first["next_before_id"]}).json()
        third = user.get("/v1/jobs", params={"limit": 2, "before_id": second["next_before_id"]}).json()
        got = [j["id"] for page in (first, second, third) for j in page["jobs"]]
        assert got == sorted(ids, reverse=True) and third["next_before_id"] is None
        pending = user.get("/v1/jobs", params={"state": "pending"}).json()["jobs"]
        assert sorted(j["id"] for j in pending) == sorted(ids[1:])
        assert user.get("/v1/jobs", params={"state": "sleeping"}).status_code == 422


def test_the_embedded_database_runs_in_wal_mode(server):
    import sqlite3

    if not server.embedded:
        pytest.skip("WAL is the embedded SQLite database's mode")

    conn = sqlite3.connect(server.home / "wanka.db")
    try:  # WAL is a property of the file: set by the server, seen by any other connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_gang_too_large_for_the_cluster_is_refused_though_a_smaller_one_of_its_shape_was_taken(server):
    """Verdicts are shared by job shape; a CPU-only gang of 40 one-CPU tasks (the test cluster has
    32 CPUs) is not the shape of one such task, though both ask for 0 cards: it is refused even
    after the single task was accepted."""
    token = make_member(server, "cpu-only", "cpu-user")
    small = {**JOB, "task_groups": [{"replicas": 1, "cards": 0, "cpus": 1}]}
    large = {**JOB, "task_groups": [{"replicas": 40, "cards": 0, "cpus": 1}]}
    with server.client(token) as user:
        r = user.post("/v1/jobs", json=small)
        assert r.status_code == 201, r.text
        user.post(f"/v1/jobs/{r.json()['id']}/cancel")
        r = user.post("/v1/jobs", json=large)
        assert r.status_code == 422 and "task_groups" in r.text and "40 tasks at once" in r.text, r.text
