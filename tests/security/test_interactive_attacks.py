"""A hostile tenant against interactive sessions (`wanka run`, `wanka attach`): the server's attach
WebSocket, the supervisor's terminal relay and its Unix socket, over a real server run as root.

Tests that FAIL on the code as reviewed (each exposes a bug):

- ``test_the_quit_key_reaches_the_task_not_its_supervisor``: the supervisor leads the terminal's
  session and its process group is the terminal's foreground group for a task without job control;
  it handles SIGINT but not SIGQUIT, so Ctrl-\\ kills it (root's process, killed by a tenant's
  key). No exit record, no ``_kill_leftovers``, no device hand-back: the job "fails" (task 0 was
  killed), its cards are freed, and the task (or whatever it left) runs on under the tenant's uid.
- ``test_a_task_cannot_signal_its_supervisor_through_its_terminal``: the same from the task alone,
  under the default shell: ``tcsetpgrp`` to the session leader's group, then TIOCSTI of Ctrl-\\.
- ``test_a_client_that_never_reads_cannot_keep_a_cancelled_job_running``: the supervisor's
  blocking ``sendall`` to the server waits on a client that never reads; cancel (or preemption, or
  the time limit) sends SIGTERM, then SIGKILL to the task's cgroup, which the supervisor is not in:
  the job stays running as long as the client holds its TCP connection open.
- ``test_a_token_revoked_during_a_session_stops_typing_into_it``: the token is checked only at the
  handshake; a revoked (or expired, or its user disabled) token keeps its attachment.
- ``test_a_deeply_nested_resize_frame_is_ignored_like_any_other``: json.loads raises
  RecursionError, not caught: the attachment ends (as a closed terminal) instead.
- ``test_job_ids_past_64_bits_are_no_such_job``: OverflowError in the query; the connection drops
  (1006) with a traceback in the server's log instead of 4404.
- ``test_attaching_the_moment_a_job_runs_reaches_its_terminal``: for ~60 ms after a job turns
  ``running`` its supervisor has not bound its socket yet, and an attachment gets 4501 "the local
  backend offers no terminal (yet)", which `wanka run`/`wanka attach` report as a failure.

The others guard properties that held.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, job_state
from wanka.backends.local import MARKER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tenant accounts need a server run as root")

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-interactive-attacks"), ("--virtual-cards", "8"))
    yield s
    stop_server(s)


def submit(c, command, **extra) -> int:
    r = c.post(
        "/v1/jobs",
        json={"kind": "interactive", "task_groups": [{"cards": 1}], "command": command, **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def socket_of(server, job_id: int, run: int = 1) -> Path:
    return server.home / "runs" / str(job_id) / str(run) / "task-0.pty"


def running(server, c, command, **extra) -> int:
    """An interactive job whose terminal is open (its supervisor listens on its socket)."""
    job_id = submit(c, command, **extra)
    wait_for(lambda: job_state(c, job_id)["state"] == "running" and socket_of(server, job_id).is_socket())
    return job_id


def attach(server, token, job_id, **kw):
    address = server.url.replace("http", "ws", 1) + f"/v1/jobs/{job_id}/attach"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return connect(address, additional_headers=headers, proxy=None, open_timeout=30, **kw)


def read_until(ws, wanted: bytes, seen: bytearray, timeout: float = 30) -> bytes:
    """The terminal's output until the pattern ``wanted`` has appeared in it."""
    deadline = time.monotonic() + timeout
    while re.search(wanted, bytes(seen)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} not seen within {timeout} s: {bytes(seen[-500:])!r}")
        message = ws.recv(timeout=left)
        seen.extend(message if isinstance(message, bytes) else message.encode())
    return bytes(seen)


def closed(ws, timeout: float = 30) -> tuple[int | None, bytes]:
    """Read until the server ends the attachment: (close code, what came before)."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            seen.extend(message if isinstance(message, bytes) else message.encode())
    except ConnectionClosed:
        return ws.close_code, bytes(seen)
    except TimeoutError:
        pass
    raise AssertionError(f"the attachment was not ended within {timeout} s: {bytes(seen[-500:])!r}")


def uid_of(server, job_id: int) -> int:
    return os.stat(server.home / "work" / str(job_id)).st_uid


def uid_processes(server, uid: int) -> list[int]:
    """Processes of tenant account ``uid`` that this server's jobs started (their HOME is a job's
    work directory of this server's: other servers' tenants may share the uid)."""
    mark = f"HOME={server.home / 'work'}/".encode()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if any(v.startswith(mark) for v in fh.read().split(b"\0")):
                        out.append(int(entry))
            except OSError:
                pass
    return out


def kill_uid(server, uid: int) -> None:
    """This test's own leftovers (what its jobs left running), by pid."""
    for pid in uid_processes(server, uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cancel_all(c) -> None:
    for j in c.get("/v1/jobs").json()["jobs"]:
        if j["state"] in ("pending", "running"):
            c.post(f"/v1/jobs/{j['id']}/cancel")


def raw_attach(server, token: str, job_id: int) -> socket.socket:
    """An attachment by hand: the handshake read, then never another byte (a client that stopped
    reading, with the smallest receive buffer the kernel allows)."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/jobs/{job_id}/attach HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def task_pid(server, job_id: int) -> int:
    """The task's process (its supervisor's child), read as the server would (root)."""
    supervisor = supervisor_pid(server, job_id)
    return int(Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()[0])


def supervisor_pid(server, job_id: int) -> int:
    return int((server.home / "runs" / str(job_id) / "1" / "task-0.pid").read_text().split()[0])


# --- through the API -----------------------------------------------------------------------------


def refusal(server, job_id, token) -> int:
    """The close code of an attachment the server refuses, which must come before any output."""
    with attach(server, token, job_id) as ws:
        code, seen = closed(ws)
    assert seen == b"", seen  # not a byte of the terminal (its scrollback) before the close
    return code


def test_other_tenants_and_strangers_are_refused_before_any_output(server):
    owner = make_member(server, "api-a", "api-a-user")
    other = make_member(server, "api-b", "api-b-user")
    with server.client(owner) as c:
        job_id = running(server, c, ["sh"])
        try:
            with attach(server, owner, job_id) as ws:  # something in the scrollback to leak
                ws.send(b"echo secret-$((6*7))\n")
                read_until(ws, rb"secret-42", bytearray())
            assert refusal(server, job_id, other) == 4404
            assert refusal(server, f"000{job_id}", other) == 4404
            assert refusal(server, job_id, None) == 4401
            assert refusal(server, job_id, other + "x") == 4401
            for odd in (-1, 0, 2**31, 2**63 - 1):
                assert refusal(server, odd, owner) == 4404, odd
            with attach(server, owner, job_id) as ws:  # the owner's terminal, untouched
                ws.send(b"echo still-$((6*7))\n")
                out = read_until(ws, rb"still-42", bytearray())
            assert out.count(b"secret-42") == 1  # (the scrollback) nothing typed in between
        finally:
            cancel_all(c)


def test_job_ids_past_64_bits_are_no_such_job(server):
    """``/v1/jobs/9223372036854775808/attach``: the id reaches the database unchecked, SQLite
    raises OverflowError, and the server drops the connection (1006, a traceback in its log)
    instead of closing it with 4404 as for any other id that names no job."""
    token = make_member(server, "api-big", "api-big-user")
    for odd in (2**63, 2**64, 10**30):
        assert refusal(server, odd, token) == 4404, odd
    assert refusal(server, 10**30, server.admin_token) == 4404
    assert server.proc.poll() is None


def test_jobs_without_a_running_terminal_are_refused(server):
    token = make_member(server, "api-state", "api-state-user")
    with server.client(token) as c:
        try:
            r = c.post(
                "/v1/jobs?hold=true",
                json={"kind": "interactive", "task_groups": [{"cards": 1}], "command": ["sh"]},
            )
            held = r.json()["id"]
            done = submit(c, ["true"])
            assert ended(c, done)["state"] == "succeeded"
            batch = c.post("/v1/jobs", json={"task_groups": [{"cards": 0}], "command": ["true"]}).json()["id"]
            assert ended(c, batch)["state"] == "succeeded"
            for job_id in (held, done, batch):
                with attach(server, token, job_id) as ws:
                    code, seen = closed(ws)
                assert code == 4409 and seen == b"", (job_id, code, seen)
        finally:
            cancel_all(c)


def test_attaching_the_moment_a_job_runs_reaches_its_terminal(server):
    """`wanka attach` (and `wanka run`) attach as soon as the job says ``running``; its terminal
    must be there then, not a 4501 "this backend offers no terminal" for the tens of milliseconds
    its supervisor takes to open it."""
    token = make_member(server, "api-race", "api-race-user")
    with server.client(token) as c:
        job_id = submit(c, ["sh"])
        try:
            wait_for(lambda: job_state(c, job_id)["state"] == "running", every=0.005)
            with attach(server, token, job_id) as ws:
                try:
                    first = ws.recv(timeout=30)
                except ConnectionClosed:
                    pytest.fail(f"refused: {ws.close_code} {ws.close_reason}")
            assert isinstance(first, bytes)
        finally:
            cancel_all(c)


def test_a_token_revoked_during_a_session_stops_typing_into_it(server):
    """Revocation "takes effect at once" for every request; an attachment authenticated once, at
    its handshake, must not outlive its token by more than a moment."""
    make_member(server, "revoked", "revoked-user")
    with server.client(server.admin_token) as admin:
        made = admin.post("/v1/users/revoked-user/tokens", json={"label": "leaked"}).json()
    token = made["token"]
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
    try:
        with attach(server, token, job_id) as ws:
            ws.send(b"echo before-$((6*7))\n")
            read_until(ws, rb"before-42", bytearray())
            with server.client(server.admin_token) as admin:
                assert admin.delete(f"/v1/tokens/{made['id']}").status_code == 200
            with server.client(token) as c:
                assert c.get("/v1/jobs").status_code == 401  # everywhere else, at once
            deadline = time.monotonic() + 60  # it ends within the 2 s check; 60 s is only the failure bound
            try:
                while time.monotonic() < deadline:  # a window size now and then: harmless traffic
                    ws.send(json.dumps({"resize": [24, 80]}))
                    with contextlib.suppress(TimeoutError):
                        ws.recv(timeout=0.2)
                pytest.fail("the attachment of a revoked token still carries keys 60 s later")
            except ConnectionClosed:
                pass
    finally:
        with server.client(server.admin_token) as admin:
            admin.post(f"/v1/jobs/{job_id}/cancel")
            ended(admin, job_id)


def test_each_element_of_an_interactive_array_has_its_own_terminal(server):
    token = make_member(server, "arrays", "arrays-user")
    with server.client(token) as c:
        first = submit(c, ["sh"], array="0-1")
        try:
            second = first + 1
            assert job_state(c, second)["spec"]["array"] == "0-1"
            for job_id in (first, second):
                wait_for(
                    lambda j=job_id: (
                        job_state(c, j)["state"] == "running" and socket_of(server, j).is_socket()
                    )
                )
            for job_id, index in ((second, 1), (first, 0)):
                with attach(server, token, job_id) as ws:
                    ws.send(b"echo index-$WANKA_ARRAY_INDEX-$WANKA_JOB_ID.\n")
                    out = read_until(ws, rb"index-\d+-\d+\.", bytearray())
                    assert f"index-{index}-{job_id}.".encode() in out
        finally:
            cancel_all(c)


# --- from inside jobs: the socket and the terminal's device ---------------------------------------

REACH = """\
import os, socket, sys
path, supervisor, foreign = sys.argv[1], sys.argv[2], sys.argv[3:]
reached = []
for address in (path, f"/proc/{supervisor}/cwd/task-0.pty", f"/proc/{supervisor}/root" + path,
                "\\0task-0.pty", "\\0" + path[-100:]):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(address)
        reached.append(repr(address))
    except OSError:
        pass
    s.close()
for f in [f"/proc/{supervisor}/fd/{n}" for n in range(16)] + foreign:
    try:
        os.close(os.open(f, os.O_RDWR | os.O_NOCTTY))
        reached.append(f)
    except OSError:
        pass
print("verdict:", ("REACHED " + " ".join(reached)) if reached else "safe", flush=True)
"""


def test_no_task_reaches_a_terminal_socket_or_another_tenants_terminal(server, tmp_path):
    """Tenant A's own task (its account) and tenant B's task try A's socket by its path, through
    the supervisor's /proc links, as abstract names, and B A's terminal device itself."""
    script = tmp_path / "reach.py"
    script.write_text(REACH)
    script.chmod(0o644)
    owner = make_member(server, "reach-a", "reach-a-user")
    other = make_member(server, "reach-b", "reach-b-user")
    with server.client(owner) as a, server.client(other) as b:
        try:
            job_id = running(server, a, ["sh"])
            path, supervisor = socket_of(server, job_id), supervisor_pid(server, job_id)
            task = task_pid(server, job_id)
            terminal = os.readlink(f"/proc/{task}/fd/0")
            assert terminal.startswith("/dev/pts/")
            devices = [f"/dev/pts/{n}" for n in os.listdir("/dev/pts") if n.isdigit()]
            with attach(server, owner, job_id) as ws:
                ws.send(f"{PY} {script} {path} {supervisor}\n".encode())
                out = read_until(ws, rb"verdict: \w+[^\r\n]*", bytearray())
                assert re.search(rb"verdict: safe", out), out[-400:]
            foreign = [terminal, f"/proc/{task}/fd/0", *devices]
            r = b.post(
                "/v1/jobs",
                json={
                    "task_groups": [{"cards": 0}],
                    "command": [PY, str(script), str(path), str(supervisor), *foreign],
                },
            )
            assert ended(b, r.json()["id"])["state"] == "succeeded"
            log = b.get(f"/v1/jobs/{r.json()['id']}/logs").json()["data"]
            assert "verdict: safe" in log, log
        finally:
            cancel_all(a)


# --- the supervisor against its own terminal's keys ------------------------------------------------

STUBBORN = (  # a task that ignores the terminal's signals and outlives its terminal
    "import signal, sys, time\n"
    "for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP):\n"
    "    signal.signal(s, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "try:\n"
    "    for line in sys.stdin:\n"
    "        print('got:' + line.strip(), flush=True)\n"
    "except OSError:\n"  # EIO: the terminal is gone
    "    pass\n"
    "time.sleep(600)\n"
)


def test_the_quit_key_reaches_the_task_not_its_supervisor(server):
    """Ctrl-\\ (and Ctrl-C, Ctrl-Z) on the terminal signal its foreground process group, which for
    a task without job control (python, cat, a REPL) is the supervisor's own: the supervisor must
    survive the keys its tenant types, keep relaying, and still stop the task at the end."""
    token = make_member(server, "quitter", "quitter-user")
    with server.client(token) as c:
        job_id = running(server, c, [PY, "-c", STUBBORN])
        uid = uid_of(server, job_id)
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                read_until(ws, rb"ready", seen)
                ws.send(b"\x03\x1c\x1a")  # SIGINT, SIGQUIT, SIGTSTP to the foreground group
                ws.send(b"ping\n")
                try:
                    read_until(ws, rb"got:\S*ping", seen)  # the terminal still carries it
                except ConnectionClosed:
                    state = job_state(c, job_id)
                    pytest.fail(
                        f"the terminal closed: job {state['state']} ({state['reason']}), task "
                        f"processes left: {uid_processes(server, uid)}"
                    )
            c.post(f"/v1/jobs/{job_id}/cancel")
            assert ended(c, job_id)["state"] == "cancelled"
            wait_for(lambda: not uid_processes(server, uid), timeout=15)
        finally:
            cancel_all(c)
            kill_uid(server, uid)


INJECT = """\
import fcntl, os, signal, termios
for s in (signal.SIGTTOU, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
mine = os.getpgrp()
os.tcsetpgrp(0, os.getsid(0))  # the group of the terminal's session leader: the supervisor's
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"\\x1c")  # as if typed: Ctrl-\\ to that group
    injected = "yes"
except OSError:
    injected = "no"
os.tcsetpgrp(0, mine)
print("injected:" + injected, flush=True)
"""


def test_a_task_cannot_signal_its_supervisor_through_its_terminal(server, tmp_path):
    """The same from the task alone, under a shell with job control (the default `bash`): it
    hands the terminal to the session leader's group (the supervisor's: same session, so the
    kernel allows it) and types Ctrl-\\ into it."""
    script = tmp_path / "inject.py"
    script.write_text(INJECT)
    script.chmod(0o644)
    token = make_member(server, "injector", "injector-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
        uid = uid_of(server, job_id)
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                ws.send(f"{PY} {script}\n".encode())
                try:
                    out = read_until(ws, rb"injected:(yes|no)", seen)
                    if b"injected:no" in out:
                        pytest.skip("this kernel refuses TIOCSTI (dev.tty.legacy_tiocsti=0)")
                    ws.send(b"echo alive-$((6*7))\n")
                    read_until(ws, rb"alive-42", seen)
                except ConnectionClosed:
                    state = job_state(c, job_id)
                    pytest.fail(f"the terminal closed: job {state['state']} ({state['reason']})")
            c.post(f"/v1/jobs/{job_id}/cancel")
            assert ended(c, job_id)["state"] == "cancelled"
            wait_for(lambda: not uid_processes(server, uid), timeout=15)
        finally:
            cancel_all(c)
            kill_uid(server, uid)


SPEW = "import sys\nwhile True:\n    sys.stdout.write('y' * 1000 + '\\n')\n"


def test_a_client_that_never_reads_cannot_keep_a_cancelled_job_running(server):
    """A client that stops reading neither stalls the task's terminal nor makes the server buffer
    for it (the supervisor drops it past 1 MiB behind), and the job still ends when cancelled (or
    preempted, or out of time): the supervisor never waits on that client."""
    token = make_member(server, "sloth", "sloth-user")
    with server.client(token) as c:
        job_id = running(server, c, [PY, "-c", SPEW])
        uid = uid_of(server, job_id)
        log = server.home / "runs" / str(job_id) / "1" / "task-0.log"
        before = rss_kib(server.proc.pid)
        sock = raw_attach(server, token, job_id)
        try:
            # output goes on into the transcript well past what any buffer on the way could hold
            wait_for(lambda: log.exists() and log.stat().st_size > 8 * 1024 * 1024, timeout=60, every=0.2)
            assert rss_kib(server.proc.pid) - before < 64 * 1024  # the server holds no backlog
            assert server.client().get("/healthz").status_code == 200
            c.post(f"/v1/jobs/{job_id}/cancel")
            try:
                ended(c, job_id, timeout=12)  # grace 2 s, and then some
            except AssertionError:
                pytest.fail(f"job still {job_state(c, job_id)['state']} 12 s after cancel")
        finally:
            sock.close()
            ended(c, job_id, timeout=30)
            cancel_all(c)
            kill_uid(server, uid)


# --- what a client sends --------------------------------------------------------------------------

BAD_SIZES = [
    "not json",
    "",
    "[]",
    "null",
    '"resize"',
    "{}",
    '{"resize": null}',
    '{"resize": "ab"}',
    '{"resize": {"a": 1, "b": 2}}',
    '{"resize": [24]}',
    '{"resize": [24, 80, 1]}',
    '{"resize": [-1, 80]}',
    '{"resize": [24, -80]}',
    '{"resize": [70000, 80]}',
    '{"resize": [24, 65536]}',
    '{"resize": [1e400, 80]}',
    '{"resize": [NaN, 80]}',
    '{"resize": [Infinity, 80]}',
    '{"resize": ["24", "x"]}',
    '{"resize": [[24], [80]]}',
    '{"resize": [' + "9" * 5000 + ", 80]}",
]


def test_resize_frames_that_are_no_window_size_are_ignored(server):
    token = make_member(server, "resizer", "resizer-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                read_until(ws, rb"\$ ", seen)
                for text in BAD_SIZES:
                    ws.send(text)
                for i in range(3000):  # a flood of window sizes
                    ws.send(json.dumps({"resize": [1 + i % 200, 1 + i % 500]}))
                ws.send(json.dumps({"resize": [33, 111]}))
                ws.send(b"stty size; echo sized-$((6*7))\n")
                out = read_until(ws, rb"sized-42", seen)
                assert re.search(rb"\n33 111\r\n", out), out[-300:]
            assert server.proc.poll() is None
        finally:
            cancel_all(c)


def test_a_deeply_nested_resize_frame_is_ignored_like_any_other(server):
    """``{"resize": [[[[…]]]]}`` makes json.loads raise RecursionError, which the server does not
    catch: the attachment ends (as if the terminal had closed, close code 1000) instead of the
    frame being ignored as documented."""
    token = make_member(server, "nester", "nester-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                read_until(ws, rb"\$ ", seen)
                ws.send('{"resize": ' + "[" * 100_000 + "]" * 100_000 + "}")
                ws.send(b"echo nested-$((6*7))\n")
                try:
                    read_until(ws, rb"nested-42", seen)
                except ConnectionClosed:
                    pytest.fail(f"the attachment ended: {ws.close_code} {ws.close_reason!r}")
        finally:
            cancel_all(c)


def test_huge_frames_are_cut_or_refused_and_the_session_goes_on(server):
    token = make_member(server, "paster", "paster-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                read_until(ws, rb"\$ ", seen)
                ws.send(b" " * (16 * 2**20 - 64))  # the most uvicorn takes: cut to 64 KiB
                ws.send(b"\x15echo big-$((6*7))\n")  # ^U: the line so far is dropped
                read_until(ws, rb"big-42", seen)
            with attach(server, token, job_id) as ws:
                ws.send(b"x" * (17 * 2**20))  # past the limit: refused, the server goes on
                code, _ = closed(ws)
                assert code == 1009
            assert server.client().get("/healthz").status_code == 200
            assert job_state(c, job_id)["state"] == "running"
            with attach(server, token, job_id) as ws:  # and the session with it
                read_until(ws, rb"big-42", bytearray())  # the scrollback
                ws.send(b"echo again-$((6*7))\n")
                read_until(ws, rb"again-42", bytearray())
        finally:
            cancel_all(c)


# a terminal that takes no input: raw mode, never read; deaf to SIGTERM and SIGHUP
DEAF = r"""
import signal, sys, time, tty
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
print("deaf", flush=True)
tty.setraw(0)
time.sleep(600)
"""


def test_keystrokes_a_task_never_reads_cannot_keep_a_cancelled_job_running(server):
    """Hostile review: the supervisor wrote keystrokes to the terminal with a blocking write; a
    task that never reads filled the terminal's input queue, the supervisor hung in write(), and
    cancel, time limit and preemption could no longer end the job (it held its cards, billed).
    Keystrokes now wait in a bounded buffer, and who types waits in turn (backpressure)."""
    import threading

    token = make_member(server, "deaf", "deaf-user")
    with server.client(token) as c:
        job_id = running(server, c, [PY, "-c", DEAF])
        uid = uid_of(server, job_id)
        ws = attach(server, token, job_id)
        sent = []

        def type_forever() -> None:  # ~6 MiB: far past any terminal's input queue
            with contextlib.suppress(Exception):
                for _ in range(100):
                    ws.send(b"k" * 65536)
                    sent.append(1)

        typist = threading.Thread(target=type_forever, daemon=True)
        try:
            read_until(ws, rb"deaf", bytearray())
            typist.start()
            wait_for(lambda: len(sent) >= 3)  # keystrokes are on their way (buffers on the way fill)
            before = rss_kib(supervisor_pid(server, job_id))
            c.post(f"/v1/jobs/{job_id}/cancel")
            try:
                job = ended(c, job_id, timeout=15)  # grace 2 s, and then some
            except AssertionError:
                pytest.fail(f"job still {job_state(c, job_id)['state']} 15 s after cancel")
            assert job["state"] == "cancelled"
            assert before < 64 * 1024  # KiB: the supervisor holds at most TYPED of keystrokes
            assert server.client().get("/healthz").status_code == 200
        finally:
            ws.close()
            typist.join(10)
            cancel_all(c)
            kill_uid(server, uid)


def test_a_session_ends_with_its_main_process_though_a_child_goes_on_writing(server):
    """Hostile review: a background child that ignored SIGHUP and kept writing to the terminal
    kept the relay reading, and the job running (and billed) after its main process exited."""
    token = make_member(server, "leftover", "leftover-user")
    chatty = "(trap '' HUP; while :; do echo still-here; sleep 0.05; done) & sleep 1; exit 0"
    with server.client(token) as c:
        job_id = running(server, c, ["sh", "-c", chatty])
        uid = uid_of(server, job_id)
        try:
            job = ended(c, job_id, timeout=20)
            assert job["state"] == "succeeded", job
            wait_for(lambda: not uid_processes(server, uid))  # what it left behind is gone too
        finally:
            cancel_all(c)
            kill_uid(server, uid)


def test_many_attachments_leave_one_and_leak_nothing(server):
    owner = make_member(server, "crowd", "crowd-user")
    other = make_member(server, "crowd-b", "crowd-b-user")
    with server.client(owner) as c:
        job_id = running(server, c, ["sh"])
        fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        try:
            with contextlib.ExitStack() as stack:
                crowd = [stack.enter_context(attach(server, owner, job_id)) for _ in range(12)]
                with attach(server, other, job_id) as ws:
                    assert closed(ws)[0] == 4404

                def ended_already(ws) -> bool:
                    try:
                        while True:
                            ws.recv(timeout=0)
                    except TimeoutError:
                        return False
                    except ConnectionClosed:
                        return True

                wait_for(lambda: sum(ended_already(ws) for ws in crowd) == len(crowd) - 1)
                (survivor,) = [ws for ws in crowd if not ended_already(ws)]
                survivor.send(b"echo one-$((6*7))\n")
                read_until(survivor, rb"one-42", bytearray())
            wait_for(lambda: len(os.listdir(f"/proc/{server.proc.pid}/fd")) <= fds + 2)
        finally:
            cancel_all(c)


# --- how a session ends ---------------------------------------------------------------------------


def test_a_task_that_exits_while_the_client_keeps_typing_ends_cleanly(server):
    token = make_member(server, "typist", "typist-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"])
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                ws.send(b"env; echo env-$((6*7))\n")
                out = read_until(ws, rb"env-42", seen)
                assert MARKER.encode() not in out and server.admin_token.encode() not in out
                ws.send(b"exit 0\n")
                with contextlib.suppress(ConnectionClosed):
                    for _ in range(20_000):
                        ws.send(b"echo x\n")
            job = ended(c, job_id)
            assert job["state"] == "succeeded", job["reason"]
            rundir = server.home / "runs" / str(job_id) / "1"
            assert (rundir / "task-0.exit").exists() and not (rundir / "task-0.pty").exists()
            log = c.get(f"/v1/jobs/{job_id}/logs").json()["data"]
            assert "Traceback" not in log and "_task.py" not in log and str(rundir) not in log
        finally:
            cancel_all(c)


def test_a_time_limit_ends_a_session_and_all_it_started(server):
    token = make_member(server, "timed", "timed-user")
    with server.client(token) as c:
        job_id = running(server, c, ["sh"], time_limit_s=6)
        uid = uid_of(server, job_id)
        try:
            with attach(server, token, job_id) as ws:
                seen = bytearray()
                ws.send(b'(trap "" HUP; exec sleep 654) & sleep 600 & echo bg-$((6*7))\n')
                read_until(ws, rb"bg-42", seen)
                # A child between fork and exec can briefly show an empty environ: wait, don't sample.
                wait_for(lambda: len(uid_processes(server, uid)) >= 3, timeout=5)
                code, _ = closed(ws)  # the time limit hangs the terminal up
                assert code == 1000
            job = ended(c, job_id)
            assert job["state"] == "failed" and "time limit" in job["reason"]
            wait_for(lambda: not uid_processes(server, uid), timeout=15)
        finally:
            cancel_all(c)
            kill_uid(server, uid)
