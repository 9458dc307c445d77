"""A real `wanka server` process on loopback with a real SQLite file, stopped by its own pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import tests.conftest as top
from wanka.backends.isolation import cgroup_root, home_digest
from wanka.backends.local import MARKER

# a job that runs until it is stopped (two cards, one task)
SLEEP = {
    "name": "sleeper",
    "task_groups": [{"replicas": 1, "cards": 2}],
    "command": [sys.executable, "-c", "import time; time.sleep(600)"],
}


def wait_for(check, timeout: float = 20.0, every: float = 0.05):
    """Poll ``check`` until it returns something true; fail the test with the last value if not."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s: last value {value!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    home: Path
    admin_token: str
    proc: subprocess.Popen
    database: str  # the SQLAlchemy URL it runs on
    gateway: str = ""  # the services' gateway, http://127.0.0.1:PORT

    @property
    def embedded(self) -> bool:
        return self.database.startswith("sqlite")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def start_server(
    home: Path,
    extra: tuple[str, ...] = (),
    user: str | None = None,
    cwd: Path | None = None,
    isolated: bool = False,
) -> Server:
    """The embedded SQLite database under ``home``, or (WANKA_TEST_POSTGRES=1) a PostgreSQL database
    of this home's own. ``user``: run it as that Unix user (the test runs as root); ``cwd``: its
    working directory (default: the test's); ``isolated``: Python's -I, as the ``wanka`` script
    runs it (no working directory on its path)."""
    home.mkdir(parents=True, exist_ok=True)
    top.reachable_by_tasks(home)
    env = {**os.environ, "WANKA_HOME": str(home)}
    database = f"sqlite:///{home / 'wanka.db'}"
    if top.PG_BASE is not None:
        database = top.new_database(home)
    # a port free when asked may be taken before the server binds it (by another worker's
    # server or task): then the same server is started again on others, a few times at most
    for attempt in range(3):
        port = free_port()
        gateway = [] if "--gateway-port" in extra else ["--gateway-port", str(free_port())]
        logged = (home / "server.log").stat().st_size if (home / "server.log").exists() else 0
        proc = _launch(home, env, database, port, gateway, extra, user, cwd, isolated)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(proc, home, url, logged)
            break
        except RuntimeError as exc:
            if attempt == 2 or "Address already in use" not in str(exc):
                raise
    token = (home / "admin-token").read_text().strip()
    gateway_url = f"http://127.0.0.1:{gateway[1]}" if gateway else ""
    return Server(url, home, token, proc, database, gateway_url)


def _launch(home, env, database, port, gateway, extra, user, cwd, isolated) -> subprocess.Popen:
    # a file, not a pipe: a chatty server never blocks on it (the server keeps its own copy)
    with open(home / "server.log", "a") as log:
        return subprocess.Popen(
            [
                *(["runuser", "-u", user, "--"] if user else []),
                sys.executable,
                *(["-I"] if isolated else []),
                "-m",
                "wanka.cli.main",
                "server",
                "--port",
                str(port),
                "--database",
                database,
                "--tick",
                "0.1",
                "--grace",
                "2",
                *gateway,
                *extra,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )


def _wait_healthy(proc: subprocess.Popen, home: Path, url: str, logged: int) -> None:
    """Until the server answers /healthz; RuntimeError (with the end of what it logged past
    ``logged`` bytes) if it exits or does not come up in 90 s (the margin is for a host busy with
    the suite's other workers)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(home / "server.log") as log:
                log.seek(logged)
                raise RuntimeError(f"server exited: {log.read()[-4000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()  # SIGTERM: `runuser` passes it on to the server (SIGKILL would orphan it)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    raise RuntimeError("server did not come up in 90 s")


def stop_server(server: Server, tasks_too: bool = True) -> None:
    """Stop the server by its pid; with ``tasks_too``, also what its tasks still run (a stopped
    server leaves them running, for its successor to adopt; a test's leave nothing behind)."""
    if server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    if tasks_too:
        kill_tasks(server.home)


def kill_tasks(home: Path) -> None:
    """Every task process group of ``home``'s supervisors (found by the marker they carry), and,
    where tasks have cgroups, every process in them: a task's process that left its group (its
    own session) would outlive the test, and a later test's server, whose tenants get the same
    uids, would count it as its own."""
    digest = home_digest(home)
    root = cgroup_root()
    if root is not None and (root / f"wanka-{digest}").is_dir():
        with contextlib.suppress(OSError):
            (root / f"wanka-{digest}" / "cgroup.kill").write_text("1")
    marker = f"{MARKER}={digest}:".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if not any(v.startswith(marker) for v in fh.read().split(b"\0")):
                    continue
            os.killpg(int(entry), signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wanka-home"))
    yield s
    stop_server(s)


@pytest.fixture
def drained(server):
    """Every node drained: submitted jobs wait, so their waiting state can be examined."""
    with server.client(server.admin_token) as admin:
        names = [n["name"] for n in admin.get("/v1/nodes").json()]
        for name in names:
            assert admin.post(f"/v1/nodes/{name}/drain", json={"reason": "tests"}).status_code == 200
        yield
        for name in names:
            admin.post(f"/v1/nodes/{name}/undrain")
