"""Jobs really run: a real server with the local backend starts real processes, and we watch them
through the HTTP API — the contract they receive, how they end, cancel, time limits, failures and
restarts from a checkpoint, preemption with a grace period, a server restart, usage and the bill."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member

PY = sys.executable

# counts its starts in the checkpoint directory, resumes its step counter from there, saves on SIGTERM
WORKER = r"""
import os, signal, sys, time
ckpt = os.environ["WANKA_CHECKPOINT_DIR"]
with open(os.path.join(ckpt, "starts"), "a") as fh:
    fh.write(os.environ["WANKA_RUN"] + "\n")
path = os.path.join(ckpt, "step")
step = int(open(path).read()) if os.path.exists(path) else 0
print(f"run {os.environ['WANKA_RUN']} resumes at step {step}", flush=True)
def save(*_):
    with open(os.path.join(ckpt, "saved"), "a") as fh:
        fh.write(f"{step}\n")
    print(f"SIGTERM: saved step {step}", flush=True)
    sys.exit(0 if os.environ.get("EXIT_ON_TERM") == "0" else 143)
signal.signal(signal.SIGTERM, save)
steps, every = int(sys.argv[1]), float(sys.argv[2])
while step < steps:
    time.sleep(every)
    step += 1
    if os.environ["RANK"] == "0":  # rank 0 saves for the gang, as in data-parallel training
        with open(path + ".tmp", "w") as fh:
            fh.write(str(step))
        os.replace(path + ".tmp", path)
print(f"done at step {step}", flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Four virtual cards on two virtual nodes: gangs span nodes for real."""
    s = start_server(
        tmp_path_factory.mktemp("wanka-run-home"), ("--virtual-cards", "4", "--virtual-nodes", "2")
    )
    yield s
    stop_server(s)


def job_state(client, job_id: int) -> dict:
    return client.get(f"/v1/jobs/{job_id}").json()


def ended(client, job_id: int, timeout: float = 30) -> dict:
    """The job once it reached a terminal state; on timeout the failure shows its last state,
    reason and events (what a flaky run needs to be understood)."""
    last: dict = {}

    def check():
        last.update(job_state(client, job_id))
        return last["state"] in ("succeeded", "failed", "cancelled") and dict(last)

    try:
        return wait_for(check, timeout)
    except AssertionError:
        events = client.get(f"/v1/jobs/{job_id}/events").json()
        raise AssertionError(
            f"job {job_id} not ended within {timeout} s: state {last.get('state')!r}, "
            f"reason {last.get('reason')!r}, events {events!r}"
        ) from None


def log_of(client, job_id: int, task: int = 0, run: int | None = None) -> str:
    params = {"task": task, **({"run": run} if run else {})}
    r = client.get(f"/v1/jobs/{job_id}/logs", params=params)
    assert r.status_code in (200, 409), r.text  # 409: not started yet
    return r.json()["data"] if r.status_code == 200 else ""


def submit(client, **spec) -> int:
    spec.setdefault("task_groups", [{"replicas": 1, "cards": 1}])
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_gang_across_two_nodes_gets_the_contract_and_only_its_own_cards(cluster):
    user = make_member(cluster, "contract", "contract-user")
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    with cluster.client(user) as c:
        jid = submit(
            c,
            name="gang",
            task_groups=[{"replicas": 2, "cards": 2}],
            command=[PY, "-c", show],
            env={"MY_SETTING": "on"},
        )
        job = ended(c, jid)
        assert job["state"] == "succeeded", job
        envs = [json.loads(log_of(c, jid, task)) for task in (0, 1)]
    for rank, env in enumerate(envs):
        assert env["WANKA_JOB_ID"] == str(jid) and env["WANKA_TASK_INDEX"] == str(rank)
        assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == (str(rank), "2", "0")
        assert (env["NODE_RANK"], env["NNODES"]) == (str(rank), "2")  # one task per node
        assert env["MASTER_ADDR"] == "127.0.0.1" and envs[0]["MASTER_PORT"] == env["MASTER_PORT"]
        assert env["WANKA_CHECKPOINT_DIR"].endswith(f"checkpoints/{jid}")
        assert env["MY_SETTING"] == "on"
        assert "WANKA_TOKEN" not in env and "WANKA_HOME" not in env  # nothing of the server leaks
    # Ascend 910C: two dies per card, so two cards are four device ids; the nodes are separate
    assert {env["WANKA_NODE"] for env in envs} == {"local-0001", "local-0002"}
    assert [len(env["ASCEND_RT_VISIBLE_DEVICES"].split(",")) for env in envs] == [4, 4]


def test_hostile_strings_stay_inert(cluster, tmp_path):
    user = make_member(cluster, "hostile", "hostile-user")
    canary = tmp_path / "owned"
    words = [
        f"$(touch {canary})",
        f"; touch {canary}",
        f"`touch {canary}`",
        "a\nb",
        "'\"",
        f"&& touch {canary}",
    ]
    env = {"EVIL": f"$(touch {canary}); `touch {canary}`\n'\""}
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))"
    with cluster.client(user) as c:
        jid = submit(c, name=f"x; touch {canary}", command=[PY, "-c", program, *words], env=env)
        assert ended(c, jid)["state"] == "succeeded"
        assert json.loads(log_of(c, jid)) == [words, env["EVIL"]]
    assert not canary.exists()


def test_exit_codes_map_to_states_and_a_missing_program_fails_clearly(cluster):
    user = make_member(cluster, "exits", "exits-user")
    with cluster.client(user) as c:
        bad = submit(c, command=[PY, "-c", "import sys; sys.exit(3)"])
        missing = submit(c, command=["/no/such/program", "--flag"])
        job = ended(c, bad)
        assert job["state"] == "failed" and job["reason"] == "task 0 exited with code 3"
        job = ended(c, missing)
        assert job["state"] == "failed" and "exited with code 127" in job["reason"]
        assert "cannot start '/no/such/program'" in log_of(c, missing)
        events = [e["state"] for e in c.get(f"/v1/jobs/{bad}/events").json()]
        assert events == ["pending", "admitted", "running", "failed"]


def test_cancel_stops_the_whole_process_group_then_records_cancelled(cluster):
    user = make_member(cluster, "cancel", "cancel-user")
    # the task starts a grandchild; both must go
    program = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(600)']); "
        "print(p.pid, flush=True); time.sleep(600)"
    )
    with cluster.client(user) as c:
        jid = submit(c, command=[PY, "-c", program])
        grandchild = int(wait_for(lambda: log_of(c, jid).strip()))
        assert c.post(f"/v1/jobs/{jid}/cancel").status_code == 200
        job = ended(c, jid)
        assert job["state"] == "cancelled" and job["end_time"] is not None
    wait_for(lambda: not _alive(grandchild), 10)


def test_a_time_limit_is_enforced(cluster):
    user = make_member(cluster, "limits", "limits-user")
    with cluster.client(user) as c:
        jid = submit(c, command=[PY, "-c", "import time; time.sleep(600)"], time_limit_s=1)
        job = ended(c, jid)
        assert job["state"] == "failed" and "time limit of 1 s" in job["reason"]
        assert job["end_time"] - job["start_time"] < 8  # 1 s + the 2 s grace + a tick or two


def test_a_killed_task_is_restarted_and_resumes_from_its_checkpoint(cluster):
    user = make_member(cluster, "restart", "restart-user")
    with cluster.client(user) as c:
        jid = submit(c, command=[PY, "-c", WORKER, "40", "0.05"], restart={"max": 2})
        wait_for(lambda: job_state(c, jid)["state"] == "running")
        ckpt = cluster.home / "checkpoints" / str(jid)
        wait_for(lambda: (ckpt / "step").exists() and int((ckpt / "step").read_text()) >= 10)
        pid = int((cluster.home / "runs" / str(jid) / "1" / "task-0.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)  # the task dies mid-run, supervisor and all
        job = ended(c, jid)
        assert job["state"] == "succeeded" and job["runs"] == 2, job
        second = log_of(c, jid, run=2)
        resumed = int(second.split("resumes at step ")[1].split()[0])
        assert resumed >= 10 and "done at step 40" in second  # continued, not from zero
        reasons = [e["reason"] for e in c.get(f"/v1/jobs/{jid}/events").json()]
        assert any("was killed; restart 1 of 2" in r for r in reasons), reasons


def test_preemption_gives_the_victim_its_grace_period_then_requeues_it(cluster):
    user = make_member(cluster, "preempt", "preempt-user")
    whole = [{"replicas": 2, "cards": 2}]  # all four cards
    with cluster.client(user) as c:
        low = submit(
            c,
            command=[PY, "-c", WORKER, "60", "0.05"],
            task_groups=whole,
            priority_class="low",
            env={"EXIT_ON_TERM": "0"},
        )
        wait_for(lambda: job_state(c, low)["state"] == "running")
        step = cluster.home / "checkpoints" / str(low) / "step"
        wait_for(lambda: step.exists() and int(step.read_text()) >= 5)
        high = submit(c, command=[PY, "-c", "print('urgent')"], task_groups=whole, priority_class="high")
        assert ended(c, high)["state"] == "succeeded"
        job = ended(c, low, 60)
        assert job["state"] == "succeeded" and job["runs"] == 2
        states = [e["state"] for e in c.get(f"/v1/jobs/{low}/events").json()]
        assert states[:6] == ["pending", "admitted", "running", "preempted", "pending", "admitted"]
        assert "SIGTERM: saved step" in log_of(c, low, run=1)  # it had time to save
        high_start = job_state(c, high)["start_time"]
        low_events = c.get(f"/v1/jobs/{low}/events").json()
        requeued = next(e["time"] for e in low_events if e["reason"].startswith("requeued"))
        assert high_start <= requeued + 1  # the high job's processes start once the victim is gone
        assert int(log_of(c, low, run=2).split("resumes at step ")[1].split()[0]) > 0


TERM_SAYS_NO = r"""
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("TERM ignored", flush=True))
print("up", flush=True)
time.sleep(600)
"""


def test_a_job_stopped_for_its_time_limit_is_not_requeued_by_a_preemption_in_its_grace_period(cluster):
    # hostile review: a preemption during the grace period overrode the time limit and requeued it
    user = make_member(cluster, "timeout-preempt", "timeout-preempt-user")
    whole = [{"replicas": 2, "cards": 2}]
    with cluster.client(user) as c:
        low = submit(
            c,
            command=[PY, "-c", TERM_SAYS_NO],
            task_groups=whole,
            priority_class="best-effort",
            time_limit_s=1,
        )
        wait_for(lambda: "TERM ignored" in log_of(c, low))  # its time limit's stop has begun
        high = submit(c, command=[PY, "-c", "print('urgent')"], task_groups=whole, priority_class="high")
        job = ended(c, low)
        assert job["state"] == "failed" and job["reason"].startswith("time limit of 1 s reached"), job
        assert job["runs"] == 1
        assert ended(c, high)["state"] == "succeeded"
        [row] = c.get("/v1/acct", params={"job": low}).json()["jobs"]
        assert {t["state"] for t in row["tasks"]} == {"timeout"}
        states = [e["state"] for e in c.get(f"/v1/jobs/{low}/events").json()]
        assert "preempted" not in states, states


def test_a_running_elastic_job_gives_its_surplus_to_a_waiting_one_by_a_checkpointed_restart(cluster):
    """Issue 14, item 2: J1 (4 one-card tasks, at least 2) holds every card; J2 (2 tasks) arrives.
    J1 saves on SIGTERM and restarts with 2 tasks on cards it held; J2 starts on the others."""
    user = make_member(cluster, "shrink", "shrink-user")
    with cluster.client(user) as c:
        j1 = submit(
            c,
            command=[PY, "-c", WORKER, "60", "0.05"],
            task_groups=[{"replicas": 4, "min_replicas": 2, "cards": 1}],
            env={"EXIT_ON_TERM": "0"},
        )
        wait_for(lambda: job_state(c, j1)["state"] == "running")
        step = cluster.home / "checkpoints" / str(j1) / "step"
        wait_for(lambda: step.exists() and int(step.read_text()) >= 5)
        j2 = submit(c, command=[PY, "-c", "print('mine now')"], task_groups=[{"replicas": 2, "cards": 1}])
        assert ended(c, j2)["state"] == "succeeded"
        assert job_state(c, j1)["runs"] == 2
        events = c.get(f"/v1/jobs/{j1}/events").json()
        restart = next(
            e for e in events if e["state"] == "pending" and "restarts with 2 task(s)" in e["reason"]
        )
        j2_runs = next(e for e in c.get(f"/v1/jobs/{j2}/events").json() if e["state"] == "running")
        assert j2_runs["time"] >= restart["time"]  # J2's processes start once J1's old run is gone
        assert c.get(f"/v1/jobs/{j1}/logs", params={"task": 3, "run": 2}).status_code != 200  # 2 tasks now
        assert "SIGTERM: saved step" in log_of(c, j1, run=1)  # it had time to save
        assert int(log_of(c, j1, run=2).split("resumes at step ")[1].split()[0]) > 0
        assert ended(c, j1, 60)["state"] == "succeeded"


def test_waiting_jobs_show_their_position_and_estimated_start(cluster):
    user = make_member(cluster, "position", "position-user")
    whole = [{"replicas": 2, "cards": 2}]
    with cluster.client(user) as c:
        blocker = submit(
            c, command=[PY, "-c", "import time; time.sleep(600)"], task_groups=whole, time_limit_s=300
        )
        wait_for(lambda: job_state(c, blocker)["state"] == "running")
        first = submit(c, command=[PY, "-c", "print(1)"], task_groups=whole)
        second = submit(c, command=[PY, "-c", "print(2)"], task_groups=whole)
        a = wait_for(lambda: (j := job_state(c, first))["queue_position"] and j)
        b = wait_for(lambda: (j := job_state(c, second))["queue_position"] and j)
        assert (a["queue_position"], b["queue_position"]) == (1, 2)
        start = job_state(c, blocker)["start_time"]
        assert a["estimated_start"] == pytest.approx(start + 300, abs=1)
        for j in (blocker, first, second):
            c.post(f"/v1/jobs/{j}/cancel")
        for j in (blocker, first, second):
            ended(c, j)


def test_usage_and_the_bill_follow_what_ran(cluster):
    user = make_member(cluster, "billing", "billing-user")
    with cluster.client(user) as c, cluster.client(cluster.admin_token) as admin:
        assert (
            c.put("/v1/prices", json={"currency": "CNY", "card_hour": {"ascend-910c": 36.0}}).status_code
            == 403
        )
        r = admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"ascend-910c": 36.0}})
        assert r.status_code == 200, r.text
        bad = admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"h900": 1.0}})
        assert bad.status_code == 422 and "card_hour" in bad.text and "ascend-910c" in bad.text
        jid = submit(
            c, command=[PY, "-c", "import time; time.sleep(1)"], task_groups=[{"replicas": 1, "cards": 2}]
        )
        job = ended(c, jid)
        held = job["end_time"] - job["start_time"]
        usage = c.get("/v1/usage").json()
        assert [b["tenant"] for b in usage["bills"]] == ["billing"]  # its own only
        bill = usage["bills"][0]
        assert bill["card_hours"] == pytest.approx(2 * held / 3600, rel=1e-6)
        assert bill["pflop_hours"] == pytest.approx(bill["card_hours"] * 0.752, rel=0.05)
        assert bill["cost"] == pytest.approx(bill["card_hours"] * 36.0) and usage["currency"] == "CNY"
        row = usage["rows"][0]
        assert (row["queue"], row["model"]) == ("billing", "ascend-910c")
        everyone = admin.get("/v1/usage").json()
        assert "billing" in {b["tenant"] for b in everyone["bills"]}
        assert admin.get("/v1/usage", params={"month": "1999-01"}).json()["bills"] == []


# counts steps in its checkpoint directory until a file named "stop" appears there
COUNT_UNTIL_STOP = r"""
import os, time
ckpt = os.environ["WANKA_CHECKPOINT_DIR"]
with open(os.path.join(ckpt, "starts"), "a") as fh:
    fh.write(os.environ["WANKA_RUN"] + "\n")
step = 0
while not os.path.exists(os.path.join(ckpt, "stop")):
    step += 1
    with open(os.path.join(ckpt, "step.tmp"), "w") as fh:
        fh.write(str(step))
    os.replace(os.path.join(ckpt, "step.tmp"), os.path.join(ckpt, "step"))
    time.sleep(0.05)
"""

# ends when a file named "stop" appears in its checkpoint directory
UNTIL_STOP = (
    "import os, time\n"
    "stop = os.path.join(os.environ['WANKA_CHECKPOINT_DIR'], 'stop')\n"
    "print('waiting', flush=True)\n"
    "while not os.path.exists(stop):\n"
    "    time.sleep(0.05)\n"
)


def test_a_restarted_server_adopts_running_tasks_and_starts_nothing_twice(tmp_path):
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        user = make_member(server, "adopt", "adopt-user")
        with server.client(user) as c:
            jid = submit(c, command=[PY, "-c", COUNT_UNTIL_STOP])
            wait_for(lambda: job_state(c, jid)["state"] == "running")
    finally:
        stop_server(server, tasks_too=False)  # a clean stop: tasks keep running
    ckpt = tmp_path / "checkpoints" / str(jid)
    wait_for(lambda: (ckpt / "step").exists())
    step = int((ckpt / "step").read_text())
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        with server.client(user) as c:
            assert job_state(c, jid)["state"] == "running"  # it runs until told to stop
            wait_for(lambda: int((ckpt / "step").read_text()) > step)  # counting on, adopted
            (ckpt / "stop").touch()
            job = ended(c, jid)
            assert job["state"] == "succeeded" and job["runs"] == 1
        assert (ckpt / "starts").read_text().split() == ["1"]  # one start, adopted across the restart
    finally:
        stop_server(server)


# writes its pid where the test can read it, then runs until killed
PID_THEN_SLEEP = r"""
import os, time
ckpt = os.environ["WANKA_CHECKPOINT_DIR"]
with open(os.path.join(ckpt, "pid-" + os.environ["WANKA_TASK_INDEX"]), "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_job_lost_with_its_nodes_at_a_restart_stops_running_on_the_nodes_that_remain(tmp_path):
    """Hostile review: restarted on a smaller cluster, the server marked a job on a removed node
    failed but left its tasks running, and gave the cards they held on the remaining node to the
    next job (two jobs on one card)."""
    server = start_server(tmp_path, ("--virtual-cards", "4", "--virtual-nodes", "2"))
    try:
        user = make_member(server, "shrink", "shrink-user")
        with server.client(user) as c:
            jid = submit(c, task_groups=[{"replicas": 2, "cards": 2}], command=[PY, "-c", PID_THEN_SLEEP])
            wait_for(lambda: job_state(c, jid)["state"] == "running")
    finally:
        stop_server(server, tasks_too=False)  # a clean stop: tasks keep running
    ckpt = tmp_path / "checkpoints" / str(jid)
    wait_for(lambda: all((ckpt / f"pid-{t}").exists() for t in (0, 1)))
    pids = [int((ckpt / f"pid-{t}").read_text()) for t in (0, 1)]
    assert all(_alive(p) for p in pids)
    server = start_server(tmp_path, ("--virtual-cards", "2", "--virtual-nodes", "1"))  # one node gone
    try:
        with server.client(user) as c:
            job = job_state(c, jid)
            assert job["state"] == "failed" and "no longer in the cluster" in job["reason"], job
            wait_for(lambda: not any(_alive(p) for p in pids))  # on the node that remains too
            nxt = submit(c, task_groups=[{"replicas": 1, "cards": 2}], command=[PY, "-c", "print('ok')"])
            assert ended(c, nxt)["state"] == "succeeded"
    finally:
        stop_server(server)


# its first run ignores SIGTERM (it lingers through the grace period); a later run just succeeds
STUBBORN_ONCE = r"""
import os, signal, time
if os.environ["WANKA_RUN"] == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("stubborn", flush=True)
    time.sleep(600)
"""


def test_a_server_restarted_while_a_victim_lingers_comes_up_and_finishes_the_preemption(tmp_path):
    # hostile review: the restart path built its stop record with too few fields, and every later
    # start of the server failed for as long as the job stayed `preempted`
    server = start_server(tmp_path, ("--virtual-cards", "2", "--grace", "300"))
    try:
        user = make_member(server, "linger", "linger-user")
        with server.client(user) as c:
            low = submit(
                c, command=[PY, "-c", STUBBORN_ONCE], task_groups=[{"cards": 2}], priority_class="low"
            )
            wait_for(lambda: "stubborn" in log_of(c, low))
            high = submit(
                c, command=[PY, "-c", "print('urgent')"], task_groups=[{"cards": 2}], priority_class="high"
            )
            wait_for(lambda: job_state(c, low)["state"] == "preempted")
    finally:
        stop_server(server, tasks_too=False)  # the victim lives on, ignoring its SIGTERM
    server = start_server(tmp_path, ("--virtual-cards", "2"))  # grace 2 s: it is killed now
    try:
        with server.client(user) as c:
            assert ended(c, high)["state"] == "succeeded"
            job = ended(c, low, 60)
            assert job["state"] == "succeeded" and job["runs"] == 2, job
            [row] = c.get("/v1/acct", params={"job": low}).json()["jobs"]
            assert [t["state"] for t in row["tasks"] if t["run"] == 1] == ["preempted"]
    finally:
        stop_server(server)


def test_a_server_restarted_while_a_timed_out_job_lingers_on_cards_given_away_comes_up(tmp_path):
    # hostile review: the core had given a stopping job's cards to another (admitted, waiting for
    # them); that stop is not recorded, so at restart both claimed the cards and the server could
    # never start again. Now the job still running keeps them and the admitted one waits again.
    server = start_server(tmp_path, ("--virtual-cards", "2", "--grace", "300"))
    try:
        user = make_member(server, "restart-stop", "restart-stop-user")
        with server.client(user) as c:
            low = submit(
                c,
                command=[PY, "-c", TERM_SAYS_NO],
                task_groups=[{"cards": 2}],
                priority_class="low",
                time_limit_s=1,
            )
            wait_for(lambda: "TERM ignored" in log_of(c, low))  # its time limit's stop has begun
            high = submit(
                c, command=[PY, "-c", "print('urgent')"], task_groups=[{"cards": 2}], priority_class="high"
            )
            wait_for(lambda: job_state(c, high)["state"] == "admitted")  # on cards low still holds
    finally:
        stop_server(server, tasks_too=False)
    server = start_server(tmp_path, ("--virtual-cards", "2"))  # grace 2 s
    try:
        with server.client(user) as c:
            job = ended(c, low)
            assert job["state"] == "failed" and job["reason"].startswith("time limit"), job
            assert ended(c, high)["state"] == "succeeded"
            reasons = [e["reason"] for e in c.get(f"/v1/jobs/{high}/events").json()]
            assert any("still held when the server started" in r for r in reasons), reasons
            bill = c.get("/v1/acct", params={"job": high}).json()["jobs"][0]
            assert bill["runs"] == 2  # the run its first admission opened never started, and
            assert [t["run"] for t in bill["tasks"]] == [2]  # left no task behind
    finally:
        stop_server(server)


SAVES_THEN_EXITS_0 = r"""
import signal, sys, time
def save(*_):
    print("TERM: saving", flush=True)
    time.sleep(1)
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
time.sleep(600)
"""


def test_a_time_limit_stop_a_restart_interrupted_still_ends_the_job_as_timed_out(tmp_path):
    # hostile review: the tasks saved and exited 0 while the server was down, and the restarted
    # server, which had forgotten the stop, recorded a success (and would have run afterok jobs)
    server = start_server(tmp_path, ("--virtual-cards", "2", "--grace", "300"))
    try:
        user = make_member(server, "restart-timeout", "restart-timeout-user")
        with server.client(user) as c:
            jid = submit(c, command=[PY, "-c", SAVES_THEN_EXITS_0], time_limit_s=1, restart={"max": 2})
            wait_for(lambda: "TERM: saving" in log_of(c, jid))
    finally:
        stop_server(server, tasks_too=False)
    wait_for((tmp_path / "runs" / str(jid) / "1" / "task-0.exit").exists)  # it exited meanwhile
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        with server.client(user) as c:
            job = ended(c, jid)
            assert job["state"] == "failed" and job["reason"] == "time limit of 1 s reached", job
            assert job["runs"] == 1  # a time limit is no failure to restart from
            [row] = c.get("/v1/acct", params={"job": jid}).json()["jobs"]
            assert [t["state"] for t in row["tasks"]] == ["timeout"]
    finally:
        stop_server(server)


def test_a_task_that_died_while_the_server_was_down_is_found_and_recorded(tmp_path):
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        user = make_member(server, "lost", "lost-user")
        with server.client(user) as c:
            jid = submit(c, command=[PY, "-c", "import time; time.sleep(600)"])
            wait_for(lambda: job_state(c, jid)["state"] == "running")
    finally:
        stop_server(server, tasks_too=False)
    pid = int((tmp_path / "runs" / str(jid) / "1" / "task-0.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # supervisor and task die while nobody watches: no exit code
    wait_for(lambda: not _alive(pid), 10)
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        with server.client(user) as c:
            job = ended(c, jid)
            assert job["state"] == "failed" and job["reason"] == "task 0 was killed" and job["runs"] == 1
    finally:
        stop_server(server)


def test_a_task_that_ends_while_the_server_is_down_is_billed_until_it_ended(tmp_path):
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        user = make_member(server, "downtime", "downtime-user")
        with server.client(user) as c:
            jid = submit(c, command=[PY, "-c", UNTIL_STOP], task_groups=[{"cards": 2}])
            wait_for(lambda: "waiting" in log_of(c, jid))
            start = job_state(c, jid)["start_time"]
    finally:
        stop_server(server, tasks_too=False)
    (tmp_path / "checkpoints" / str(jid) / "stop").touch()
    record = tmp_path / "runs" / str(jid) / "1" / "task-0.exit"
    wait_for(record.exists)
    code, ended_at, rss = record.read_text().split()  # exit code, end time, peak memory (rss=KiB)
    assert code == "0" and rss.startswith("rss=")
    wait_for(lambda: time.time() > float(ended_at) + 2)  # the server stays down a while after
    server = start_server(tmp_path, ("--virtual-cards", "2"))
    try:
        with server.client(user) as c:
            job = ended(c, jid)
            assert job["state"] == "succeeded"
            assert job["end_time"] == pytest.approx(float(ended_at), abs=1e-3)
            bill = c.get("/v1/usage").json()["bills"][0]
            assert bill["card_hours"] == pytest.approx(2 * (float(ended_at) - start) / 3600, rel=1e-3)
    finally:
        stop_server(server)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_server_stops_its_own_loop_promptly(tmp_path):
    server = start_server(tmp_path, ("--virtual-cards", "1"))
    t0 = time.monotonic()
    stop_server(server)
    assert time.monotonic() - t0 < 5


def test_a_node_failing_its_health_check_goes_down_and_its_jobs_are_recovered(tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    check = tmp_path / "check.sh"
    check.write_text(
        f'#!/bin/sh\nif [ -e "{flags}/bad-$WANKA_NODE" ]; then echo "card fell off the bus"; exit 1; fi\n'
    )
    check.chmod(0o755)
    options = (
        "--virtual-cards",
        "6",
        "--virtual-nodes",
        "3",
        "--health-check",
        str(check),
        "--health-every",
        "0.3",
    )
    server = start_server(tmp_path / "home", options)

    def node_of(c, job_id: int) -> str:
        events = c.get(f"/v1/jobs/{job_id}/events").json()
        return [e["reason"] for e in events if e["state"] == "admitted"][-1].split("placed on ")[1]

    def node(admin, name: str) -> dict:
        return {n["name"]: n for n in admin.get("/v1/nodes").json()}[name]

    try:
        user = make_member(server, "health", "health-user")
        with server.client(user) as c, server.client(server.admin_token) as admin:
            two = [{"replicas": 1, "cards": 2}]  # a whole node each
            resilient = submit(
                c, command=[PY, "-c", WORKER, "80", "0.05"], task_groups=two, restart={"max": 1}
            )
            fragile = submit(c, command=[PY, "-c", "import time; time.sleep(600)"], task_groups=two)
            wait_for(lambda: all(job_state(c, j)["state"] == "running" for j in (resilient, fragile)))
            ckpt = server.home / "checkpoints" / str(resilient)
            wait_for(lambda: (ckpt / "step").exists() and int((ckpt / "step").read_text()) >= 5)
            first = node_of(c, resilient)
            (flags / f"bad-{first}").touch()
            wait_for(lambda: node(admin, first)["state"] == "down")
            assert "card fell off the bus" in node(admin, first)["reason"]
            # requeued, started on the free node, resumed from its checkpoint
            job = ended(c, resilient, 60)
            assert job["state"] == "succeeded" and job["runs"] == 2, job
            assert node_of(c, resilient) not in (first, node_of(c, fragile))
            assert int(log_of(c, resilient, run=2).split("resumes at step ")[1].split()[0]) >= 5
            # no restarts allowed: a job on a node that goes down fails, and says why
            assert job_state(c, fragile)["state"] == "running"
            (flags / f"bad-{node_of(c, fragile)}").touch()
            job = ended(c, fragile)
            assert job["state"] == "failed" and "a node it ran on went down" in job["reason"]
            (flags / f"bad-{first}").unlink()
            wait_for(lambda: node(admin, first)["state"] == "up")  # healthy again: back in service
    finally:
        stop_server(server)


def test_under_wanka_las_a_fresh_job_preempts_one_that_has_had_its_share(tmp_path):
    """The control plane books attained service (cards x seconds run, over every run): under
    ``wanka-las`` with a 2 card-second threshold, J2 preempts J1 once J1 has run 2 s on its card,
    and on J1's next run J3 preempts it at once (its first run's service still counts)."""
    s = start_server(
        tmp_path / "home", ("--virtual-cards", "1", "--policy", "wanka-las", "--las-thresholds", "2")
    )
    try:
        user = make_member(s, "las", "las-user")
        with s.client(user) as c:
            j1 = submit(c, command=[PY, "-c", WORKER, "100000", "0.05"], env={"EXIT_ON_TERM": "0"})
            wait_for(lambda: job_state(c, j1)["state"] == "running")
            j2 = submit(c, command=[PY, "-c", "print('my turn')"])
            assert ended(c, j2)["state"] == "succeeded"
            events = c.get(f"/v1/jobs/{j1}/events").json()
            assert any(e["state"] == "preempted" for e in events), events
            resumed = wait_for(lambda: job_state(c, j1)["runs"] == 2 and log_of(c, j1, run=2))
            assert int(resumed.split("resumes at step ")[1].split()[0]) > 0
            j3 = submit(c, command=[PY, "-c", "print('me too')"])
            assert ended(c, j3)["state"] == "succeeded"
            assert sum(e["state"] == "preempted" for e in c.get(f"/v1/jobs/{j1}/events").json()) == 2
            c.post(f"/v1/jobs/{j1}/cancel")
            ended(c, j1)
    finally:
        stop_server(s)


SLOW_TO_SAVE = r"""
import os, pathlib, signal, time
ckpt = pathlib.Path(os.environ["WANKA_CHECKPOINT_DIR"])
def save(*_):
    (ckpt / f"term-{os.environ['RANK']}").write_text("saving")
    time.sleep(30)  # still saving when the grace period ends
signal.signal(signal.SIGTERM, save)
(ckpt / f"ready-{os.environ['RANK']}").write_text("")
time.sleep(600)
"""


def test_a_job_cancelled_while_it_gives_its_surplus_back_ends_without_restarting(cluster):
    """Issue 14: a cancel that arrives during a shrink's checkpointed restart wins over it."""
    user = make_member(cluster, "shrink-cancel", "shrink-cancel-user")
    with cluster.client(user) as c:
        j1 = submit(
            c, command=[PY, "-c", SLOW_TO_SAVE], task_groups=[{"replicas": 4, "min_replicas": 2, "cards": 1}]
        )
        ckpt = cluster.home / "checkpoints" / str(j1)
        wait_for(lambda: len(list(ckpt.glob("ready-*"))) == 4)  # every task saves on SIGTERM now
        j2 = submit(c, command=[PY, "-c", "print('mine now')"], task_groups=[{"replicas": 2, "cards": 1}])
        wait_for(lambda: any(ckpt.glob("term-*")))  # J1 was told to give its surplus back
        assert c.post(f"/v1/jobs/{j1}/cancel").status_code == 200
        assert ended(c, j1)["state"] == "cancelled"
        assert job_state(c, j1)["runs"] == 1  # no second run was started
        assert ended(c, j2)["state"] == "succeeded"


def test_a_job_preempted_while_it_gives_its_surplus_back_is_requeued_and_frees_every_card(cluster):
    """A shrinking job the core then evicts: it is requeued as any victim (no smaller restart on
    cards the core gave away), its old cards count busy once, and all four cards serve a job after."""
    user = make_member(cluster, "shrink-evict", "shrink-evict-user")
    with cluster.client(user) as c:
        j1 = submit(
            c,
            command=[PY, "-c", SLOW_TO_SAVE],
            task_groups=[{"replicas": 4, "min_replicas": 2, "cards": 1}],
            priority_class="low",
        )
        ckpt = cluster.home / "checkpoints" / str(j1)
        wait_for(lambda: len(list(ckpt.glob("ready-*"))) == 4)
        j2 = submit(c, command=[PY, "-c", "print('mine now')"], task_groups=[{"replicas": 2, "cards": 1}])
        wait_for(lambda: any(ckpt.glob("term-*")))  # J1 was told to give its surplus back
        high = submit(
            c,
            command=[PY, "-c", "print('urgent')"],
            task_groups=[{"replicas": 2, "cards": 1}],
            priority_class="high",
        )
        assert ended(c, high)["state"] == "succeeded"
        assert ended(c, j2)["state"] == "succeeded"
        wait_for(lambda: "preempted" in [e["state"] for e in c.get(f"/v1/jobs/{j1}/events").json()])
        c.post(f"/v1/jobs/{j1}/cancel")
        assert ended(c, j1)["state"] == "cancelled"
        whole = submit(c, command=[PY, "-c", "print('all four')"], task_groups=[{"replicas": 4, "cards": 1}])
        assert ended(c, whole)["state"] == "succeeded"  # no card left counted busy


def test_cpu_only_jobs_ending_one_after_another_leave_scheduling_going(cluster):
    # hostile review: the second of two 0-card jobs of one queue to end failed the running
    # index's bookkeeping, and with it every later cycle of the server, for every tenant
    user = make_member(cluster, "cpu-only", "cpu-only-user")
    with cluster.client(user) as c:
        first = submit(c, command=[PY, "-c", "print('a')"], task_groups=[{"cards": 0}])
        second = submit(c, command=[PY, "-c", "print('b')"], task_groups=[{"cards": 0}])
        assert ended(c, first)["state"] == "succeeded" and ended(c, second)["state"] == "succeeded"
        after = submit(c, command=[PY, "-c", "print('c')"], task_groups=[{"cards": 1}])
        assert ended(c, after)["state"] == "succeeded"


def test_a_job_on_loan_on_reserved_cards_gives_them_back_when_the_reserved_job_can_start(cluster):
    """The wanka preset lends the cards it holds for a blocked gang to a preemptible job that would
    otherwise wait, and takes them back (a checkpointed preemption) once the gang can start."""
    user = make_member(cluster, "loan", "loan-user")
    sleeper = [PY, "-c", "import time; time.sleep(600)"]
    with cluster.client(user) as c:
        first = submit(c, command=sleeper, task_groups=[{"replicas": 1, "cards": 2}])
        wait_for(lambda: job_state(c, first)["state"] == "running")
        gang = submit(c, command=[PY, "-c", "print('all four')"], task_groups=[{"replicas": 2, "cards": 2}])
        wait_for(lambda: job_state(c, gang)["queue_position"] == 1)
        lent = submit(c, command=[PY, "-c", WORKER, "100000", "0.05"], env={"EXIT_ON_TERM": "0"})
        admitted = wait_for(
            lambda: next(
                (e for e in c.get(f"/v1/jobs/{lent}/events").json() if e["state"] == "admitted"), None
            )
        )
        assert "on loan" in admitted["reason"]
        assert job_state(c, gang)["state"] == "pending"
        c.post(f"/v1/jobs/{first}/cancel")
        assert ended(c, gang)["state"] == "succeeded"
        assert any(e["state"] == "preempted" for e in c.get(f"/v1/jobs/{lent}/events").json())
        c.post(f"/v1/jobs/{lent}/cancel")
        ended(c, lent)
