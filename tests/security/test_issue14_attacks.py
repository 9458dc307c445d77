"""A hostile tenant against issue 14's features: the ``wanka-las`` preset (LAS inside the priority
class, cohort preemption scope, attained service booked by the control plane), preemptible backfill
("on loan"), and a cancel during a shrink's restart.

Tests that FAIL on the code as reviewed (each exposes a bug):

- ``test_cohort_preemption_never_takes_a_queue_below_its_nominal``
- ``test_cohort_preemption_rechecks_borrowing_between_preemptors_of_one_cycle``
- ``test_cohort_preemption_respects_an_organisations_pooled_nominal``
- ``test_las_thresholds_with_a_policy_that_ignores_them_are_refused``

The others guard properties that held.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.core.scenario import build
from tests.server.conftest import free_port, start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import WORKER, ended, job_state, submit
from wanka.core import run_cycle

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(600)"]

# --- cohort preemption (core) -----------------------------------------------------------------
#
# docs/policies.md: wanka-las preempts "within its queue or from queues running on borrowed quota
# (Kueue's reclaimWithinCohort: LowerPriority)", and wanka_las_keeps_nominal.yaml is titled "LAS
# preemption never takes from another queue within its nominal quota (only reclaim of lent quota
# does)". Kueue re-checks, for every candidate, that its ClusterQueue still borrows once the victims
# already chosen are gone; wanka judges "borrowing" once per queue when the victim pool is built.

THREE_NODES = {
    "name": "three",
    "tiers": ["leaf"],
    "pools": [{"name": "a", "accelerator": "h100", "nodes": 3, "cards_per_node": 8, "layout": {"leaf": 3}}],
}
OLD = 9_000_000  # attained card-seconds: far past the 3,600 threshold, so lower rank than a fresh job


def _org(name: str, org_nominal: int, queue: str, queue_nominal: int) -> dict:
    return {
        "name": name,
        "quota": {"h100": {"nominal": org_nominal}},
        "queues": [{"name": queue, "quota": {"h100": {"nominal": queue_nominal}}}],
    }


def _cycle(doc: dict, policy: str):
    snapshot, config = build({**doc, "policy": policy})
    return snapshot, run_cycle(snapshot, config)


def _held_by(snapshot, result, queue: str) -> int:
    """Cards ``queue`` holds after the cycle's stops and starts."""
    stopped = {d.job_id for d in result.stops}
    cards = sum(j.placement.total_cards for j in snapshot.running if j.queue == queue and j.id not in stopped)
    by_id = {j.id: j for j in snapshot.pending}
    return cards + sum(d.placement.total_cards for d in result.starts if by_id[d.job_id].queue == queue)


def test_cohort_preemption_never_takes_a_queue_below_its_nominal():
    """FAILS. qb (nominal 8) holds 12, borrowing 4. The only node qa's 8-card job could use holds
    two of qb's 4-card jobs. Evicting both takes qb to 4, below its nominal: wanka-las does it
    (b1 and b2 preempted, qb keeps 4 of its 8); expected: qa's job waits (at most 4 of qb's cards,
    the borrowed ones, may go)."""
    doc = {
        "now": 100_000,
        "cluster": THREE_NODES,
        "queues": {
            "organisations": [_org("org-a", 8, "qa", 8), _org("org-b", 8, "qb", 8), _org("org-c", 8, "qc", 8)]
        },
        "running": [
            {"id": "b1", "queue": "qb", "cards": 4, "nodes": ["a-0001"], "attained": OLD},
            {"id": "b2", "queue": "qb", "cards": 4, "nodes": ["a-0001"], "attained": OLD},
            {"id": "b3", "queue": "qb", "cards": 4, "nodes": ["a-0002"], "attained": OLD},
            {"id": "c1", "queue": "qc", "cards": 4, "nodes": ["a-0002"], "attained": OLD},
            {"id": "c2", "queue": "qc", "cards": 4, "nodes": ["a-0003"], "attained": OLD},
        ],
        "pending": [{"id": "a1", "queue": "qa", "cards": 8, "submit": 500}],
    }
    for policy in ("wanka", "wanka-las"):
        snapshot, result = _cycle(doc, policy)
        assert _held_by(snapshot, result, "qb") >= 8, (
            f"{policy}: qb (nominal 8) left with {_held_by(snapshot, result, 'qb')} cards; "
            f"stopped {[(d.job_id, d.reason.value) for d in result.stops]}"
        )


def test_a_tenants_reservation_cannot_hold_back_another_tenants_nominal():
    """Two tenants share organisation o (no borrowing outside it): t1 with nominal 8, t2 with 16.
    t1's tenant submits a 2x8 gang, twice its nominal, so that its reservation counts on t2's idle
    quota. The reservation may hold quota against jobs that would borrow it, never against t2's own
    work within t2's nominal: t2's job, without a time limit and off the reserved nodes, starts now
    (before, it was refused for as long as the gang waited)."""
    seven = {
        **THREE_NODES,
        "name": "seven",
        "pools": [{**THREE_NODES["pools"][0], "nodes": 7, "layout": {"leaf": 7}}],
    }
    doc = {
        "now": 100,
        "cluster": seven,
        "queues": {
            "organisations": [
                {
                    "name": "o",
                    "quota": {"h100": {"nominal": 24, "borrowing_limit": 0}},
                    "queues": [
                        {"name": "t1", "quota": {"h100": {"nominal": 8}}},
                        {"name": "t2", "quota": {"h100": {"nominal": 16}}},
                    ],
                },
                _org("p", 32, "pq", 32),
            ]
        },
        "running": [
            {"id": "p0", "queue": "pq", "cards": 8, "nodes": ["a-0001"], "start": 0, "time_limit_s": 200},
            {"id": "t2a", "queue": "t2", "cards": 4, "nodes": ["a-0002"], "start": 0},
            {"id": "t2b", "queue": "t2", "cards": 4, "nodes": ["a-0003"], "start": 0},
        ]
        + [
            {"id": f"p{n}", "queue": "pq", "cards": 8, "nodes": [f"a-000{n + 3}"], "start": 0}
            for n in (1, 2, 3)
        ],
        "pending": [
            {"id": "grab", "queue": "t1", "replicas": 2, "cards": 8, "submit": 1, "time_limit_s": 1000},
            {"id": "own", "queue": "t2", "cards": 4, "submit": 30},
        ],
    }
    for policy in ("slurm", "wanka", "wanka-fifo"):
        _, result = _cycle(doc, policy)
        assert "grab" in {r.job_id for r in result.reservations}, f"{policy}: the gang is not reserved"
        assert "own" in {d.job_id for d in result.starts}, (
            f"{policy}: t2's job within its nominal held back by t1's reservation: {result.outcomes}"
        )


def test_cohort_preemption_rechecks_borrowing_between_preemptors_of_one_cycle():
    """FAILS. qb (nominal 8) holds all 16 cards; qa (nominal 8) has three 4-card jobs waiting. Reclaim
    gives qa its 8 (b1, b2 reclaimed, qb at its nominal 8); then wanka-las still treats qb as
    borrowing (judged when the victim pool was built) and a3 preempts b3: qb ends with 4, below its
    nominal, while qa holds 12, above its own. Expected: qb keeps 8 (as under wanka)."""
    doc = {
        "now": 100_000,
        "cluster": {
            **THREE_NODES,
            "name": "two",
            "pools": [{**THREE_NODES["pools"][0], "nodes": 2, "layout": {"leaf": 2}}],
        },
        "queues": {"organisations": [_org("org-a", 8, "qa", 8), _org("org-b", 8, "qb", 8)]},
        "running": [
            {"id": f"b{i}", "queue": "qb", "cards": 4, "nodes": [node], "attained": OLD}
            for i, node in enumerate(["a-0001", "a-0001", "a-0002", "a-0002"], 1)
        ],
        "pending": [{"id": f"a{i}", "queue": "qa", "cards": 4, "submit": 500 + i} for i in (1, 2, 3)],
    }
    for policy in ("wanka", "wanka-las"):
        snapshot, result = _cycle(doc, policy)
        assert _held_by(snapshot, result, "qb") >= 8, (
            f"{policy}: qb (nominal 8) left with {_held_by(snapshot, result, 'qb')} cards; "
            f"stopped {[(d.job_id, d.reason.value) for d in result.stops]}"
        )


def test_cohort_preemption_respects_an_organisations_pooled_nominal():
    """FAILS. org-b's nominal is 16, pooled for its queue qb (nominal 0, as in reclaim_org_pool.yaml:
    "an organisation whose queues have no nominal of their own defends that pool against other
    organisations"). org-b holds exactly its 16; org-a holds its 8 and wants 8 more. wanka-las
    judges borrowing at the leaf only (qb: 16 > 0), so a1 preempts b1 and org-a runs 16 on org-b's
    quota. Expected: nothing is evicted (org-b is within its nominal)."""
    doc = {
        "now": 100_000,
        "cluster": THREE_NODES,
        "queues": {"organisations": [_org("org-a", 8, "qa", 8), _org("org-b", 16, "qb", 0)]},
        "running": [
            {"id": "a0", "queue": "qa", "cards": 8, "nodes": ["a-0003"]},
            {"id": "b1", "queue": "qb", "cards": 8, "nodes": ["a-0001"], "attained": OLD},
            {"id": "b2", "queue": "qb", "cards": 8, "nodes": ["a-0002"], "attained": OLD},
        ],
        "pending": [{"id": "a1", "queue": "qa", "cards": 8, "submit": 500}],
    }
    for policy in ("wanka", "wanka-las"):
        _, result = _cycle(doc, policy)
        assert not result.stops, f"{policy}: stopped {[(d.job_id, d.reason.value) for d in result.stops]}"


# --- --las-thresholds -------------------------------------------------------------------------


def _server_cli(tmp_path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``wanka server`` with bad arguments: it must refuse before it serves (the timeout fails the
    test if it comes up instead)."""
    env = {"WANKA_HOME": str(tmp_path), "COLUMNS": "300", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [PY, "-m", "wanka.cli.main", "server", "--host", "127.0.0.1", "--port", str(free_port()),
         "--database", f"sqlite:///{tmp_path / 'w.db'}", "--virtual-cards", "1", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "value",
    ["nan", "inf", "-inf", "1e400", "-1", "0", " ", "abc", "1,,2", "2,1", "1,1", "nan,1", "1,inf", "0x10",
     ",".join(str(i) for i in range(3000, 0, -1))],
    ids=lambda v: v if len(v) < 12 else "3000-descending",
)  # fmt: skip
def test_bad_las_thresholds_are_refused_with_the_accepted_form(tmp_path, value):
    try:
        done = _server_cli(tmp_path, "--policy", "wanka-las", "--las-thresholds", value)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wanka server came up with --las-thresholds {value!r}")
    assert done.returncode != 0
    assert "--las-thresholds" in done.stderr + done.stdout and "ascending positive card-seconds" in (
        done.stderr + done.stdout
    ), done.stderr[-2000:]


def test_las_thresholds_with_a_policy_that_ignores_them_are_refused(tmp_path):
    """FAILS. `wanka simulate` refuses --las-thresholds when no policy orders by LAS ("none of the
    policies run orders jobs by LAS"); `wanka server --policy wanka-fifo --las-thresholds 5` starts and
    silently ignores them (with_las_thresholds returns the policy unchanged)."""
    try:
        s = start_server(
            tmp_path / "home", ("--virtual-cards", "1", "--policy", "wanka-fifo", "--las-thresholds", "5")
        )
    except RuntimeError as exc:  # it exited: what it said must name the option
        assert "--las-thresholds" in str(exc)
        return
    stop_server(s)
    pytest.fail("wanka server --policy wanka-fifo --las-thresholds 5 started and ignored the thresholds")


# --- loans on a real server ---------------------------------------------------------------------


def _events(c, job_id: int) -> list[dict]:
    return c.get(f"/v1/jobs/{job_id}/events").json()


def _cycles(server) -> int:
    with server.client() as c:
        return c.get("/healthz").json()["scheduler"]["cycles"]


def _after_cycles(server, n: int = 2) -> None:
    """Until the control loop ran ``n`` more cycles (while jobs wait, at least one each 5 s)."""
    start = _cycles(server)
    wait_for(lambda: _cycles(server) >= start + n, timeout=5.0 * n + 10)


def _reserved_gang(b, a) -> tuple[int, int, int]:
    """Three nodes of two cards. Tenant A runs a 2-card job (a node), tenant B a 1-card one (so B's
    queue comes first in fair share); B's gang (3 x 2 cards) then waits for every node and holds
    a reservation on all three. Returns (a0, b0, gang)."""
    a0 = submit(a, name="a0", command=SLEEP, task_groups=[{"replicas": 1, "cards": 2}])
    wait_for(lambda: job_state(a, a0)["state"] == "running")
    b0 = submit(b, name="SECRET-b0", command=SLEEP, task_groups=[{"replicas": 1, "cards": 1}])
    wait_for(lambda: job_state(b, b0)["state"] == "running")
    gang = submit(
        b, name="SECRET-gang", command=[PY, "-c", "print('gang')"], task_groups=[{"replicas": 3, "cards": 2}]
    )
    wait_for(lambda: job_state(b, gang)["queue_position"] == 1)
    return a0, b0, gang


def test_under_wanka_fifo_no_tenant_runs_on_loan_on_another_tenants_reservation(tmp_path):
    """The wanka-fifo preset preempts only within a queue (= a tenant): tenant A's preemptible job
    never backfills onto nodes reserved for tenant B's gang, and B's gang never evicts it. Held."""
    s = start_server(
        tmp_path / "home", ("--virtual-cards", "6", "--virtual-nodes", "3", "--policy", "wanka-fifo")
    )
    try:
        a_tok, b_tok = make_member(s, "lab-a", "a-user"), make_member(s, "lab-b", "b-user")
        with s.client(a_tok) as a, s.client(b_tok) as b:
            a0, b0, gang = _reserved_gang(b, a)
            a1 = submit(a, name="a1", command=SLEEP, task_groups=[{"replicas": 1, "cards": 2}])
            _after_cycles(s)
            assert job_state(a, a1)["state"] == "pending"  # keeps off the reserved node
            assert job_state(b, gang)["state"] == "pending"
            assert b.post(f"/v1/jobs/{b0}/cancel").status_code == 200
            assert a.post(f"/v1/jobs/{a0}/cancel").status_code == 200
            ended(b, b0), ended(a, a0)
            gang_end = ended(b, gang, timeout=60)
            assert gang_end["state"] == "succeeded", (gang_end, _events(a, a1))
            wait_for(lambda: job_state(a, a1)["state"] == "running")
            for j in (a0, a1):
                reasons = [e["reason"] for e in _events(a, j)]
                assert not any("on loan" in r for r in reasons), reasons
                assert not any(e["state"] == "preempted" for e in _events(a, j))
                a.post(f"/v1/jobs/{j}/cancel")
                ended(a, j)
    finally:
        stop_server(s)


@pytest.mark.parametrize("policy", ["wanka", "wanka-las"])
def test_a_loan_across_tenants_tells_the_borrower_nothing_about_the_lender(tmp_path, policy):
    """Under the cohort scope (wanka, wanka-las), before any quota document every queue borrows
    (nominal 0), so tenant A's job may run on loan on tenant B's reserved node and be taken back.
    What A can read names neither B, nor B's job, nor its id. The loan is real: A's job is admitted
    "on loan" and later preempted, then runs again (the gang succeeds between). Held."""
    s = start_server(tmp_path / "home", ("--virtual-cards", "6", "--virtual-nodes", "3", "--policy", policy))
    try:
        a_tok = make_member(s, "lab-a", "a-user")
        b_tok = make_member(s, "lab-secret-b", "secret-b-user")
        with s.client(a_tok) as a, s.client(b_tok) as b:
            a0, b0, gang = _reserved_gang(b, a)
            a1 = submit(a, name="a1", command=[PY, "-c", WORKER, "100000", "0.05"], env={"EXIT_ON_TERM": "0"})
            admitted = wait_for(lambda: next((e for e in _events(a, a1) if e["state"] == "admitted"), None))
            assert "on loan" in admitted["reason"], admitted
            assert job_state(b, gang)["state"] == "pending"
            b.post(f"/v1/jobs/{b0}/cancel")
            a.post(f"/v1/jobs/{a0}/cancel")
            assert ended(b, gang)["state"] == "succeeded"
            wait_for(lambda: any(e["state"] == "preempted" for e in _events(a, a1)))
            wait_for(lambda: job_state(a, a1)["runs"] == 2)
            seen = [
                a.get("/v1/jobs", params={"limit": 1000}).text,
                a.get(f"/v1/jobs/{a1}").text,
                a.get(f"/v1/jobs/{a0}").text,
                a.get(f"/v1/jobs/{a1}/events").text,
                a.get("/v1/queues").text,
                a.get("/v1/nodes").text,
                a.get("/v1/usage").text,
            ]
            for text in seen:
                assert "SECRET" not in text and "secret-b" not in text, text[:2000]
            assert a.get(f"/v1/jobs/{gang}").status_code == 404
            for e in _events(a, a1):
                for other in (b0, gang):
                    assert not re.search(rf"\b{other}\b", e["reason"]), e
            for j in (a0, a1):
                a.post(f"/v1/jobs/{j}/cancel")
                ended(a, j)
    finally:
        stop_server(s)


# a preemptible job that takes long to save on SIGTERM (so it is caught while it is being evicted)
SLOW_TERM = r"""
import os, pathlib, signal, time
ckpt = pathlib.Path(os.environ["WANKA_CHECKPOINT_DIR"])
def save(*_):
    (ckpt / "term").write_text("saving")
    time.sleep(30)
signal.signal(signal.SIGTERM, save)
(ckpt / "ready").write_text("")
time.sleep(600)
"""


@pytest.fixture
def loan_server(tmp_path):
    """Two nodes of two cards, the wanka preset (loans on), a long grace period: one tenant."""
    s = start_server(tmp_path / "home", ("--virtual-cards", "4", "--virtual-nodes", "2", "--grace", "20"))
    yield s
    stop_server(s)


def _loan(s, c, lent_command, slow: bool = True) -> tuple[int, int, int]:
    """``first`` runs on one node, ``gang`` (both nodes) waits with a reservation, ``lent`` runs on
    loan on the other node."""
    first = submit(c, command=SLEEP, task_groups=[{"replicas": 1, "cards": 2}])
    wait_for(lambda: job_state(c, first)["state"] == "running")
    gang = submit(c, command=[PY, "-c", "print('all four')"], task_groups=[{"replicas": 2, "cards": 2}])
    wait_for(lambda: job_state(c, gang)["queue_position"] == 1)
    lent = submit(c, command=lent_command, task_groups=[{"replicas": 1, "cards": 2}])
    admitted = wait_for(lambda: next((e for e in _events(c, lent) if e["state"] == "admitted"), None))
    assert "on loan" in admitted["reason"]
    if slow:  # SLOW_TERM: its SIGTERM handler is set
        wait_for(lambda: (s.home / "checkpoints" / str(lent) / "ready").exists())
    else:
        wait_for(lambda: job_state(c, lent)["state"] == "running")
    return first, gang, lent


def test_a_job_cancelled_while_it_is_taken_back_from_loan_ends_cancelled(loan_server):
    """The gang evicts the loan; the loaned job, still saving, is cancelled: it ends cancelled (no
    second run), the gang starts once its processes are gone, and the loop goes on. Held."""
    s = loan_server
    user = make_member(s, "loan-cancel", "loan-cancel-user")
    with s.client(user) as c:
        first, gang, lent = _loan(s, c, [PY, "-c", SLOW_TERM])
        c.post(f"/v1/jobs/{first}/cancel")
        wait_for(lambda: (s.home / "checkpoints" / str(lent) / "term").exists())
        wait_for(lambda: job_state(c, lent)["state"] == "preempted")  # recorded once the tick commits
        assert c.post(f"/v1/jobs/{lent}/cancel").status_code == 200
        job = ended(c, lent, timeout=40)
        assert job["state"] == "cancelled" and job["runs"] == 1, job
        assert ended(c, gang, timeout=40)["state"] == "succeeded"
        later = submit(c, command=[PY, "-c", "print('still scheduling')"])
        assert ended(c, later)["state"] == "succeeded"


def test_cancelling_the_reservation_holder_leaves_its_loans_running(loan_server):
    """The holder of the reservation is cancelled while a job runs on loan to it: the loaned job
    keeps running (nobody is left to take it back), the loop keeps scheduling, and a later job that
    needs those cards simply waits for them. Held."""
    s = loan_server
    user = make_member(s, "holder-cancel", "holder-cancel-user")
    with s.client(user) as c:
        first, gang, lent = _loan(s, c, [PY, "-c", SLOW_TERM])
        assert c.post(f"/v1/jobs/{gang}/cancel").status_code == 200
        assert ended(c, gang)["state"] == "cancelled"
        c.post(f"/v1/jobs/{first}/cancel")
        assert ended(c, first, timeout=40)["state"] == "cancelled"
        later = submit(c, command=[PY, "-c", "print('after')"], task_groups=[{"replicas": 1, "cards": 2}])
        assert ended(c, later)["state"] == "succeeded"
        assert job_state(c, lent)["state"] == "running"
        assert not any(e["state"] == "preempted" for e in _events(c, lent))
        c.post(f"/v1/jobs/{lent}/cancel")
        assert ended(c, lent, timeout=40)["state"] == "cancelled"


def test_a_server_restart_with_a_loan_running_adopts_it_and_schedules_on(tmp_path):
    """The server is stopped (tasks left running) while a job runs on loan, and started again on the
    same home. A loan is not kept across a restart (docs/policies.md): the loaned job runs as any
    other and is adopted, not lost; the gang starts once the cards are free. Held."""
    home = tmp_path / "home"
    s = start_server(home, ("--virtual-cards", "4", "--virtual-nodes", "2"))
    try:
        user = make_member(s, "restart-loan", "restart-loan-user")
        with s.client(user) as c:
            first, gang, lent = _loan(s, c, SLEEP, slow=False)
        stop_server(s, tasks_too=False)
        s = start_server(home, ("--virtual-cards", "4", "--virtual-nodes", "2"))
        with s.client(user) as c:
            assert job_state(c, lent)["state"] == "running"
            assert job_state(c, first)["state"] == "running"
            c.post(f"/v1/jobs/{first}/cancel")
            assert ended(c, first)["state"] == "cancelled"
            c.post(f"/v1/jobs/{lent}/cancel")
            assert ended(c, lent)["state"] == "cancelled"
            assert ended(c, gang)["state"] == "succeeded"
    finally:
        stop_server(s)


# --- attained service across a server restart -------------------------------------------------


def test_attained_service_of_a_requeued_job_survives_a_server_restart(tmp_path):
    """wanka-las, one card, threshold 2 card-seconds. J1 runs past the threshold; J2 (fresh) preempts
    it and J1 waits with ~3 card-seconds booked. The server restarts while J2 runs. Were J1's past
    runs forgotten, J1 (fresh again, LAS queue 0) would outrank J2 (queue 1 after 2 s) and preempt it
    at once; booked from job_runs, it does not, and J2 ends by itself. Held."""
    home = tmp_path / "home"
    args = ("--virtual-cards", "1", "--policy", "wanka-las", "--las-thresholds", "2")
    s = start_server(home, args)
    try:
        user = make_member(s, "las-restart", "las-restart-user")
        gate = tmp_path / "go"
        j2_program = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
        with s.client(user) as c:
            j1 = submit(c, command=[PY, "-c", WORKER, "100000", "0.05"], env={"EXIT_ON_TERM": "0"})
            wait_for(lambda: job_state(c, j1)["state"] == "running")
            started = job_state(c, j1)["start_time"]
            wait_for(lambda: time.time() - started > 3.5, timeout=10)
            j2 = submit(c, command=[PY, "-c", j2_program])
            wait_for(lambda: job_state(c, j2)["state"] == "running")
            assert job_state(c, j1)["state"] == "pending"
            # J2 itself reaches LAS queue 1 after 2 s: then J1 (queue 1) ranks no higher than J2
            wait_for(lambda: time.time() - job_state(c, j2)["start_time"] > 2.5, timeout=10)
        stop_server(s, tasks_too=False)
        s = start_server(home, args)
        with s.client(user) as c:
            _after_cycles(s)
            assert job_state(c, j2)["state"] == "running", _events(c, j2)
            assert not any(e["state"] == "preempted" for e in _events(c, j2))
            gate.write_text("")
            assert ended(c, j2)["state"] == "succeeded"
            wait_for(lambda: job_state(c, j1)["runs"] == 2)
            c.post(f"/v1/jobs/{j1}/cancel")
            ended(c, j1)
    finally:
        stop_server(s)


def test_a_member_cannot_take_its_job_off_the_las_ladder_by_calling_it_inference(tmp_path):
    """Replicas of services are off the LAS ladder (docs/policies.md); a member's own job is not,
    whatever kind it claims. wanka-las, one card, threshold 2 card-seconds: a long job submitted
    as ``kind: inference`` is still preempted by a fresh job of its class once past the threshold."""
    s = start_server(
        tmp_path / "home", ("--virtual-cards", "1", "--policy", "wanka-las", "--las-thresholds", "2")
    )
    try:
        user = make_member(s, "las-kind", "las-kind-user")
        with s.client(user) as c:
            long = submit(
                c, kind="inference", command=[PY, "-c", WORKER, "100000", "0.05"], env={"EXIT_ON_TERM": "0"}
            )
            wait_for(lambda: job_state(c, long)["state"] == "running")
            fresh = submit(c, command=[PY, "-c", "print('my turn')"])
            assert ended(c, fresh)["state"] == "succeeded"
            assert any(e["state"] == "preempted" for e in _events(c, long)), _events(c, long)
            c.post(f"/v1/jobs/{long}/cancel")
            ended(c, long)
    finally:
        stop_server(s)


def test_a_members_inference_job_cannot_get_anothers_training_job_of_its_shape_refused(tmp_path):
    """The submit check judges a job once per shape and shares the verdict (server/trees.py). An
    inference job's replicas go one per node, so on one 8-card node two replicas can never run; a
    training job of the same 2x1-card shape fits. A member who submits the inference job first must
    not get a fellow member's training job refused with its reason (the shape once left out the
    kind), and the other way round the refusal must stand."""
    s = start_server(tmp_path / "home")
    try:
        first = make_member(s, "shape-share", "shape-first")
        second = make_member(s, "shape-share", "shape-second")
        shape = [{"replicas": 2, "cards": 1}]
        with s.client(first) as c:
            r = c.post("/v1/jobs", json={"kind": "inference", "task_groups": shape, "command": SLEEP})
            assert r.status_code == 422 and "1 per node at most" in r.text, r.text
        with s.client(second) as c:
            jid = submit(c, task_groups=shape, command=[PY, "-c", "print('fits')"])
            assert ended(c, jid)["state"] == "succeeded"
            r = c.post("/v1/jobs", json={"kind": "inference", "task_groups": shape, "command": SLEEP})
            assert r.status_code == 422 and "1 per node at most" in r.text, r.text
    finally:
        stop_server(s)
