"""Notebooks: a real Jupyter server started as a tenant's task, reached through the gateway (by
token, and by a browser's one-time link), closed to other tenants, and culled when idle."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.server.conftest import wait_for
from tests.server.services.helpers import apply, wait_replicas
from tests.server.test_api import make_member

pytest.importorskip("jupyter_server")


def notebook(name: str, idle: float) -> dict:
    """What `wanka notebook start` applies."""
    return {
        "name": name,
        "kind": "notebook",
        "command": [sys.executable, "-m", "wanka.backends._notebook"],
        "cards": 0,
        "readiness": {"interval_s": 0.5, "timeout_s": 2},
        "idle_timeout_s": idle,
        "max_lifetime_s": 3600,
    }


@pytest.fixture(scope="module")
def members(server):
    return make_member(server, "lab", "lab-dev"), make_member(server, "rival", "rival-dev")


def test_a_notebook_answers_through_the_gateway_only_to_its_tenant_and_opens_by_link(server, members):
    mine, rival = members
    with server.client(mine) as c:
        s = apply(c, notebook("nb", idle=600))
        jupyter = s["spec"]["env"]["JUPYTER_TOKEN"]
        assert len(jupyter) >= 32
        wait_replicas(c, "nb", ready=1, total=1, timeout=120)
        link = c.post("/v1/services/nb/link").json()["url"]
    base = f"{server.gateway}/services/lab/nb"
    with httpx.Client(headers={"Authorization": f"Bearer {mine}"}, timeout=30) as owner:
        r = owner.get(f"{base}/api/status", params={"token": jupyter})
        assert r.status_code == 200 and "last_activity" in r.json()
    r = httpx.get(
        f"{base}/api/contents", params={"token": "wrong"}, headers={"Authorization": f"Bearer {mine}"}
    )
    assert r.status_code == 403  # Jupyter's own token too (a fresh client: no Jupyter cookie)
    with httpx.Client(headers={"Authorization": f"Bearer {rival}"}, timeout=30) as other:
        r = other.get(f"{base}/api/status", params={"token": jupyter})
        assert r.status_code == 403  # even with the Jupyter token: the gateway refuses another tenant
        assert other.post(f"{server.url}/v1/services/nb/link").status_code == 404
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(f"{base}/api/status", params={"token": jupyter}).status_code == 401
    # a browser signed in to the console as someone else (the rival, who was sent the link) is
    # refused, and the link stays good for its own user
    with httpx.Client(timeout=30) as browser:
        assert browser.post(f"{server.url}/login", data={"token": rival}).status_code == 303
        r = browser.get(link)
        assert r.status_code == 403 and "signed in to the wanka console" in r.text
    with httpx.Client(timeout=30) as browser:
        assert browser.get(link).status_code == 401  # signed in to nothing
    # a browser signed in as its owner: the link sets a cookie for this notebook's path only,
    # then JupyterLab
    with httpx.Client(timeout=30) as browser:
        assert browser.post(f"{server.url}/login", data={"token": mine}).status_code == 303
        r = browser.get(link)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "Path=/services/lab/nb/" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "wanka_link" not in r.headers["location"]
        r = browser.get(f"{server.gateway}{r.headers['location']}", follow_redirects=True)
        assert r.status_code == 200 and "JupyterLab" in r.text
        assert browser.get(link).status_code == 401  # once only
    with httpx.Client(timeout=30) as stranger:  # the cookie is the browser's, not the link's
        assert stranger.get(f"{base}/lab").status_code == 401


def test_an_idle_notebook_is_warned_then_culled(server, members):
    mine, _ = members
    with server.client(mine) as c:
        apply(c, notebook("idle", idle=20))
        wait_replicas(c, "idle", ready=1, total=1, timeout=120)
        seen: list[str] = []

        def gone():
            r = c.get("/v1/services/idle")
            if r.status_code == 404:
                return True
            seen[:] = [e["message"] for e in r.json()["events"]]
            return False

        wait_for(gone, 120, every=0.5)
    assert any(m.startswith("warning: idle for") for m in seen), seen
    assert any(m.startswith("culled: idle for") and "idle_timeout_s 20 s" in m for m in seen), seen


def test_a_notebook_spec_is_its_tenants_own(server, members):
    mine, _ = members
    with server.client(mine) as c:
        for change in ({"auth": False}, {"shared_with": ["rival"]}, {"replicas": {"min": 1, "max": 2}}):
            r = c.put("/v1/services", json={**notebook("bad", 60), **change})
            assert r.status_code == 422, r.text
        r = c.put("/v1/services", json={**notebook("bad", 60), "kind": "service"})
        assert r.status_code == 422 and "for notebooks" in r.text
        # a notebook runs Jupyter and nothing else: its pages are not sandboxed at the gateway
        r = c.put("/v1/services", json={**notebook("bad", 60), "command": [sys.executable, "evil.py"]})
        assert r.status_code == 422 and "leave command out" in r.text
        assert c.get("/v1/services/bad").status_code == 404
