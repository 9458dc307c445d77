"""Nodes, cluster status and Prometheus metrics over real HTTP."""

from __future__ import annotations

import os

from tests.server.conftest import SLEEP, start_server, stop_server, wait_for
from tests.server.test_api import JOB, make_member


def test_admins_drain_and_undrain_nodes_and_the_drain_survives_a_restart(tmp_path):
    server = start_server(tmp_path)
    try:
        member = make_member(server, "drain-lab", "drain-user")
        with server.client(server.admin_token) as admin, server.client(member) as user:
            nodes = user.get("/v1/nodes").json()
            assert nodes and all(n["state"] == "up" for n in nodes)
            # each node's CPUs and memory, as the local backend shares out this machine's
            share = max(1, (os.cpu_count() or 1) // len(nodes))
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30 // len(nodes)
            assert all((n["cpus"], n["memory_gib"]) == (share, max(1, memory)) for n in nodes)
            name, cards = nodes[0]["name"], nodes[0]["cards"]
            before = user.get("/v1/cluster").json()
            assert user.post(f"/v1/nodes/{name}/drain", json={}).status_code == 403
            r = admin.post("/v1/nodes/no-such-node/drain", json={})
            assert r.status_code == 404 and "GET /v1/nodes" in r.json()["detail"]
            r = admin.post(f"/v1/nodes/{name}/drain", json={"reason": "ECC errors"})
            assert r.status_code == 200, r.text
            assert (r.json()["state"], r.json()["reason"]) == ("draining", "ECC errors")
            after = user.get("/v1/cluster").json()
            assert after["cards_by_state"]["draining"] == before["cards_by_state"]["draining"] + cards
            assert after["cards_by_state"]["up"] == before["cards_by_state"]["up"] - cards
    finally:
        stop_server(server)
    server = start_server(tmp_path)  # same home, same database
    try:
        with server.client(server.admin_token) as admin:
            node = next(n for n in admin.get("/v1/nodes").json() if n["name"] == name)
            assert node["state"] == "draining"
            assert admin.get("/v1/cluster").json()["cards_by_state"]["draining"] >= cards
            assert admin.post(f"/v1/nodes/{name}/undrain").json()["state"] == "up"
    finally:
        stop_server(server)


def test_a_job_waiting_for_cards_a_drained_node_holds_is_told_so(tmp_path):
    """Hostile review: a job that could start only on a drained node was told "no nodes have room
    now", as if the cluster were merely busy."""
    server = start_server(tmp_path, ("--virtual-cards", "4", "--virtual-nodes", "2"))
    try:
        member = make_member(server, "drained-lab", "drained-user")
        with server.client(server.admin_token) as admin, server.client(member) as user:
            name = user.get("/v1/nodes").json()[1]["name"]
            assert admin.post(f"/v1/nodes/{name}/drain", json={"reason": "ECC errors"}).status_code == 200
            both = {**JOB, "task_groups": [{"replicas": 2, "cards": 2}]}  # a node each
            r = user.post("/v1/jobs", json=both)
            assert r.status_code == 201, r.text  # a drain can be undone: it is not refused
            jid = r.json()["id"]

            def reason() -> str:
                return user.get(f"/v1/jobs/{jid}").json().get("reason") or ""

            wait_for(lambda: "no nodes have room now" in reason())
            assert f"(1 node draining or down: {name})" in reason()
            admin.post(f"/v1/nodes/{name}/undrain")
            wait_for(lambda: user.get(f"/v1/jobs/{jid}").json()["state"] != "pending")
    finally:
        stop_server(server)


def test_cluster_status_shows_a_member_only_its_own_tenant(server):
    a = make_member(server, "status-a", "status-alice")
    b = make_member(server, "status-b", "status-bob")
    with server.client(a) as alice, server.client(b) as bob, server.client(server.admin_token) as admin:
        mine = [alice.post("/v1/jobs", json=SLEEP).json()["id"] for _ in range(2)]
        theirs = bob.post("/v1/jobs", json=SLEEP).json()["id"]
        wait_for(lambda: all(alice.get(f"/v1/jobs/{j}").json()["state"] == "running" for j in mine))
        wait_for(lambda: bob.get(f"/v1/jobs/{theirs}").json()["state"] == "running")
        seen_by_a = alice.get("/v1/cluster").json()
        assert seen_by_a["allocated_by_tenant"] == {"status-a": 4} and seen_by_a["allocated"] == 4
        assert bob.get("/v1/cluster").json()["allocated_by_tenant"] == {"status-b": 2}
        everyone = admin.get("/v1/cluster").json()
        assert everyone["allocated_by_tenant"] == {"status-a": 4, "status-b": 2}
        assert everyone["cards"] == sum(everyone["cards_by_state"].values())
        for j in mine:
            alice.post(f"/v1/jobs/{j}/cancel")
        bob.post(f"/v1/jobs/{theirs}/cancel")
        wait_for(lambda: admin.get("/v1/cluster").json()["allocated"] == 0)


def test_pending_counts_are_per_tenant(server, drained):
    a = make_member(server, "wait-a", "wait-alice")
    b = make_member(server, "wait-b", "wait-bob")
    with server.client(a) as alice, server.client(b) as bob:
        for _ in range(3):
            assert alice.post("/v1/jobs", json=JOB).status_code == 201
        assert bob.post("/v1/jobs", json=JOB).status_code == 201
        assert alice.get("/v1/cluster").json()["pending_jobs"] == 3
        assert bob.get("/v1/cluster").json()["pending_jobs"] == 1


def test_metrics_are_prometheus_text_for_admins_only(server):
    token = make_member(server, "metrics-lab", "metrics-user")
    with server.client(token) as user, server.client(server.admin_token) as admin:
        running = user.post("/v1/jobs", json=SLEEP).json()["id"]
        wait_for(lambda: user.get(f"/v1/jobs/{running}").json()["state"] == "running")
        big = {**SLEEP, "task_groups": [{"replicas": 1, "cards": 8}]}
        waiting = [user.post("/v1/jobs", json=big).json()["id"] for _ in range(2)]
        wait_for(lambda: user.get(f"/v1/jobs/{waiting[-1]}").json()["queue_position"] is not None)
        assert user.get("/metrics").status_code == 403
        assert server.client().get("/metrics").status_code in (401, 403)
        r = admin.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        lines = r.text.splitlines()
        assert 'wanka_jobs_pending{queue="metrics-lab"} 2.0' in lines
        assert 'wanka_cards_allocated{model="ascend-910c",tenant="metrics-lab"} 2.0' in lines
        assert any(line.startswith('wanka_cards{model="') and 'state="up"' in line for line in lines)
        cycles = next(line for line in lines if line.startswith("wanka_cycle_seconds_count"))
        assert float(cycles.split()[-1]) >= 1
        assert any(line.startswith('wanka_cycle_decisions_bucket{le="1.0"}') for line in lines)
        starts = next(line for line in lines if line.startswith('wanka_decisions_total{kind="start"}'))
        assert float(starts.split()[-1]) >= 1
        for j in [running, *waiting]:
            user.post(f"/v1/jobs/{j}/cancel")
