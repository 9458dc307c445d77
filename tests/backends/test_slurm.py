"""The Slurm backend against real Slurm daemons (munged, slurmctld, one slurmd per virtual node with
fake GPUs, all on 127.0.0.1, stopped by their pids) and a real wanka server driving them over HTTP.
`.ci/run` installs Debian's slurm-wlm and munge; skipped where they are missing or not root."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import tests.conftest as top
from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import WORKER, ended, job_state, log_of, submit
from wanka.backends.base import Launch, TaskLaunch, TaskState
from wanka.backends.slurm import SlurmBackend, _array_indices
from wanka.backends.slurm_testbed import SlurmCluster, available

pytestmark = pytest.mark.skipif(available() is not None, reason=f"no Slurm here: {available()}")
PY = sys.executable
ONE_CARD = {"task_groups": [{"replicas": 1, "cards": 1}]}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    # a fifth node is configured for the future: it joins in the last test
    # jobs run as tenant accounts (the server is root): they pass through to slurmd's spool
    root = top.reachable_by_tasks(tmp_path_factory.mktemp("slurm"))
    cluster = SlurmCluster(root, nodes=4, gpus=8, leaf_size=2, future=1).start()
    yield cluster
    cluster.stop()


def slurm_server(slurm: SlurmCluster, tmp_path_factory, name: str = "wanka-slurm"):
    """A wanka server on ``slurm``; ``.shared``: what the nodes share (runs, checkpoints), apart
    from the home with the database and tokens."""
    shared = top.reachable_by_tasks(tmp_path_factory.mktemp(f"{name}-shared"))
    s = start_server(
        tmp_path_factory.mktemp(f"{name}-home"),
        (
            "--backend",
            "slurm",
            "--slurm-conf",
            str(slurm.conf),
            "--health-every",
            "0.3",
            "--shared-dir",
            str(shared),
        ),
    )
    s.shared = shared
    return s


@pytest.fixture(scope="module")
def server(slurm, tmp_path_factory):
    s = slurm_server(slurm, tmp_path_factory)
    yield s
    stop_server(s)


def slurm_job(server, slurm: SlurmCluster, job_id: int, run: int = 1) -> dict:
    """Slurm's record of a run: the job ``wanka-JOB-RUN``, or its element of a grouped array (the
    server records which, beside the run's directory). An element cancelled before Slurm started
    it leaves no record of its own: ``{"job_state": "GONE"}``."""
    key = (server.shared / "runs" / str(job_id) / f"{run}.slurm").read_text().split()[0]
    slurm_id = (server.shared / "runs" / str(job_id) / f"{run}.slurm-id").read_text()
    jobs = json.loads(slurm.run("squeue", "--json", "--states=all"))["jobs"]
    if "_" not in slurm_id:
        return next(j for j in jobs if j["name"] == key == f"wanka-{job_id}-{run}")
    array, index = slurm_id.split("_")
    mine = (j for j in jobs if str(j["array_job_id"]) == array and int(index) in _array_indices(j))
    return next(mine, {"job_state": "GONE"})


def placed_on(c, job_id: int) -> list[str]:
    events = c.get(f"/v1/jobs/{job_id}/events").json()
    return [e["reason"] for e in events if e["state"] == "admitted"][-1].split("placed on ")[1].split(", ")


def test_the_inventory_is_slurms(server, slurm):
    with server.client(server.admin_token) as admin:
        nodes = admin.get("/v1/nodes").json()
    assert [(n["name"], n["model"], n["cards"], n["state"]) for n in nodes] == [
        (name, "h100", 8, "up") for name in slurm.names
    ]
    # topology.conf: two leaf switches of two nodes under one top switch (the cluster)
    assert [n["domain"] for n in nodes] == [["leaf0"], ["leaf0"], ["leaf1"], ["leaf1"]]


def test_a_two_node_gang_runs_where_wanka_placed_it_with_its_ranks_and_cards(server, slurm):
    user = make_member(server, "gang", "gang-user")
    show = "import json, os; print(json.dumps({k: v for k, v in os.environ.items()}))"
    with server.client(user) as c:
        jid = submit(c, task_groups=[{"replicas": 2, "cards": 8}], command=[PY, "-c", show])
        assert ended(c, jid)["state"] == "succeeded"
        nodes = placed_on(c, jid)
        envs = [json.loads(log_of(c, jid, task)) for task in (0, 1)]
    assert len(nodes) == 2 and nodes in (slurm.names[:2], slurm.names[2:])  # inside one leaf switch
    record = slurm_job(server, slurm, jid)
    assert record["job_state"] == "COMPLETED"
    assert slurm.run("scontrol", "show", "hostnames", record["nodes"]).split() == sorted(nodes)
    for rank, env in enumerate(envs):
        assert (env["RANK"], env["WORLD_SIZE"], env["NODE_RANK"], env["NNODES"]) == (
            str(rank),
            "2",
            str(rank),
            "2",
        )
        assert env["SLURMD_NODENAME"] == env["WANKA_NODE"] == nodes[rank]  # rank r on wanka's node r
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["WANKA_JOB_ID"] == str(jid)
        if os.geteuid() == 0:  # submitted under the tenant's own account, which owns its run
            assert env["SLURM_JOB_USER"].startswith("wk") and env["SLURM_JOB_UID"] != "0"
            run = server.shared / "runs" / str(jid) / "1"
            assert not (server.home / "runs").exists()  # nothing of a job's lies with the server's state
            assert str(run.stat().st_uid) == env["SLURM_JOB_UID"] and run.stat().st_mode & 0o077 == 0


def test_hostile_strings_stay_inert_under_slurm(server, tmp_path):
    user = make_member(server, "hostile-slurm", "hostile-slurm-user")
    canary = tmp_path / "owned"
    words = [f"$(touch {canary})", f"; touch {canary}", f"`touch {canary}`", "a\nb", "'\""]
    env = {"EVIL": f"$(touch {canary})'\"\n; touch {canary}"}
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))"
    with server.client(user) as c:
        jid = submit(c, name=f"x'; touch {canary}; '", command=[PY, "-c", program, *words], env=env)
        assert ended(c, jid)["state"] == "succeeded"
        assert json.loads(log_of(c, jid)) == [words, env["EVIL"]]
    assert not canary.exists()


def test_cancel_and_time_limit_become_scancel_whose_grace_signal_reaches_the_job(server, slurm):
    user = make_member(server, "stop-slurm", "stop-slurm-user")
    sleeper = [PY, "-c", "import time; time.sleep(600)"]
    graceful = [PY, "-c", WORKER, "100000", "0.05"]  # saves its step on SIGTERM
    with server.client(user) as c:
        cancelled = submit(c, command=graceful)
        limited = submit(c, command=sleeper, time_limit_s=2)
        wait_for(lambda: "resumes at step" in log_of(c, cancelled))
        c.post(f"/v1/jobs/{cancelled}/cancel")
        assert ended(c, cancelled)["state"] == "cancelled"
        assert "SIGTERM: saved step" in log_of(c, cancelled)
        job = ended(c, limited)
        assert job["state"] == "failed" and "time limit of 2 s" in job["reason"]
    assert slurm_job(server, slurm, cancelled)["job_state"] == "CANCELLED"
    # the limit runs from the hand-over to Slurm, which may not have started it yet (its
    # batch_sched_delay is 3 s): an element of an array cancelled then leaves no record
    assert slurm_job(server, slurm, limited)["job_state"] in ("CANCELLED", "GONE")


def test_the_failing_rank_is_named_with_its_own_exit_code(server, slurm):
    user = make_member(server, "rank-slurm", "rank-slurm-user")
    program = (  # rank 1 holds ~64 MiB, then fails
        "import os, sys, time; time.sleep(0.5)\n"
        "if os.environ['RANK'] == '1':\n    block = bytearray(64 << 20); sys.exit(3)\ntime.sleep(600)"
    )
    with server.client(user) as c:
        jid = submit(c, command=[PY, "-c", program], task_groups=[{"replicas": 2, "cards": 8}])
        job = ended(c, jid, 60)
        [row] = c.get("/v1/acct", params={"job": jid}).json()["jobs"]
    assert job["state"] == "failed" and job["reason"] == "task 1 exited with code 3", job
    # each rank's peak memory (sacct's MaxRSS), as its launcher's wait4 saw it
    tasks = {t["task"]: t for t in row["tasks"]}
    assert tasks[1]["exit_code"] == 3 and tasks[1]["max_rss_kib"] >= 64 * 1024 > tasks[0]["max_rss_kib"], (
        tasks
    )
    assert (
        slurm_job(server, slurm, jid)["job_state"] == "FAILED"
    )  # rank 0 was killed by Slurm, not by its code


def test_an_array_goes_to_slurm_in_few_submissions_and_each_element_stands_alone(server, slurm):
    """Single-card elements launched together reach Slurm as job arrays, one per node (fewer
    submissions than elements); each element still runs its own contract (its index, as wanka
    and as Slurm number it), ends with its own exit code, and a cancel stops that element only."""
    user = make_member(server, "array-slurm", "array-slurm-user")
    show = (
        "import json, os, sys; print(json.dumps([os.environ[k] for k in ('WANKA_ARRAY_INDEX', "
        "'SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_JOB_ID', 'WANKA_JOB_ID')])); "
        "sys.exit(int(os.environ['WANKA_ARRAY_INDEX']) == 5)"
    )
    with server.client(user) as c:
        array = c.post("/v1/jobs", json={"command": [PY, "-c", show], "array": "0-11", **ONE_CARD}).json()
        elements = {
            e["array_index"]: e["id"] for e in c.get("/v1/jobs", params={"array": array["id"]}).json()["jobs"]
        }
        assert sorted(elements) == list(range(12))
        for index, jid in elements.items():
            job = ended(c, jid, 60)
            assert job["state"] == ("failed" if index == 5 else "succeeded"), job["reason"]
            assert json.loads(log_of(c, jid)) == [str(index), str(index), str(array["id"]), str(jid)]
        records = [slurm_job(server, slurm, jid) for jid in elements.values()]
        assert {r["job_state"] for r in records} == {"COMPLETED", "FAILED"}
        arrays = {r["array_job_id"] for r in records if r["name"].startswith("wanka-array-")}
        assert arrays and len(arrays) + sum(not r["name"].startswith("wanka-array-") for r in records) < 12

        sleepers = c.post(
            "/v1/jobs",
            json={"command": [PY, "-c", "import time; time.sleep(600)"], "array": "0-3", **ONE_CARD},
        ).json()
        ids = [e["id"] for e in c.get("/v1/jobs", params={"array": sleepers["id"]}).json()["jobs"]]
        for jid in ids:  # running in wanka (handed to Slurm), then in Slurm
            wait_for(lambda jid=jid: job_state(c, jid)["state"] == "running")
            wait_for(lambda jid=jid: slurm_job(server, slurm, jid)["job_state"] == "RUNNING", 30)
        victim, *rest = sorted(ids)
        c.post(f"/v1/jobs/{victim}/cancel")
        assert ended(c, victim)["state"] == "cancelled"
        assert slurm_job(server, slurm, victim)["job_state"] == "CANCELLED"
        assert all(job_state(c, jid)["state"] == "running" for jid in rest)
        assert all(slurm_job(server, slurm, jid)["job_state"] == "RUNNING" for jid in rest)
        c.post(f"/v1/jobs/{sleepers['id']}/cancel", params={"array": "true"})
        for jid in rest:
            assert ended(c, jid)["state"] == "cancelled"


@pytest.mark.skipif(os.geteuid() != 0, reason="another Slurm user is needed (sbatch --uid, as root)")
def test_a_job_another_user_names_like_a_wanka_run_never_stands_for_it(server, slurm):
    """Any Slurm user may name a job ``wanka-JOB-RUN`` or ``wanka-array-…``: such an impostor,
    named after a tenant's running job, must not change what wanka sees of that job, and a
    cancel stops the real job, never the impostor."""
    user = make_member(server, "impostor-slurm", "impostor-slurm-user")
    with server.client(user) as c:
        jid = submit(c, command=[PY, "-c", "import time; time.sleep(600)"], **ONE_CARD)
        wait_for(lambda: job_state(c, jid)["state"] == "running")
        wait_for(lambda: slurm_job(server, slurm, jid)["job_state"] == "RUNNING", 30)
        impostors = [
            slurm.run("sbatch", "--parsable", "--uid=65534", "--gid=65534", "--hold", f"--job-name={name}",
                      "--output=/dev/null", "--chdir=/tmp", "--wrap=exit 3").strip()
            for name in (f"wanka-{jid}-1", f"wanka-array-{jid}-1")
        ]  # fmt: skip
        time.sleep(1.5)  # over a squeue period (SQUEUE_EVERY_S): the server has read them
        assert job_state(c, jid)["state"] == "running"
        c.post(f"/v1/jobs/{jid}/cancel")
        assert ended(c, jid)["state"] == "cancelled"
        assert slurm_job(server, slurm, jid)["job_state"] == "CANCELLED"
        jobs = json.loads(slurm.run("squeue", "--json", "--states=all"))["jobs"]
        fakes = [j for j in jobs if str(j["job_id"]) in impostors]
        assert [j["job_state"] for j in fakes] == ["PENDING", "PENDING"]  # untouched, still held
        slurm.run("scancel", *impostors)


def test_a_crash_between_a_held_submission_and_its_release_submits_nothing_twice(slurm, tmp_path):
    """Several submissions of a tick go in held and are released together. A server that died
    after the sbatch and before the release: the restarted backend finds the array by its
    recorded name, releases it and records its id; nothing is submitted again, and both runs
    end with their own exit codes."""
    home = top.reachable_by_tasks(tmp_path / "crash")
    program = "import os, sys; sys.exit(int(os.environ['CODE']))"
    launches = [
        Launch(
            9_000 + i,
            1,
            "crash",
            (PY, "-c", program),
            (TaskLaunch(0, "w", slurm.names[-1], (0,), {"CODE": str(i)}),),
            str(home / f"ckpt-{i}"),
        )
        for i in range(2)
    ]
    SlurmBackend(home, conf=str(slurm.conf), python=PY, single_user=True)._submit(launches, hold=True)
    restarted = SlurmBackend(home, conf=str(slurm.conf), python=PY, single_user=True)
    assert restarted.launch_many(launches) == {9_000: None, 9_001: None}

    def ended_codes():
        statuses = [restarted.status(lc.job_id, 1, 1)[0] for lc in launches]
        return all(t.state is TaskState.EXITED for t in statuses) and [t.exit_code for t in statuses]

    assert wait_for(ended_codes, 60) == [0, 1]
    jobs = json.loads(slurm.run("squeue", "--json", "--states=all"))["jobs"]
    mine = [j for j in jobs if j["name"] == "wanka-array-9000-1"]
    assert sorted(_number_of(j["array_task_id"]) for j in mine) == [0, 1]  # one array, two elements


def _number_of(value) -> int:
    return int(value["number"]) if isinstance(value, dict) else int(value)


def test_a_node_downed_in_slurm_is_down_in_wanka_and_its_job_resumes_elsewhere(server, slurm):
    user = make_member(server, "down-slurm", "down-slurm-user")
    with server.client(user) as c, server.client(server.admin_token) as admin:
        jid = submit(
            c,
            command=[PY, "-c", WORKER, "80", "0.05"],
            task_groups=[{"replicas": 1, "cards": 8}],
            restart={"max": 1},
        )
        wait_for(lambda: job_state(c, jid)["state"] == "running")
        ckpt = server.shared / "checkpoints" / str(jid)
        wait_for(lambda: (ckpt / "step").exists() and int((ckpt / "step").read_text()) >= 5)
        (node,) = placed_on(c, jid)
        slurm.run("scontrol", "update", f"nodename={node}", "state=down", "reason=PSU failure")
        try:
            wait_for(lambda: {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "down")
            job = ended(c, jid, 60)
            events = c.get(f"/v1/jobs/{jid}/events").json()
            assert job["state"] == "succeeded" and job["runs"] == 2, [e["reason"] for e in events]
            assert placed_on(c, jid) != [node]
            assert int(log_of(c, jid, run=2).split("resumes at step ")[1].split()[0]) >= 5
        finally:
            slurm.run("scontrol", "update", f"nodename={node}", "state=resume")
        wait_for(lambda: {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "up")


def test_a_drain_in_wanka_is_a_drain_in_slurm(server, slurm):
    with server.client(server.admin_token) as admin:
        node = slurm.names[-1]
        assert admin.post(f"/v1/nodes/{node}/drain", json={"reason": "fan"}).status_code == 200
        info = {n["name"]: n for n in json.loads(slurm.run("sinfo", "--json"))["nodes"]}[node]
        assert "DRAIN" in info["state_flags"] and info["reason"] == "wanka: fan"
        assert {n["name"]: n for n in admin.get("/v1/nodes").json()}[node]["state"] == "draining"
        admin.post(f"/v1/nodes/{node}/undrain")
        info = {n["name"]: n for n in json.loads(slurm.run("sinfo", "--json"))["nodes"]}[node]
        assert "DRAIN" not in info["state_flags"]


def test_preemption_is_a_scancel_with_a_grace_signal_and_the_victim_resumes(server, slurm):
    user = make_member(server, "preempt-slurm", "preempt-slurm-user")
    every_gpu = [{"replicas": 4, "cards": 8}]
    with server.client(user) as c:
        low = submit(
            c,
            command=[PY, "-c", WORKER, "100", "0.05"],
            task_groups=every_gpu,
            priority_class="low",
            env={"EXIT_ON_TERM": "0"},
        )
        wait_for(lambda: job_state(c, low)["state"] == "running")
        step = server.shared / "checkpoints" / str(low) / "step"
        wait_for(lambda: step.exists() and int(step.read_text()) >= 5)
        high = submit(
            c, command=[PY, "-c", "print('urgent')"], task_groups=[{"cards": 8}], priority_class="high"
        )
        assert ended(c, high, 60)["state"] == "succeeded"
        job = ended(c, low, 90)
        events = c.get(f"/v1/jobs/{low}/events").json()
        assert job["state"] == "succeeded" and job["runs"] == 2, [e["reason"] for e in events]
        assert [e["state"] for e in events][:5] == ["pending", "admitted", "running", "preempted", "pending"]
        assert "SIGTERM: saved step" in log_of(c, low, run=1)  # Slurm's SIGTERM reached it in time
        assert int(log_of(c, low, run=2).split("resumes at step ")[1].split()[0]) >= 5
    assert slurm_job(server, slurm, low, run=1)["job_state"] in ("CANCELLED", "COMPLETED")


def test_a_slurm_controller_restart_fails_nothing(server, slurm):
    """While slurmctld is away wanka changes nothing (no run is failed for it); a job submitted
    then starts once it is back, and the running one carries on."""
    user = make_member(server, "ctld-slurm", "ctld-slurm-user")
    with server.client(user) as c:
        running = submit(c, command=[PY, "-c", "import time; time.sleep(15); print('finished')"])
        wait_for(lambda: job_state(c, running)["state"] == "running")
        slurm.stop_controller()
        try:
            waiting = submit(c, command=[PY, "-c", "print('hello')"])
            # longer than the commands wait for a controller (~9 s): squeue and sinfo answer with
            # empty lists and an error, which must not read as "every job and node is gone"
            time.sleep(12)
            assert job_state(c, waiting)["state"] in ("pending", "admitted")
            assert job_state(c, running)["state"] == "running"
        finally:
            slurm.start_controller()
        for jid, output in ((waiting, "hello"), (running, "finished")):
            job = ended(c, jid, 60)
            assert (job["state"], job["runs"], log_of(c, jid).strip()) == ("succeeded", 1, output), job


# --- interactive jobs: srun --overlap into the job, bridged to rank 0's terminal -------------------


def _bridges(uid: int) -> list[int]:
    """Attachment bridges (``wanka-task.py --attach``) running as ``uid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (
                    os.stat(f"/proc/{entry}").st_uid == uid
                    and b"--attach" in Path(f"/proc/{entry}/cmdline").read_bytes()
                ):
                    out.append(int(entry))
            except OSError:
                pass
    return out


def test_an_interactive_job_on_slurm_is_a_terminal_on_rank_0s_node(server, slurm):
    from tests.security.test_interactive_attacks import attach, closed, read_until

    user = make_member(server, "term-slurm", "term-slurm-user")
    with server.client(user) as c:
        jid = submit(c, command=["sh"], kind="interactive", task_groups=[{"replicas": 2, "cards": 8}])
        wait_for(lambda: job_state(c, jid)["state"] == "running", timeout=60)
        node = placed_on(c, jid)[0]
        with attach(server, user, jid) as ws:
            seen = bytearray()
            ws.send(json.dumps({"resize": [33, 101]}))
            ws.send(b"tty; stty size; echo at-$SLURMD_NODENAME-rank-$RANK-$((6*7))\n")
            out = read_until(ws, rb"at-\S+-rank-\d-42", seen, timeout=60)
            assert b"/dev/pts/" in out and b"33 101" in out  # a real terminal, the client's size
            assert f"at-{node}-rank-0-42".encode() in out  # where wanka placed rank 0
            # what the server's environment holds never reaches the tenant through the bridge,
            # which runs as the tenant's own account (its environ is the tenant's to read)
            ws.send(
                b"for p in /proc/[0-9]*; do grep -qa -- --attach $p/cmdline 2>/dev/null && "
                b"tr '\\0' '\\n' < $p/environ | cut -d= -f1; done | sort -u | tr '\\n' ' '; "
                b"echo env-$((1+1))-done\n"
            )
            out = read_until(ws, rb"\r\n[^\r\n]*env-2-done\r\n", seen)
            names = out.rsplit(b"\r\n", 2)[-2].split()[:-1]
            assert b"PATH" in names, names  # the bridge was found and read
            # the server's own (its home, and what pytest set as it started): none passed on
            assert not {b"WANKA_HOME", b"PYTEST_CURRENT_TEST"} & set(names), names
        uid = os.stat(server.shared / "runs" / str(jid) / "1").st_uid
        wait_for(lambda: not _bridges(uid), timeout=30)  # a detach leaves no srun step behind
        with attach(server, user, jid) as ws:  # again: the scrollback, then the same shell
            seen = bytearray()
            read_until(ws, rb"at-\S+-rank-0-42", seen)
            ws.send(b"exit 3\n")
            code, _ = closed(ws, timeout=60)
            assert code == 1000
        job = ended(c, jid, 60)
        assert job["state"] == "failed" and job["reason"] == "task 0 exited with code 3", job
        assert "rank-0-42" in log_of(c, jid)  # the session's transcript is rank 0's log


def test_a_cancelled_interactive_job_on_slurm_hangs_up_its_terminal(server, slurm):
    from tests.security.test_interactive_attacks import attach, closed, read_until

    user = make_member(server, "hup-slurm", "hup-slurm-user")
    other = make_member(server, "hup-other", "hup-other-user")
    with server.client(user) as c:
        jid = submit(c, command=["sh"], kind="interactive")
        wait_for(lambda: job_state(c, jid)["state"] == "running", timeout=60)
        with attach(server, other, jid) as ws:  # another tenant: as if there were no such job
            assert closed(ws)[0] == 4404
        with attach(server, user, jid) as ws:
            ws.send(b"echo up-$((6*7))\n")
            read_until(ws, rb"up-42", bytearray(), timeout=60)
            c.post(f"/v1/jobs/{jid}/cancel")
            assert closed(ws, timeout=60)[0] == 1000
        assert ended(c, jid, 60)["state"] == "cancelled"
        with attach(server, user, jid) as ws:
            assert closed(ws)[0] == 4409


def test_nodes_joining_and_leaving_slurm_join_and_leave_wanka(server, slurm):
    """Last: the cluster grows and shrinks while jobs run. A five-node gang is refused on four
    nodes. A fifth node joins under the first leaf switch (so the nodes after it move in wanka's
    arrays, under two running gangs); wanka lists it, places a job on it (the only free node) and
    then runs the five-node gang. When the node leaves it is down in wanka; back, it runs again."""
    user = make_member(server, "grow-slurm", "grow-slurm-user")
    five = [{"replicas": 5, "cards": 8}]
    pair = [{"replicas": 2, "cards": 8}]
    show = "import os; print(os.environ['WANKA_NODE'])"
    sleeper = [PY, "-c", "import time; time.sleep(600)"]
    with server.client(user) as c, server.client(server.admin_token) as admin:

        def node(name):
            return {n["name"]: n for n in admin.get("/v1/nodes").json()}.get(name)

        r = c.post("/v1/jobs", json={"command": [PY, "-c", show], "task_groups": five})
        assert r.status_code == 422 and "can never run" in r.text, r.text
        gangs = [submit(c, command=sleeper, task_groups=pair) for _ in range(2)]  # every card busy
        for jid in gangs:
            wait_for(lambda jid=jid: job_state(c, jid)["state"] == "running")
        name = slurm.join()
        joined = wait_for(lambda: node(name), 30)
        assert (joined["model"], joined["cards"], joined["state"], joined["domain"]) == (
            "h100",
            8,
            "up",
            ["leaf0"],
        )
        assert admin.get("/v1/cluster").json()["cards"] == 40
        single = submit(c, command=[PY, "-c", show], task_groups=[{"replicas": 1, "cards": 8}])
        assert ended(c, single, 60)["state"] == "succeeded"
        assert log_of(c, single).strip() == name
        assert all(job_state(c, jid)["state"] == "running" for jid in gangs), [
            [e["reason"] for e in c.get(f"/v1/jobs/{jid}/events").json()] for jid in gangs
        ]
        for jid in gangs:
            c.post(f"/v1/jobs/{jid}/cancel")
        jid = submit(c, command=[PY, "-c", show], task_groups=five)
        assert ended(c, jid, 60)["state"] == "succeeded"
        assert sorted(log_of(c, jid, task).strip() for task in range(5)) == sorted(slurm.names)
        record = slurm_job(server, slurm, jid)
        assert slurm.run("scontrol", "show", "hostnames", record["nodes"]).split() == sorted(slurm.names)

        slurm.leave(name)
        wait_for(lambda: node(name)["state"] == "down", 30)
        assert node(name)["reason"].startswith("gone:")
        waiting = submit(c, command=[PY, "-c", show], task_groups=five)  # the node may come back
        time.sleep(1)
        assert job_state(c, waiting)["state"] == "pending"
        assert slurm.join() == name
        wait_for(lambda: node(name)["state"] == "up", 30)
        assert ended(c, waiting, 60)["state"] == "succeeded"


def test_a_service_on_slurm_is_reached_through_the_gateway_at_its_nodes_addresses(server, slurm):
    """Each replica a Slurm job on the node wanka chose; the gateway reaches it at that node's
    address (NodeAddr) and spreads requests over both."""
    import httpx

    from tests.server.services.helpers import REPLICA_APP, apply, wait_replicas

    token = make_member(server, "svc-slurm", "svc-slurm-dev")
    spec = {"name": "on-slurm", "command": REPLICA_APP, "cards": 1, "replicas": {"min": 2, "max": 2}}
    spec["readiness"] = {"path": "/ready", "interval_s": 0.3}
    with server.client(token) as c:
        apply(c, spec)
        s = wait_replicas(c, "on-slurm", ready=2, total=2, timeout=120)
        jobs = {r["job"] for r in s["replicas"]}
        nodes = {j: placed_on(c, j) for j in jobs}
    for job in jobs:  # a Slurm job runs it, where wanka placed it
        assert slurm_job(server, slurm, job)["nodes"] == ",".join(nodes[job])
    seen = set()
    with httpx.Client(base_url=server.gateway, headers={"Authorization": f"Bearer {token}"}) as gw:
        for _ in range(40):
            r = gw.get("/services/svc-slurm/on-slurm/headers")
            assert r.status_code == 200, r.text
            seen.add(int(r.json()["job"]))
    assert seen == jobs
    with server.client(token) as c:
        assert c.delete("/v1/services/on-slurm").status_code == 200
        wait_for(lambda: c.get("/v1/services/on-slurm").status_code == 404, 60)
