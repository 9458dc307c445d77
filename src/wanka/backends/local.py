"""The local backend: tasks as processes on this machine.

It finds this machine's accelerators with the vendors' tools where present, or offers virtual
cards (so everything works on a laptop), optionally split into several virtual nodes so that
multi-node gangs run for real. Each task runs under a small supervisor (``_task.py``) in its own
process group; everything about a run lives in files under ``$WANKA_HOME/runs/JOB/RUN``:

    task-N.json   what the supervisor starts (argv, environment, limits)
    task-N.pid    the supervisor's pid and start time (guards against pid reuse)
    task-N.log    the task's stdout and stderr
    task-N.exit   its exit code and end time, written by the supervisor when the task ends

Those files, and the marker each supervisor carries in its environment, let a restarted server
adopt tasks still running and learn how the others ended, without starting any of them twice.

Run as root, the backend isolates tenants (``backends.isolation``): a task runs under its tenant's
own account, in its job's own directories (``work/JOB`` as its cwd, HOME and TMPDIR, and
``checkpoints/JOB``, 0700 and the tenant's), while the run directory above stays the server's
(0700): a task can neither read another job's environment nor forge its own exit record. Not root,
or with ``single_user``, every task runs as the server's own user and can read everything the
server can: such a server refuses a second tenant's jobs unless ``single_user`` says so knowingly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from wanka.backends import isolation
from wanka.backends.base import Backend, Launch, TaskState, TaskStatus, Terminal, read_log, rendezvous_port
from wanka.models.hardware import default_catalog

log = logging.getLogger("wanka.local")

SUPERVISOR = Path(__file__).with_name("_task.py")
MARKER = "WANKA_LOCAL_TASK"  # in each supervisor's environment: HOME-DIGEST:JOB:RUN:TASK
# passed from the server's environment to tasks; nothing else is (no tokens, no server settings)
PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "VIRTUAL_ENV")

# Each vendor's management tool (its presence says the driver stack is installed), the device files
# its driver creates (one per card; counting them needs no parsing of the tool's output), and the
# catalog model to assume when nothing names it (override with --accelerator).
VENDORS = (
    ("nvidia-smi", r"nvidia\d+", None),  # the model comes from `nvidia-smi --query-gpu=name`
    ("npu-smi", r"davinci\d+", "ascend-910b2"),  # Huawei Ascend
    ("cnmon", r"cambricon_dev\d+", "mlu590"),  # Cambricon MLU
    ("xpu-smi", r"xpu\d+", "p800"),  # Kunlunxin XPU
    ("hy-smi", r"dri/renderD\d+", "k100-ai"),  # Hygon DCU (render nodes of its ROCm-style driver)
)


def discover(catalog=None, dev: str = "/dev") -> tuple[str, int] | None:
    """(accelerator model, cards) found on this machine, or None."""
    catalog = catalog or default_catalog()
    for tool, pattern, fallback in VENDORS:
        if shutil.which(tool) is None:
            continue
        cards = _count_devices(dev, pattern)
        model = fallback
        if tool == "nvidia-smi":
            try:
                out = subprocess.run(
                    [tool, "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            names = [line.strip() for line in out.splitlines() if line.strip()]
            model = _catalog_id(catalog, names[0]) if names else None
            cards = len(names) or cards
        elif tool == "npu-smi" and not cards:  # no device files visible (a container): ask the tool
            try:
                out = subprocess.run([tool, "info", "-l"], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            cards = next((int(line.split(":")[1]) for line in out.splitlines() if "Total Count" in line), 0)
        if model and cards:
            return model, cards
    return None


def device_files(dev: str) -> list[str]:
    """The device files of the first vendor whose tool is here, in device-id order (device id d is
    the d-th), or [] (virtual cards, or a driver that shows none)."""
    for tool, pattern, _ in VENDORS:
        if shutil.which(tool) is None:
            continue
        folder, _, name = pattern.rpartition("/")
        try:
            entries = [e for e in os.listdir(os.path.join(dev, folder)) if re.fullmatch(name, e)]
        except OSError:
            return []
        number = re.compile(r"\d+$")
        return [os.path.join(dev, folder, e) for e in sorted(entries, key=lambda e: int(number.search(e)[0]))]
    return []


def _count_devices(dev: str, pattern: str) -> int:
    folder, _, name = pattern.rpartition("/")
    try:
        entries = os.listdir(os.path.join(dev, folder))
    except OSError:
        return 0
    return sum(1 for e in entries if re.fullmatch(name, e))


def _catalog_id(catalog, name: str) -> str | None:
    """The catalog's id for a device name such as 'NVIDIA H200' (tried whole, then word by word)."""
    for candidate in (name, *name.replace("NVIDIA", "").split()):
        try:
            return catalog.get(candidate.strip()).id
        except Exception:
            continue
    return None


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 32768  # the kernel's default


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    when there is no such live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with its NUL


def socket_root() -> Path:
    """Where replicas' sockets go: short paths on a filesystem of this user's (root: /run/wanka;
    otherwise $XDG_RUNTIME_DIR/wanka, or /tmp/wanka-UID checked to be this user's)."""
    if os.geteuid() == 0:
        return Path("/run/wanka")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "wanka"
    root = Path(tempfile.gettempdir()) / f"wanka-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():  # another user's, planted
        raise RuntimeError(
            f"{root} is not a directory of uid {os.geteuid()}: replicas' sockets cannot go there"
        )
    return root


class LocalBackend(Backend):
    name = "local"
    terminals = True

    def __init__(
        self,
        home: Path,
        virtual_cards: int | None = None,
        virtual_nodes: int = 1,
        accelerator: str | None = None,
        health_check: list[str] | None = None,
        dev: str = "/dev",
        single_user: bool = False,
        task_uids: tuple[int, int] = (2_000_000, 2_099_999),
        pids_per_task: int = 4096,
        processes_per_tenant: int | None = None,
    ):
        self.home = Path(home)
        self.runs = self.home / "runs"
        self.checkpoints = self.home / "checkpoints"
        self.work = self.home / "work"
        self.sockets = socket_root() / isolation.home_digest(self.home)  # services' replicas
        self.single_user = single_user
        self.isolated = os.geteuid() == 0 and not single_user
        self.task_uids = task_uids
        # a tenant may not use up the machine's pids: a quarter of pid_max at most (default 16384)
        self.pids_per_task = pids_per_task
        self.processes_per_tenant = processes_per_tenant or min(16384, _pid_max() // 4)
        for d in (self.runs, self.checkpoints, self.work):
            d.mkdir(parents=True, exist_ok=True)
        if self.isolated:  # tasks pass through to their own directories, and list nothing
            for d in (self.home, self.runs, self.checkpoints, self.work):
                os.chmod(d, 0o711)
            blocked = isolation.traversable(self.home)
            if blocked is not None:
                raise ValueError(
                    f"home: tasks run under their tenants' accounts and cannot pass through {blocked}; "
                    f"`chmod o+x {blocked}`, or choose a home they can reach (WANKA_HOME=/var/lib/wanka)"
                )
            blocked = isolation.traversable(Path(sys.executable))
            if blocked is not None:
                log.warning(
                    "tasks run under their tenants' accounts and cannot reach %s (through %s): "
                    "`python` in a command will not start; `chmod o+x %s` or install Python elsewhere",
                    sys.executable,
                    blocked,
                    blocked,
                )
        # tells this home's tasks from those of other servers on the machine
        self.digest = isolation.home_digest(self.home)
        self.cgroups = None
        root = isolation.cgroup_root() if os.geteuid() == 0 else None
        if root is not None:
            self.cgroups = root / f"wanka-{self.digest}"
            with contextlib.suppress(OSError):
                self.cgroups.mkdir(exist_ok=True)
                isolation.enable_controllers(root)
                isolation.enable_controllers(self.cgroups)
            self.cgroup_mount = root
            if not self.cgroups.is_dir():
                self.cgroups = None
        catalog = default_catalog()
        found = None if virtual_cards else discover(catalog, dev)
        self.devices: list[str] = []  # device files by device id, where the cards are real
        if found is not None:
            self.model, self.cards = found
            self.virtual = False
            self.devices = device_files(dev)
            if self.isolated:  # an idle card is root's alone: a task gets its own cards' for its run
                for path in self.devices:
                    with contextlib.suppress(OSError):
                        if os.stat(path).st_uid == 0:
                            os.chmod(path, 0o600)
        else:
            self.model, self.cards = (accelerator or "ascend-910c"), (virtual_cards or 8)
            self.virtual = True
        if accelerator:
            self.model = catalog.get(accelerator).id
        if virtual_nodes < 1 or self.cards % virtual_nodes:
            raise ValueError(
                f"virtual_nodes: {virtual_nodes} does not divide {self.cards} cards; "
                f"choose a divisor of {self.cards}"
            )
        self.nodes = virtual_nodes
        self.health_check = health_check
        self.children: dict[int, subprocess.Popen] = {}
        self.adoptable = self._scan()
        # a task's end wakes the control loop at once (pidfds in one epoll, one watcher thread)
        self._epoll = select.epoll()
        self._watched: dict[int, int] = {}  # pidfd -> pid
        self._lock = threading.Lock()
        threading.Thread(target=self._watch_exits, name="wanka-local-exits", daemon=True).start()
        for pid in self.adoptable.values():
            self._watch(pid)

    # --- inventory -----------------------------------------------------------------------------

    def cluster_spec(self) -> dict:
        cpus = os.cpu_count() or 1
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
        kind = "virtual" if self.virtual else "discovered"
        return {
            "name": "local",
            "description": f"this machine: {self.cards} {kind} {self.model} cards on {self.nodes} node(s)",
            "tiers": [],
            "pools": [
                {
                    "name": "local",
                    "accelerator": self.model,
                    "nodes": self.nodes,
                    "cards_per_node": self.cards // self.nodes,
                    "cpus": max(1, cpus // self.nodes),
                    "memory_gib": max(1, memory // self.nodes),
                }
            ],
        }

    def node_address(self, node: str) -> str:
        return "127.0.0.1"  # every virtual node is this machine

    def free_port(self, node: str) -> int:
        return rendezvous_port()

    def checkpoint_dir(self, job_id: int) -> str:
        return str(self.checkpoints / str(job_id))

    def run_dir(self, job_id: int, run: int) -> Path:
        return self.runs / str(job_id) / str(run)

    def service_endpoint(self, job_id: int, run: int, node: str, port: int) -> tuple[str, dict[str, str]]:
        """A Unix socket in a directory of the job's own (0700, the tenant's account): on one
        machine every tenant's tasks share the loopback, where a port is anyone's to connect to
        (and to take first); a socket there is the replica's tenant's and the server's only. The
        directory is under :attr:`sockets` (``/run/wanka/<home digest>`` as root), not the home:
        a socket's path holds 107 bytes at most."""
        path = self.sockets / str(job_id) / f"replica-{run}.sock"
        return f"unix:{path}", {"WANKA_SOCKET": str(path)}

    def cgroup(self, job_id: int, run: int, task: int) -> Path | None:
        return None if self.cgroups is None else self.cgroups / f"job{job_id}-run{run}-task{task}"

    def _identity(self, launch: Launch) -> isolation.Account | None:
        """The account the job's tasks run as (None: this server's own user). Raises ValueError
        when this server must not run the job at all."""
        if self.isolated:
            return isolation.launch_account(self.home, launch.tenant, launch.tenant_id, self.task_uids)
        if not self.single_user and launch.tenant:  # one tenant only: a second could read the first
            first = self.home / "only-tenant"
            try:
                fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, launch.tenant.encode())
                os.close(fd)
            except FileExistsError:
                owner = first.read_text()
                if owner != launch.tenant:
                    raise ValueError(
                        f"this server runs as uid {os.geteuid()}, not root: its tasks run as one user "
                        f"and could read each other's files, so it runs {owner}'s jobs only. Run it as "
                        "root to isolate tenants, or start it with --single-user to accept that"
                    ) from None
        return None

    # --- tasks ---------------------------------------------------------------------------------

    def launch(self, launch: Launch) -> None:
        # isolated, the supervisor enters the workdir as the job's account, which says only "cannot
        # enter" (root's look would tell a tenant whether any path exists)
        if not self.isolated and launch.workdir and not os.path.isdir(launch.workdir):
            raise ValueError(f"workdir {launch.workdir!r} is no directory on this machine")
        socket_path = launch.user_env.get("WANKA_SOCKET", "")
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"a replica's socket {socket_path} is longer than a Unix socket path may be "
                f"({MAX_SOCKET_PATH} bytes): give the server a shorter WANKA_HOME"
            )
        account = self._identity(launch)
        if socket_path:  # a service's replica: its socket's directory is its tenant's alone
            isolation.private_dir(self.sockets.parent, None, 0o711)
            isolation.private_dir(self.sockets, None, 0o711)
            isolation.private_dir(Path(socket_path).parent, account)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)  # an earlier run's, or one the job left
        rundir = self.run_dir(launch.job_id, launch.run)
        isolation.private_dir(rundir.parent, None)
        isolation.private_dir(rundir, None)
        workdir = self.work / str(launch.job_id)
        isolation.private_dir(workdir, account)
        isolation.private_dir(Path(launch.checkpoint_dir), account)
        base = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        # `python` in a command is the server's own interpreter (its virtual environment) first
        base["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), base.get("PATH", os.defpath)])
        if account is not None:  # nothing of the server's account: the job's own home and names
            base.update(HOME=str(workdir), TMPDIR=str(workdir), USER=account.name, LOGNAME=account.name)
        cpus = sorted(os.sched_getaffinity(0))
        next_cpu = 0
        for task in launch.tasks:
            if self._task_status(launch.job_id, launch.run, task.index).state is not TaskState.ABSENT:
                continue  # started before (this process or one before a restart): never twice
            pinned = []
            if task.cpus:  # a contiguous share of this machine's CPUs, round robin
                pinned = [cpus[(next_cpu + i) % len(cpus)] for i in range(min(task.cpus, len(cpus)))]
                next_cpu += task.cpus
            stem = rundir / f"task-{task.index}"
            cgroup = self.cgroup(launch.job_id, launch.run, task.index)
            spec = {
                "argv": list(launch.argv),
                "env": {**base, **launch.user_env, **task.env},
                "cwd": launch.workdir or str(workdir),
                "log": str(stem) + ".log",
                "exit": str(stem) + ".exit",
                # an interactive job's first task gets a terminal, reached through this socket
                "pty": f"task-{task.index}.pty" if launch.interactive and task.index == 0 else None,
                "cpus": pinned,
                "memory_bytes": task.memory_gib * 2**30,
                "uid": account.uid if account else None,
                "gid": account.gid if account else None,
                "cgroup": str(cgroup) if cgroup else None,
                "cgroup_mount": str(self.cgroup_mount) if cgroup else None,
                "pids_max": self.pids_per_task,
                "nproc": self.processes_per_tenant if account else None,
                # its cards' device files: the job's account's while it runs, root's otherwise
                "devices": [self.devices[d] for d in task.devices if d < len(self.devices)]
                if account
                else [],
            }
            _write(stem.with_suffix(".json"), json.dumps(spec))
            # the supervisor's own complaints land in the task's log too
            fd = os.open(str(stem) + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            # born with the stop signals blocked: one sent before the supervisor can pass it on
            # waits for it (the mask is this thread's, inherited across fork and exec)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
            with os.fdopen(fd, "ab") as log_file, _mask_restored(mask):
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(SUPERVISOR), str(stem) + ".json"],
                    env={
                        "PATH": os.environ.get("PATH", ""),
                        MARKER: f"{self.digest}:{launch.job_id}:{launch.run}:{task.index}",
                    },
                    cwd=rundir,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,  # its own process group: signals reach the whole task
                )
            self.children[proc.pid] = proc
            self._watch(proc.pid)
            _write(stem.with_suffix(".pid"), f"{proc.pid} {_start_time(proc.pid) or ''}\n")

    async def open_terminal(self, job_id: int, run: int) -> Terminal | None:
        """The supervisor's socket ``task-0.pty`` in the run's directory, waited for up to 10 s:
        a task shows running a moment before its supervisor opens the terminal."""
        path = self.run_dir(job_id, run) / "task-0.pty"
        for _ in range(100):
            if path.is_socket():
                break
            await asyncio.sleep(0.1)
        else:
            return None
        # the socket's path may exceed a sockaddr's 108 bytes: reach it through its directory
        folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{folder}/{path.name}")
        except OSError:  # the task ended in between
            return None
        finally:
            os.close(folder)

        async def close() -> None:
            writer.close()

        return Terminal(reader, writer, close)

    def adopt(self) -> None:
        """Supervisors of this home that another server process started (one that crashed, or a
        leader this standby replaces) are watched like this process's own."""
        self.adoptable = self._scan()
        for pid in self.adoptable.values():
            if pid not in self.children:
                self._watch(pid)

    def _watch(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already, or no pidfds here: the loop's periodic look finds it
            self.on_change()
            return
        with self._lock:
            self._watched[fd] = pid
            self._epoll.register(fd, select.EPOLLIN)

    def _watch_exits(self) -> None:
        while True:
            ready = self._epoll.poll(1.0)
            if not ready:
                continue
            with self._lock:
                for fd, _ in ready:
                    self._epoll.unregister(fd)
                    os.close(fd)
                    self._watched.pop(fd, None)
            self.on_change()

    def status(self, job_id: int, run: int, tasks: int) -> list[TaskStatus]:
        return [self._task_status(job_id, run, i) for i in range(tasks)]

    def _task_status(self, job_id: int, run: int, task: int) -> TaskStatus:
        """Running while its supervisor lives (whatever files say); then the supervisor's record of
        how it ended (exit code from its own ``waitpid``, end time, why it never started), written
        where only the server's account can write when tenants are isolated."""
        stem = self.run_dir(job_id, run) / f"task-{task}"
        pid = self._live_pid(job_id, run, task)
        if pid is not None:
            return TaskStatus(task, TaskState.RUNNING)
        record = _read(str(stem) + ".exit")
        if record is not None:
            self._reap(job_id, run, task)
            code, ended, rest = [*record.split(" ", 2), "", ""][:3]
            rss = None
            if rest.startswith("rss="):  # older supervisors wrote no peak memory
                rss_text, _, rest = rest.partition(" ")
                rss = int(rss_text[4:]) if rss_text[4:].isdigit() else None
            ended_at = float(ended) if ended else None
            return TaskStatus(task, TaskState.EXITED, int(code), ended_at, rest.strip(), rss)
        if _read(str(stem) + ".pid") is not None:
            # the supervisor is gone without writing a record: it was killed (SIGKILL)
            return TaskStatus(task, TaskState.EXITED, None)
        return TaskStatus(task, TaskState.ABSENT)

    def _live_pid(self, job_id: int, run: int, task: int) -> int | None:
        stem = self.run_dir(job_id, run) / f"task-{task}"
        recorded = _read(str(stem) + ".pid")
        if recorded is not None:
            pid_s, _, started = recorded.partition(" ")
            pid = int(pid_s)
            child = self.children.get(pid)
            if child is not None and child.poll() is not None:
                del self.children[pid]
                return None
            now = _start_time(pid)
            return pid if now is not None and (not started or now == started) else None
        pid = self.adoptable.get((job_id, run, task))  # started just before a crash, pid unrecorded
        if pid is not None and _start_time(pid) is not None:
            return pid
        return None

    def _reap(self, job_id: int, run: int, task: int) -> None:
        recorded = _read(str(self.run_dir(job_id, run) / f"task-{task}") + ".pid")
        if recorded:
            child = self.children.pop(int(recorded.split()[0]), None)
            if child is not None:
                child.wait()

    def signal(self, job_id: int, run: int, sig: int = signal.SIGTERM) -> None:
        """``sig`` to every task's process group; SIGKILL, where tasks have cgroups, to every
        process in them instead (a task that left its group dies too; its supervisor survives
        to record the end)."""
        rundir = self.run_dir(job_id, run)
        if not rundir.exists():
            return
        for pid_file in rundir.glob("task-*.pid"):
            task = int(pid_file.name.split("-")[1].split(".")[0])
            pid = self._live_pid(job_id, run, task)
            if pid is None:
                continue
            group = self.cgroup(job_id, run, task)
            if sig == signal.SIGKILL and group is not None and group.is_dir():
                with contextlib.suppress(OSError):
                    (group / "cgroup.kill").write_text("1")
                    continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        for (j, r, _), pid in self.adoptable.items():
            if (j, r) == (job_id, run) and _start_time(pid) is not None and sig != signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)

    def logs(self, job_id: int, run: int, task: int, offset: int, limit: int) -> tuple[bytes, int]:
        return read_log(self.run_dir(job_id, run) / f"task-{task}.log", offset, limit)

    def unhealthy_nodes(self, nodes: list[str]) -> dict[str, str]:
        """Runs the operator's health check once per node (WANKA_NODE names it); a non-zero exit
        marks the node unhealthy, with the check's last line of output as the reason."""
        if not self.health_check:
            return {}
        bad = {}
        for node in nodes:
            try:
                out = subprocess.run(
                    self.health_check,
                    env={**{k: os.environ[k] for k in PASS_ENV if k in os.environ}, "WANKA_NODE": node},
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                bad[node] = f"health check could not run: {exc}"
                continue
            if out.returncode != 0:
                lines = (out.stdout + out.stderr).strip().splitlines()
                bad[node] = f"health check failed ({out.returncode}): {lines[-1] if lines else ''}"
        return bad

    def _scan(self) -> dict[tuple[int, int, int], int]:
        """Supervisors of this home still alive (from an earlier server), by (job, run, task)."""
        found = {}
        prefix = f"{MARKER}={self.digest}:".encode()
        me = os.geteuid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != me:  # a task's process, not a supervisor
                    continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    env = fh.read()
            except OSError:
                continue
            for var in env.split(b"\0"):
                if var.startswith(prefix):
                    _, job, run, task = var.decode().split("=", 1)[1].split(":")
                    found[(int(job), int(run), int(task))] = int(entry)
        return found


@contextlib.contextmanager
def _mask_restored(mask: set[signal.Signals]):
    """This thread's signal mask back to ``mask`` on leaving."""
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return text or None
