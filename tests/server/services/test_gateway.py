"""The gateway as tenants and attackers meet it: who may call a service, what reaches a replica,
streams and WebSockets relayed as they come, refusals that say why, and the services API's own
isolation and input checks."""

from __future__ import annotations

import json
import os
import sys

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.server.conftest import wait_for
from tests.server.services.helpers import REPLICA_APP, apply, show, wait_replicas
from tests.server.test_api import make_member

ECHO = {
    "name": "echo",
    "command": REPLICA_APP,
    "cards": 0,
    "readiness": {"path": "/ready", "interval_s": 0.3},
}


@pytest.fixture(scope="module")
def tenants(server):
    """Two tenants' members, and the echo service of the first, ready."""
    alpha = make_member(server, "alpha", "alpha-dev")
    beta = make_member(server, "beta", "beta-dev")
    with server.client(alpha) as c:
        apply(c, ECHO)
        wait_replicas(c, "echo", ready=1, total=1)
    return alpha, beta


def _gw(server, token: str | None = None, **kw) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.gateway, headers=headers, timeout=30, **kw)


def test_only_the_owner_tenant_and_those_it_shares_with_get_through(server, tenants):
    alpha, beta = tenants
    with _gw(server) as anyone, _gw(server, alpha) as owner, _gw(server, beta) as other:
        assert owner.get("/services/alpha/echo/headers").status_code == 200
        r = anyone.get("/services/alpha/echo/headers")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert (
            anyone.get(
                "/services/alpha/echo/headers", headers={"Authorization": "Bearer wk_nope"}
            ).status_code
            == 401
        )
        r = other.get("/services/alpha/echo/headers")
        assert r.status_code == 403 and "not shared with beta" in r.json()["detail"]
        assert other.get("/services/alpha/nosuch/x").status_code == 404
        # the owner opens it to beta: no new replicas, beta gets in
        with server.client(alpha) as c:
            s = apply(c, {**ECHO, "shared_with": ["beta"]})
            assert s["generation"] == 1
        wait_for(lambda: other.get("/services/alpha/echo/headers").status_code == 200, 10)
        # and to the public
        with server.client(alpha) as c:
            apply(c, {**ECHO, "shared_with": [], "auth": False})
        wait_for(lambda: anyone.get("/services/alpha/echo/headers").status_code == 200, 10)
        with server.client(alpha) as c:
            apply(c, ECHO)
        wait_for(lambda: anyone.get("/services/alpha/echo/headers").status_code == 401, 10)
        wait_for(lambda: other.get("/services/alpha/echo/headers").status_code == 403, 10)


def test_a_replica_never_sees_the_callers_wanka_token_or_console_cookie(server, tenants):
    alpha, beta = tenants
    with server.client(alpha) as c:
        apply(c, {**ECHO, "shared_with": ["beta"]})
    try:
        seen = _headers_seen_by_beta(server, beta)
    finally:
        with server.client(alpha) as c:
            apply(c, ECHO)
    headers = seen["headers"]
    assert "authorization" not in headers
    assert beta not in json.dumps(seen)
    assert "wks_stolen" not in json.dumps(seen) and headers["cookie"] == "app=kept"
    assert headers["x-forwarded-for"] == "127.0.0.1"  # what the gateway saw, not what was claimed
    assert headers["x-forwarded-prefix"] == "/services/alpha/echo"
    assert seen["path"] == "/headers"


def _headers_seen_by_beta(server, beta: str) -> dict:
    with _gw(server, beta) as other:
        wait_for(lambda: other.get("/services/alpha/echo/headers").status_code == 200, 10)
        r = other.get(
            "/services/alpha/echo/headers?x=1",
            headers={
                "Cookie": "wanka_session=wks_stolen; app=kept",
                "X-Forwarded-For": "10.9.9.9",
                "X-Forwarded-Prefix": "/elsewhere",
            },
        )
    assert r.status_code == 200, r.text
    return r.json()


def test_server_sent_events_and_websockets_pass_through_as_they_come(server, tenants):
    alpha, _ = tenants
    # the replica sends each event after the first only once the client, holding the one before,
    # asks for it: events gathered until the stream ends would never be asked for ("never-asked")
    with (
        _gw(server, alpha) as owner,
        _gw(server, alpha) as asker,
        owner.stream("GET", "/services/alpha/echo/sse") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        data = []
        for line in r.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
                if len(data) < 3:
                    assert asker.get("/services/alpha/echo/sse/next").status_code == 200
    assert data == ["0", "1", "2"]
    url = server.gateway.replace("http", "ws") + "/services/alpha/echo/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {alpha}"}) as ws:
        for word in ("hello", "wanka"):
            ws.send(word)
            assert ws.recv(timeout=10) == word.upper()
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": f"Bearer {tenants[1]}"})
    assert refused.value.response.status_code == 403


def test_a_service_whose_replicas_never_get_ready_answers_504_saying_why(server, tenants, tmp_path):
    alpha, _ = tenants
    flag = tmp_path / "not-ready"
    flag.write_text("1")
    flag.parent.chmod(0o755)
    spec = {**ECHO, "name": "stuck", "env": {"NOT_READY": str(flag)}, "wake_timeout_s": 2}
    with server.client(alpha) as c:
        apply(c, spec)
        wait_for(
            lambda: show(c, "stuck")["replicas"] and show(c, "stuck")["replicas"][0]["state"] == "running", 60
        )
    with _gw(server, alpha) as owner:
        r = owner.get("/services/alpha/stuck/headers")
        assert r.status_code == 504
        assert "became ready within 2 s (wake_timeout_s)" in r.json()["detail"]
        flag.unlink()  # now its probe passes
        wait_for(lambda: owner.get("/services/alpha/stuck/headers").status_code == 200, 30)
    with server.client(alpha) as c:
        assert c.delete("/v1/services/stuck").status_code == 200
        wait_for(lambda: c.get("/v1/services/stuck").status_code == 404, 60)


def test_each_service_has_its_requests_and_latency_in_metrics(server, tenants):
    alpha, _ = tenants
    with _gw(server, alpha) as owner:
        for _ in range(3):
            assert owner.get("/services/alpha/echo/headers").status_code == 200
    with server.client(server.admin_token) as admin:
        text = admin.get("/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("wanka_service_requests_total") and 'service="echo"' in ln and 'code="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert 'wanka_service_request_duration_seconds_count{service="echo",tenant="alpha"}' in text


def test_another_tenant_can_neither_see_nor_change_nor_delete_a_service(server, tenants):
    alpha, beta = tenants
    with server.client(beta) as other:
        assert other.get("/v1/services/echo").status_code == 404
        assert other.delete("/v1/services/echo").status_code == 404
        assert [s["name"] for s in other.get("/v1/services").json()] == []
        r = other.put("/v1/services", json={**ECHO, "tenant": "alpha"})
        assert r.status_code == 403
        assert other.get("/v1/services", params={"tenant": "alpha"}).status_code == 403
    with server.client(alpha) as c:
        assert show(c, "echo")["spec"]["tenant"] == "alpha"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"replicas": {"min": 3, "max": 2}}, "replicas"),
        ({"replicas": {"min": 1, "max": 4}}, "max"),  # above min needs scaling
        ({"env": {"PORT": "80"}}, "PORT"),
        ({"readiness": {"path": "no-slash"}}, "readiness.path"),
        ({"scaling": {"target": 0}, "replicas": {"min": 1, "max": 2}}, "scaling.target"),
        ({"replicas": {"min": 1, "max": 1000}}, "replicas.max"),
        ({"port": 8080}, "port"),
        ({"command": []}, "command"),
        ({"shared_with": ["a b"]}, "shared_with"),
        ({"queue": "not-mine"}, "queue"),
    ],
)
def test_a_bad_spec_gets_422_naming_the_field_and_nothing_is_stored(server, tenants, change, field):
    alpha, _ = tenants
    with server.client(alpha) as c:
        before = [s["name"] for s in c.get("/v1/services").json()]
        r = c.put("/v1/services", json={**ECHO, "name": "bad", **change})
        assert r.status_code == 422, r.text
        assert field in r.text
        assert [s["name"] for s in c.get("/v1/services").json()] == before


def test_a_new_service_never_inherits_a_deleted_ones_history_or_id(server, tenants):
    """SQLite reuses the largest rowid once its row is gone; a service's id must never be reused
    (its events and its replicas' jobs would pass to whoever comes next, another tenant even)."""
    alpha, beta = tenants
    with server.client(alpha) as c:
        apply(c, {**ECHO, "name": "short-lived"})
        old_events = {(e["time"], e["message"]) for e in show(c, "short-lived")["events"]}
        assert c.delete("/v1/services/short-lived").status_code == 200
        wait_for(lambda: c.get("/v1/services/short-lived").status_code == 404, 60)
    with server.client(beta) as other:
        s = apply(other, {**ECHO, "name": "short-lived"})
        assert s["replicas"] == [] or all(r["generation"] == 1 for r in s["replicas"])
        # The keeper may already have submitted the first replica when the answer is read, so the
        # history is judged by where it starts and what it holds, not by its length.
        events = [(e["time"], e["message"]) for e in s["events"]]
        assert events[0][1].startswith("applied by beta-dev"), events
        assert all(t >= events[0][0] for t, _ in events), events
        assert not old_events & set(events)
        assert not [m for _, m in events if "applied by alpha" in m or "generation 2" in m], events
        assert other.delete("/v1/services/short-lived").status_code == 200


def test_sharing_with_a_tenant_that_does_not_exist_is_refused(server, tenants):
    alpha, _ = tenants
    with server.client(alpha) as c:
        r = c.put("/v1/services", json={**ECHO, "name": "lonely", "shared_with": ["nosuch"]})
        assert r.status_code == 422 and "no tenant nosuch" in r.text
        assert c.get("/v1/services/lonely").status_code == 404


def test_a_service_sets_no_cookie_for_the_host_and_registers_no_service_worker(server, tenants):
    """Every tenant's services share the gateway's host: a cookie one sets would reach the
    console and the others, a service worker would watch them all."""
    alpha, _ = tenants
    with _gw(server, alpha) as owner:
        r = owner.get("/services/alpha/echo/cookie")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        assert r.headers["content-security-policy"].startswith("sandbox")
        r = owner.get("/services/alpha/echo/headers", headers={"Service-Worker": "script"})
        assert r.status_code == 403


def test_a_request_body_sent_too_slowly_is_refused_and_frees_the_connection(server, tenants):
    import socket
    import time as clock

    alpha, _ = tenants
    port = int(server.gateway.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            b"POST /services/alpha/echo/headers HTTP/1.1\r\nhost: x\r\n"
            + f"authorization: Bearer {alpha}\r\ncontent-length: 100\r\n\r\nx".encode()
        )
        started = clock.monotonic()
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert clock.monotonic() - started < 30  # the body's gap limit (10 s), not the client's patience


@pytest.mark.skipif(os.geteuid() != 0, reason="tenants have Unix accounts of their own only under root")
def test_another_tenants_task_cannot_reach_a_replica_past_the_gateway(server, tenants):
    """On one machine every task shares the loopback: a replica there listens on a Unix socket in
    its job's own directory, which no other tenant's account may enter."""
    alpha, beta = tenants
    with server.client(alpha) as c:
        job = show(c, "echo")["replicas"][0]["job"]
    from wanka.backends.isolation import home_digest
    from wanka.backends.local import socket_root

    sockets = list((socket_root() / home_digest(server.home) / str(job)).glob("replica-*.sock"))
    assert sockets, "the replica listens on a socket in its job's directory"
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(sockets[0])!r}); print('CONNECTED')\n"
        "except OSError as e:\n"
        "    print('REFUSED', e.errno)\n"
    )
    spec = {"name": "snoop", "task_groups": [{"cards": 0}], "command": [sys.executable, "-c", probe]}
    with server.client(beta) as other:
        snoop = other.post("/v1/jobs", json=spec).json()["id"]
        wait_for(lambda: other.get(f"/v1/jobs/{snoop}").json()["state"] in ("succeeded", "failed"), 60)
        out = other.get(f"/v1/jobs/{snoop}/logs").json()["data"]
    assert "REFUSED" in out and "CONNECTED" not in out, out
