"""Quota trees over real HTTP: applying, reading, and what they allow."""

from __future__ import annotations

import time

import pytest

from tests.server.conftest import SLEEP, start_server, stop_server, wait_for
from tests.server.test_api import JOB, make_member


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-quota-home"))
    yield s
    stop_server(s)


def _tree(model: str, tenants=("q-a", "q-b")) -> dict:
    orgs = [
        {
            "name": t,
            "quota": {model: {"nominal": 8}},
            "queues": [
                {"name": f"{t}-train", "quota": {model: {"nominal": 4, "borrowing_limit": 2}}},
                {"name": f"{t}-eval", "quota": {model: {"nominal": 4}}},
            ],
        }
        for t in tenants
    ]
    return {"organisations": orgs}


def test_an_applied_tree_sets_the_queues_each_tenant_sees_and_uses(quota_server):
    a = make_member(quota_server, "q-a", "qa-user")
    b = make_member(quota_server, "q-b", "qb-user")
    with (
        quota_server.client(quota_server.admin_token) as admin,
        quota_server.client(a) as alice,
        quota_server.client(b) as bob,
    ):
        model = admin.get("/v1/nodes").json()[0]["model"]
        assert alice.put("/v1/quotas", json=_tree(model)).status_code == 403  # tenants change no quota
        r = admin.put("/v1/quotas", json=_tree(model))
        assert r.status_code == 200, r.text
        assert r.json()["queues"] == 6
        mine = {q["name"]: q for q in alice.get("/v1/queues").json()}
        assert set(mine) == {"q-a", "q-a-train", "q-a-eval"}  # nothing of q-b
        train = mine["q-a-train"]
        assert train["parent"] == "q-a" and train["leaf"] and not mine["q-a"]["leaf"]
        assert train["quota"][model] == {"nominal": 4, "borrowing_limit": 2, "lending_limit": None}
        assert {q["name"] for q in bob.get("/v1/queues").json()} == {"q-b", "q-b-train", "q-b-eval"}
        assert len(admin.get("/v1/queues").json()) == 6

        # the quota is enforced on what runs: nominal 4 + borrowing 2 = 3 two-card jobs, the 4th waits
        sleeper = {**SLEEP, "queue": "q-a-train"}
        ids = [alice.post("/v1/jobs", json=sleeper).json()["id"] for _ in range(4)]
        wait_for(lambda: [alice.get(f"/v1/jobs/{j}").json()["state"] for j in ids].count("running") == 3)
        time.sleep(0.5)  # a few more cycles: still only three
        states = [alice.get(f"/v1/jobs/{j}").json()["state"] for j in ids]
        assert states == ["running"] * 3 + ["pending"]
        waiting = {q["name"]: q["pending_jobs"] for q in alice.get("/v1/queues").json()}
        assert waiting == {"q-a": 0, "q-a-train": 1, "q-a-eval": 0}
        # a tree without the queue these jobs are in is refused while they live
        tree = _tree(model)
        tree["organisations"][0]["queues"].pop(0)
        tree["organisations"][0]["queues"][0]["quota"][model]["nominal"] = 8
        r = admin.put("/v1/quotas", json=tree)
        assert r.status_code == 422 and "q-a-train hold waiting or running jobs" in r.text
        for j in ids:
            alice.post(f"/v1/jobs/{j}/cancel")
        wait_for(lambda: all(alice.get(f"/v1/jobs/{j}").json()["state"] == "cancelled" for j in ids))
        r = alice.post("/v1/jobs", json={**JOB, "queue": "q-b-train"})
        assert r.status_code == 422 and "yours: q-a-eval, q-a-train" in r.text
        # at most nominal 4 + borrowing 2 in q-a-train, ever
        big = {**JOB, "queue": "q-a-train", "task_groups": [{"replicas": 1, "cards": 8}]}
        r = alice.post("/v1/jobs", json=big)
        assert r.status_code == 422 and "largest request that could fit: 6 cards" in r.text


@pytest.mark.parametrize(
    "change, field, says",
    [
        (
            lambda t, m: t["organisations"][0]["queues"][0].update(quota={"no-such-card": {}}),
            "quota.no-such-card",
            "known",
        ),
        (
            lambda t, m: t["organisations"].pop(),
            "organisations",
            "no top-level organisation for tenant(s) q-b",
        ),
        (lambda t, m: t["organisations"][0]["queues"][0].update(colour="red"), "colour", "unknown field"),
        (
            lambda t, m: t["organisations"][0]["quota"][m].update(nominal=2),
            "organisations",
            "exceeds its own",
        ),
    ],
)
def test_a_bad_tree_is_refused_with_the_field_and_the_tree_in_force_is_kept(
    quota_server, change, field, says
):
    with quota_server.client(quota_server.admin_token) as admin:
        admin.post("/v1/tenants", json={"name": "q-a"})
        admin.post("/v1/tenants", json={"name": "q-b"})
        model = admin.get("/v1/nodes").json()[0]["model"]
        before = admin.get("/v1/queues").json()
        tree = _tree(model)
        change(tree, model)
        r = admin.put("/v1/quotas", json=tree)
        assert r.status_code == 422, r.text
        problems = r.json()["detail"]
        assert any(field in p["field"] and says in p["message"] for p in problems), problems
        assert admin.get("/v1/queues").json() == before


def test_fair_share_standing_follows_the_weights_and_the_decayed_use():
    from wanka.core import FlavorQuota, QueueNode, QueueTree
    from wanka.core.fairshare import QueueUsage
    from wanka.server.quota_api import fair_share

    nodes = [
        QueueNode("cluster", None, {"m": FlavorQuota(16)}),
        QueueNode("lab", "cluster", {"m": FlavorQuota(8)}, weight=3.0),
        QueueNode("lab-train", "lab", {"m": FlavorQuota(4)}),
        QueueNode("lab-eval", "lab", {"m": FlavorQuota(4)}),
        QueueNode("shop", "cluster", {"m": FlavorQuota(8)}, weight=1.0),
    ]
    tree = QueueTree(nodes, ["m"])
    usage = {
        "lab-train": QueueUsage(compute=30.0),
        "lab-eval": QueueUsage(compute=10.0),
        "shop": QueueUsage(compute=60.0),
    }
    got = {tree.names[i]: f for i, f in fair_share(tree, usage).items()}
    assert got["lab"].share == pytest.approx(0.75) and got["shop"].share == pytest.approx(0.25)
    assert got["lab-train"].share == pytest.approx(0.375)
    assert got["lab"].usage == pytest.approx(0.4) and got["shop"].usage == pytest.approx(0.6)
    assert got["lab"].factor == pytest.approx(2 ** (-0.4 / 0.75))  # under its share: ahead
    assert got["shop"].factor == pytest.approx(2 ** (-0.6 / 0.25))  # far over: behind
    assert got["lab-train"].usage == pytest.approx(0.3)
    idle = {tree.names[i]: f for i, f in fair_share(tree, {}).items()}
    assert all(f.usage == 0 and f.factor == 1.0 for f in idle.values())


def test_the_queues_say_where_a_tenant_stands_in_fair_share_once_it_used_cards(quota_server):
    token = make_member(quota_server, "fs-a", "fs-ann")
    with quota_server.client(token) as c:
        r = c.post("/v1/jobs", json=SLEEP)
        assert r.status_code == 201, r.text
        wait_for(lambda: c.get(f"/v1/jobs/{r.json()['id']}").json()["state"] == "running", 30)
        standing = wait_for(
            lambda: [
                q["fair_share"]
                for q in c.get("/v1/queues").json()
                if q["name"] == "fs-a" and q["fair_share"]["usage"] > 0
            ],
            30,
        )[0]
        assert 0 < standing["share"] <= 1 and 0 < standing["factor"] < 1
        c.post(f"/v1/jobs/{r.json()['id']}/cancel")


def test_fair_share_standing_survives_a_server_restart(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        token = make_member(server, "fs-r", "fs-rae")
        with server.client(token) as c:
            job_id = c.post("/v1/jobs", json=SLEEP).json()["id"]
            wait_for(
                lambda: [
                    q for q in c.get("/v1/queues").json() if q["name"] == "fs-r" and q["fair_share"]["usage"]
                ],
                30,
            )
            c.post(f"/v1/jobs/{job_id}/cancel")
            wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled", 30)
    finally:
        stop_server(server)
    server = start_server(tmp_path / "home")  # the same database: a restart, or a standby taking over
    try:
        with server.client(token) as c:
            [queue] = [q for q in c.get("/v1/queues").json() if q["name"] == "fs-r"]
            assert queue["fair_share"]["usage"] == pytest.approx(1.0)  # the only use on record
            assert queue["fair_share"]["factor"] < 1.0
    finally:
        stop_server(server)
