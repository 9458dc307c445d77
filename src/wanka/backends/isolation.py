"""Who a task runs as, and what it may touch: per-tenant Unix accounts, private directories and
cgroups, for the local backend run as root.

The model is Slurm's (slurmd runs each job under its user's uid; slurmstepd, not the job, records
how it ended) and the kubelet's (the container runtime, not the container, reports the exit code):

- each tenant's tasks run under that tenant's own account: uid ``first + tenant id`` from the
  configured range (``wk<uid>``, created with ``useradd`` when missing), or an existing account the
  operator maps in ``$WANKA_HOME/task-accounts.json`` (``{"tenant": "unix-user"}``);
- the server's state (database, tokens, supervisors' records, other tenants' directories) is
  created private (umask 077) under a home only its owner can list (0711): a task can reach its
  own job's work and checkpoint directories (0700, its account's) and nothing else there;
- each task gets a cgroup (v2, where one is mounted writable) with ``pids.max``, ``memory.max``
  and ``cpu.max`` where those controllers are on, and ``cgroup.kill`` to stop every process it
  started, however it detached; without cgroups, RLIMIT_NPROC bounds each tenant's processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wanka.isolation")

ACCOUNTS_FILE = "task-accounts.json"
GECOS = "wanka task account"


class IsolationError(RuntimeError):
    """A tenant's task cannot be given its own identity here (range exhausted, account missing)."""


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    name: str
    home: str


_CREATING = threading.Lock()


def tenant_account(home: Path, tenant: str, tenant_id: int, uids: tuple[int, int]) -> Account:
    """The Unix account ``tenant``'s tasks run as: the operator's mapping, else ``wk<uid>`` with
    uid ``uids[0] + tenant_id`` (created when missing). Raises IsolationError."""
    mapped = _mapping(home).get(tenant)
    if mapped is not None:
        try:
            pw = pwd.getpwnam(mapped)
        except KeyError:
            raise IsolationError(
                f"{ACCOUNTS_FILE} maps {tenant} to {mapped!r}, which is no account"
            ) from None
        if pw.pw_uid == 0:
            raise IsolationError(f"{ACCOUNTS_FILE} maps {tenant} to root; tasks never run as root")
        return Account(pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir)
    first, last = uids
    uid = first + tenant_id
    if not first <= uid <= last:
        raise IsolationError(f"tenant {tenant} (id {tenant_id}) is past the task uid range {first}-{last}")
    name = f"wk{uid}"
    with _CREATING:  # launches may run side by side (Slurm's): one creation per account
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            _create(uid, name, tenant)
            try:
                pw = pwd.getpwuid(uid)
            except KeyError:  # no useradd here: the bare uid still isolates
                return Account(uid, uid, name, "/nonexistent")
    if pw.pw_name != name or pw.pw_gecos != GECOS:
        raise IsolationError(f"uid {uid} belongs to {pw.pw_name}, not a wanka account; choose another range")
    return Account(pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir)


def _mapping(home: Path) -> dict[str, str]:
    try:
        with open(home / ACCOUNTS_FILE) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise IsolationError(f"{home / ACCOUNTS_FILE}: {exc}") from exc
    return {str(k): str(v) for k, v in data.items()}


def _create(uid: int, name: str, tenant: str) -> None:
    if shutil.which("useradd") is None:
        log.warning("no useradd: tenant %s's tasks run as bare uid %d", tenant, uid)
        return
    for cmd in (
        ["groupadd", "--gid", str(uid), name],
        [
            "useradd",
            "--uid",
            str(uid),
            "--gid",
            str(uid),
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            GECOS,
            name,
        ],
    ):
        for attempt in range(5):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            # 1 and 10: /etc/passwd or /etc/group locked (another server on this host creating an
            # account at the same moment): try again, the lock is held for milliseconds
            if out.returncode not in (1, 10) or "lock" not in out.stderr:
                break
            time.sleep(0.1 * (attempt + 1))
        # 4 and 9: the id or the name exists (a concurrent launch made it; the caller checks it
        # is a wanka account)
        if out.returncode not in (0, 4, 9):
            raise IsolationError(f"{' '.join(cmd[:1])} failed: {out.stderr.strip()}")
    log.info("created account %s (uid %d) for tenant %s's tasks", name, uid, tenant)


def launch_account(home: Path, tenant: str, tenant_id: int, uids: tuple[int, int]) -> Account:
    """:func:`tenant_account` for a launch: ValueError (the job's reason) instead of
    IsolationError when this server must not run the tenant's job at all."""
    try:
        return tenant_account(home, tenant, tenant_id, uids)
    except IsolationError as exc:
        raise ValueError(str(exc)) from None


def private_dir(path: Path, account: Account | None, mode: int = 0o700) -> None:
    """``path`` exists, is a real directory (not a link), of ``mode`` (0700; 0711 for one others
    only pass through), owned by ``account`` (None: this process's user)."""
    path.mkdir(parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise IsolationError(f"{path} is not a directory")
    if account is not None and (st.st_uid, st.st_gid) != (account.uid, account.gid):
        os.chown(path, account.uid, account.gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def write_file(path: Path, data: bytes, account: Account | None = None, mode: int = 0o600) -> None:
    """Write ``path`` whole (a ``.tmp`` beside it, then a rename) and never through a link. For
    directories whose account may write in them while the server (root) writes there: a link
    planted as the file or as its ``.tmp`` is replaced or refused, never followed to a file of
    the server's (a planted ``.tmp`` that comes back between unlink and open fails the write)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a link is removed, not followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if account is not None:
            os.fchown(fd, account.uid, account.gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # replaces a link at ``path`` itself


def traversable(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users cannot pass through, or None."""
    p = Path(path).resolve()
    for d in [*reversed(p.parents), p]:
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return d
        except OSError:
            return d
    return None


def home_digest(home: Path) -> str:
    """16 hex digits that tell one server home's tasks (their marker, their cgroup tree
    ``wanka-<digest>``) from those of other servers on the machine."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def cgroup_root() -> Path | None:
    """A writable cgroup v2 hierarchy (``/sys/fs/cgroup`` on a unified host, ``…/unified`` on a
    hybrid one), or None."""
    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    for fields in mounts:
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            root = Path(fields[4])
            if os.access(root, os.W_OK):
                return root
    return None


def enable_controllers(group: Path) -> set[str]:
    """Turn on, for ``group``'s children, every controller the parent offers that wanka uses."""
    try:
        offered = set((group / "cgroup.controllers").read_text().split())
    except OSError:
        return set()
    wanted = offered & {"pids", "memory", "cpu"}
    for name in wanted:
        try:
            (group / "cgroup.subtree_control").write_text(f"+{name}")
        except OSError:
            wanted = wanted - {name}
    return wanted
