"""A member's job attacks the server and another tenant, as a hostile tenant would: every attempt
fails, and the job itself still runs normally. Real server on loopback, real processes, as root (as
CI runs): tasks run under their tenants' own accounts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, log_of, submit
from wanka.backends.isolation import cgroup_root, home_digest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tenant accounts need a server run as root")

PY = sys.executable

VICTIM = r"""
import os, time
ckpt = os.environ["WANKA_CHECKPOINT_DIR"]
with open(os.path.join(ckpt, "weights"), "w") as fh:
    fh.write("victim's checkpoint")
print("victim's log line", flush=True)
time.sleep(600)
"""

# Each attack returns "blocked: …" or "DONE: …"; the report is the task's output.
ATTACKER = r"""
import json, os, signal, sys, time
home = os.path.dirname(os.path.dirname(os.environ["WANKA_CHECKPOINT_DIR"]))
me, victim = os.environ["WANKA_JOB_ID"], sys.argv[1]
victim_pid, victim_supervisor = int(sys.argv[2]), int(sys.argv[3])
report = {"uid": os.getuid(), "home": home}

def attempt(name, action):
    try:
        out = action()
        report[name] = "DONE: " + repr(out)[:200]
    except Exception as exc:
        report[name] = "blocked: " + type(exc).__name__

def read(path):
    with open(path, "rb") as fh:
        return fh.read()

attempt("read admin token", lambda: read(f"{home}/admin-token"))
attempt("read victim env", lambda: read(f"{home}/runs/{victim}/1/task-0.json"))
attempt("read victim log", lambda: read(f"{home}/runs/{victim}/1/task-0.log"))
attempt("read victim checkpoint", lambda: read(f"{home}/checkpoints/{victim}/weights"))
attempt("list victim checkpoints", lambda: os.listdir(f"{home}/checkpoints/{victim}"))
attempt("list victim work dir", lambda: os.listdir(f"{home}/work/{victim}"))
attempt("read victim environ", lambda: read(f"/proc/{victim_pid}/environ"))
attempt("list runs", lambda: os.listdir(f"{home}/runs"))
attempt("signal victim task", lambda: os.kill(victim_pid, signal.SIGKILL))
attempt("signal victim group", lambda: os.killpg(victim_supervisor, signal.SIGKILL))
attempt("write database", lambda: open(f"{home}/wanka.db", "r+b").write(b"x"))
attempt("write database log", lambda: open(f"{home}/wanka.db-wal", "ab").write(b"x"))
own = f"{home}/runs/{me}/1"
def swap_log():
    os.symlink(f"{home}/admin-token", f"{own}/link")
    os.replace(f"{own}/link", f"{own}/task-0.log")
attempt("swap own log for a link", swap_log)
attempt("forge own exit record", lambda: open(f"{own}/task-0.exit", "w").write("0"))
attempt("signal own supervisor", lambda: os.kill(os.getppid(), signal.SIGKILL))

children = []
def fork_bomb():
    while len(children) < 100_000:
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children.append(pid)
attempt("fork without bound", fork_bomb)
report["forked"] = len(children)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps(report), flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(
        tmp_path_factory.mktemp("wanka-security-home"),
        ("--virtual-cards", "4", "--virtual-nodes", "2", "--max-processes-per-tenant", "64"),
    )
    yield s
    stop_server(s)


def _task_pids(home: Path, job: int) -> tuple[int, int]:
    """(the task's pid, its supervisor's pid), read as the server would (root)."""
    supervisor = int((home / "runs" / str(job) / "1" / "task-0.pid").read_text().split()[0])
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return int(children[0]), supervisor


def _uid_processes(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def _job_processes(home: Path, jobs: tuple[int, ...], uids: tuple[int, ...]) -> list[int]:
    """The live processes of ``jobs``: those in the jobs' cgroups where tasks have them, else
    every process of ``uids`` (which, pids being reused and uids shared by every test server's
    first tenants, can include another test's leftovers)."""
    digest = home_digest(home)
    if cgroup_root() is None:
        return [p for u in uids for p in _uid_processes(u)]
    marks = tuple(f"/wanka-{digest}/job{j}-" for j in jobs)
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup") as fh:
                    if any(m in fh.read() for m in marks):
                        out.append(int(entry))
            except OSError:
                pass
    return out


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:  # pid (comm) state ppid …; comm may hold spaces
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(gone)"


def test_a_members_job_can_reach_neither_the_server_nor_another_tenant(server):
    victim_token = make_member(server, "victim", "victim-user")
    attacker_token = make_member(server, "attacker", "attacker-user")
    with server.client(victim_token) as v, server.client(attacker_token) as a:
        victim = submit(v, command=[PY, "-c", VICTIM], env={"HF_TOKEN": "hf_victims_secret"})
        wait_for(lambda: "victim's log line" in log_of(v, victim))
        task_pid, supervisor = _task_pids(server.home, victim)
        attacker = submit(a, command=[PY, "-c", ATTACKER, str(victim), str(task_pid), str(supervisor)])
        job = ended(a, attacker, timeout=60)
        output = log_of(a, attacker)
        assert job["state"] == "succeeded", (job, output)  # the attacker's own job ran normally
        report = json.loads(output.strip().splitlines()[-1])
        # the two tenants' tasks run under two accounts, neither the server's
        victim_uid = os.stat(f"/proc/{task_pid}").st_uid
        assert report["uid"] not in (0, os.getuid(), victim_uid) and victim_uid != 0
        done = {k: v for k, v in report.items() if isinstance(v, str) and v.startswith("DONE")}
        assert not done, done
        assert 0 < report["forked"] < 64  # the tenant's process limit stopped the fork bomb
        # the victim still runs, untouched, and its secrets are where they were
        assert v.get(f"/v1/jobs/{victim}").json()["state"] == "running"
        assert "hf_victims_secret" not in output
        assert Path(f"/proc/{task_pid}").exists()
        v.post(f"/v1/jobs/{victim}/cancel")
        assert ended(v, victim)["state"] == "cancelled"
    # nothing of either tenant is left running (what is, by its command line, if it fails; a slow
    # machine takes a while to reap a fork bomb's SIGKILLed children)
    deadline, uids = time.monotonic() + 60, (victim_uid, report["uid"])
    while (left := _job_processes(server.home, (victim, attacker), uids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, {p: _cmdline(p) for p in left}


def test_the_servers_files_are_its_own(server):
    home = server.home
    assert os.stat(home).st_mode & 0o777 == 0o711  # passable to reach a job's own directories, not listable
    for name in ("wanka.db", "admin-token", "server.log") if server.embedded else ("admin-token",):
        assert os.stat(home / name).st_mode & 0o077 == 0, name
    for sub in ("runs", "checkpoints", "work"):
        assert os.stat(home / sub).st_mode & 0o777 == 0o711


def test_cancel_ends_every_process_a_task_started_even_one_that_left_its_group(server):
    token = make_member(server, "escapee", "escapee-user")
    escape = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"  # its own session and group: a group signal misses it
        "    time.sleep(600)\n"
        "print('forked', flush=True); time.sleep(600)\n"
    )
    with server.client(token) as c:
        jid = submit(c, command=[PY, "-c", escape])
        wait_for(lambda: "forked" in log_of(c, jid))
        task_pid, _ = _task_pids(server.home, jid)
        uid = os.stat(f"/proc/{task_pid}").st_uid
        # the task and its escaped child (only these: another test's leftovers may share the uid)
        ours = [p for p in _uid_processes(uid) if task_pid in (p, _parent(p))]
        assert len(ours) == 2
        c.post(f"/v1/jobs/{jid}/cancel")
        assert ended(c, jid)["state"] == "cancelled"
    wait_for(lambda: not _job_processes(server.home, (jid,), (uid,)), timeout=30)


def test_a_task_that_leaves_a_daemon_behind_is_not_billed_as_ended_while_it_runs(server):
    """A task that daemonises and exits 0 has its leftovers stopped at its end: nothing holds the
    card after the run stopped being billed."""
    token = make_member(server, "daemoniser", "daemon-user")
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(600)\n"
        "print('parent exits', flush=True)\n"
    )
    with server.client(token) as c:
        jid = submit(c, command=[PY, "-c", daemon])
        assert ended(c, jid)["state"] == "succeeded"
        uid = os.stat(server.home / "work" / str(jid)).st_uid
    wait_for(lambda: not _job_processes(server.home, (jid,), (uid,)), timeout=30)


def test_signals_from_a_task_reach_no_process_of_the_server(server):
    token = make_member(server, "signaller", "signal-user")
    with server.client(token) as c:
        jid = submit(c, command=[PY, "-c", f"import os, signal; os.kill({server.proc.pid}, signal.SIGKILL)"])
        job = ended(c, jid)
    assert job["state"] == "failed" and "exited with code 1" in job["reason"]  # PermissionError
    assert server.proc.poll() is None
    assert os.kill(server.proc.pid, 0) is None


@pytest.mark.parametrize("planted", ["tasks.json", "tasks.json.tmp"])
def test_the_server_never_writes_through_a_link_planted_in_a_run_directory(tmp_path, planted):
    """Under Slurm a run's directory is its tenant's account's (the tasks write their logs
    there), and the server, as root, writes the run's files into it: a link another job of the
    tenant planted there, as the file or as its temporary, must be replaced, never followed to a
    file of the server's."""
    from wanka.backends.isolation import write_file

    server_file = tmp_path / "server-state"
    server_file.write_text("the server's own")
    run = tmp_path / "run"
    run.mkdir()
    (run / planted).symlink_to(server_file)
    write_file(run / "tasks.json", b'{"argv": ["true"]}')
    assert server_file.read_text() == "the server's own"
    assert not (run / "tasks.json").is_symlink() and (run / "tasks.json").read_text() == '{"argv": ["true"]}'
    assert not (run / "tasks.json.tmp").exists()


def test_an_exit_code_file_that_is_a_link_a_fifo_or_huge_is_no_code(tmp_path):
    """Under Slurm each rank's launcher writes ``exit-R`` (``CODE [rss=KIB]``) in the run
    directory, which is the job's own: the job may put a link to /dev/zero there (the server would
    read forever), a FIFO (it would wait for ever), a link to a file of the server's (it would
    learn whether that holds a number), or a number no process exits with (one the database cannot
    hold stopped the control loop: hostile review). None of them is a record; a plain file with a
    code of 0-255 is, with its peak memory where given."""
    from wanka.backends.slurm import _rank_record

    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    secret = tmp_path / "secret"
    secret.write_text("42")
    (tmp_path / "link").symlink_to(secret)
    (tmp_path / "huge").write_text("1" * 10_000)
    (tmp_path / "wide").write_text("9" * 25 + " rss=1")
    (tmp_path / "negative").write_text("-1")
    (tmp_path / "plain").write_text("3\n")
    (tmp_path / "memory").write_text("137 rss=65536\n")
    names = ("zero", "fifo", "link", "huge", "wide", "negative", "plain", "memory")
    assert [_rank_record(tmp_path / n) for n in names] == [
        *[(None, None)] * 6,
        (3, None),
        (137, 65536),
    ]
