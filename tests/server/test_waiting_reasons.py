"""Why a waiting job has not started (Slurm's Reason column), through a real server: over its
queue's quota, or no node with room; never a word about another tenant's jobs."""

from __future__ import annotations

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import PY, ended, job_state, submit

SLEEP = [PY, "-c", "import time; time.sleep(600)"]


def _reason(c, job_id: int) -> str:
    job = job_state(c, job_id)
    return job["state"] == "pending" and job["reason"]


def test_a_waiting_job_says_whether_it_waits_for_quota_or_for_cards(tmp_path):
    s = start_server(tmp_path / "home", ("--virtual-cards", "8", "--virtual-nodes", "2"))
    try:
        a_tok, b_tok = make_member(s, "wr-a", "wr-a-user"), make_member(s, "wr-b", "wr-b-user")
        with s.client(s.admin_token) as admin:
            model = admin.get("/v1/nodes").json()[0]["model"]
            orgs = [
                {"name": "wr-a", "quota": {model: {"nominal": 2}}, "queues": [
                    {"name": "wr-a-q", "quota": {model: {"nominal": 2, "borrowing_limit": 0}}}]},
                {"name": "wr-b", "quota": {model: {"nominal": 6}}, "queues": [
                    {"name": "wr-b-q", "quota": {model: {"nominal": 6, "borrowing_limit": 0}}}]},
            ]  # fmt: skip
            r = admin.put("/v1/quotas", json={"organisations": orgs})
            assert r.status_code == 200, r.text
        with s.client(a_tok) as a, s.client(b_tok) as b:
            a1 = submit(a, command=SLEEP, task_groups=[{"replicas": 1, "cards": 2}])
            wait_for(lambda: job_state(a, a1)["state"] == "running")
            a2 = submit(a, command=SLEEP, task_groups=[{"replicas": 1, "cards": 1}])
            why = wait_for(lambda: _reason(a, a2) if "quota" in (_reason(a, a2) or "") else None)
            assert why.startswith("waiting for quota: queue wr-a-q is at its limit"), why

            # one card of B's on each node: no node has the four a single task asks for
            b1 = submit(b, command=SLEEP, task_groups=[{"replicas": 2, "cards": 1, "tasks_per_node": 1}])
            wait_for(lambda: job_state(b, b1)["state"] == "running")
            b2 = submit(b, command=SLEEP, task_groups=[{"replicas": 1, "cards": 4}])
            why = wait_for(lambda: _reason(b, b2) if "cards" in (_reason(b, b2) or "") else None)
            assert why.startswith("waiting for cards"), why
            assert "wr-a" not in why and str(a1) not in why  # nothing of the other tenant's

            a.post(f"/v1/jobs/{a1}/cancel")
            wait_for(lambda: job_state(a, a2)["state"] == "running")
            b.post(f"/v1/jobs/{b1}/cancel")
            wait_for(lambda: job_state(b, b2)["state"] == "running")
            for c, j in ((a, a2), (b, b2)):
                c.post(f"/v1/jobs/{j}/cancel")
                ended(c, j)
    finally:
        stop_server(s)
