"""A throwaway PostgreSQL for the control-plane tests, when WANKA_TEST_POSTGRES=1 (as `.ci/run`'s second
pass sets it): its own data directory, listening on 127.0.0.1 only, stopped by its own pid."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BASE: str | None = None  # postgresql+psycopg://postgres@127.0.0.1:PORT while the instance runs
_databases: dict[str, str] = {}


def reachable_by_tasks(path: Path) -> Path:
    """As root, the server runs tasks under tenant accounts, which must pass through every
    directory above the server's home (pytest makes its temporary directories 0700)."""
    if os.geteuid() == 0:
        for d in [*reversed(path.parents), path]:
            if d.exists() and str(d).startswith(tempfile.gettempdir()):
                d.chmod(d.stat().st_mode | 0o001)
    return path


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's, passable by tasks that run under tenant accounts (see reachable_by_tasks)."""
    return reachable_by_tasks(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package (.ci/run does)")
    return found


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def new_database(home: Path | str) -> str:
    """A database of its own for the server whose state lives in ``home`` (the same one again for
    a restart of that server)."""
    key = str(home)
    if key not in _databases:
        import psycopg

        name = f"wanka_{len(_databases)}"
        with psycopg.connect(PG_BASE.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _databases[key] = f"{PG_BASE}/{name}"
    return _databases[key]


@pytest.fixture(scope="session", autouse=True)
def postgres():
    global PG_BASE
    if os.environ.get("WANKA_TEST_POSTGRES") != "1":
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="wanka-pg-"))
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(
        _as_owner([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    opts = f"-h 127.0.0.1 -p {port} -k {root}"  # TCP on loopback only; the socket in our own directory
    subprocess.run(
        _as_owner([_pg_bin("pg_ctl"), "start", "-w", "-D", str(data), "-o", opts, "-l", str(root / "log")]),
        check=True,
        capture_output=True,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    PG_BASE = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    try:
        yield PG_BASE
    finally:
        PG_BASE = None
        os.kill(pid, signal.SIGINT)  # fast shutdown, by its own pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
