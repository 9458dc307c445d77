"""What every backend does, and the contract every task process receives.

The control loop decides; a backend only starts, signals and watches what it was told to. Each
run of a job (its first start, or a restart after a failure or preemption) is a *launch*: one
process per task. Launches are idempotent per task — a backend starts a task only if that task of
that run was never started — so a control plane that crashed between deciding and recording can
launch again without starting anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from wanka.core import Cluster, Placement


class BackendUnavailable(RuntimeError):
    """The backend cannot be reached now (its controller restarting, say): try again later; nothing
    about the job is wrong."""


class TaskState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"  # with an exit code (128 + N for signal N, as shells report it)
    ABSENT = "absent"  # never started, or vanished without a trace (lost)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    index: int
    state: TaskState
    exit_code: int | None = None
    ended_at: float | None = None  # UNIX seconds, as the backend saw it end (None: unknown)
    note: str = ""  # why it never started, in words (from the backend, never from the task)
    max_rss_kib: int | None = None  # peak resident memory (sacct's MaxRSS), where the backend knows it

    def __post_init__(self) -> None:
        # what a backend read from a job's own files must never reach the database out of range:
        # exit codes are 0-255 (128 + N for signal N), memory below 2**53 KiB; else unknown
        if self.exit_code is not None and not 0 <= self.exit_code <= 255:
            object.__setattr__(self, "exit_code", None)
        if self.max_rss_kib is not None and not 0 <= self.max_rss_kib < 2**53:
            object.__setattr__(self, "max_rss_kib", None)


@dataclass(frozen=True, slots=True)
class TaskLaunch:
    index: int  # the job's task index (= torch.distributed RANK)
    role: str
    node: str
    devices: tuple[int, ...]  # device ids the task may see (cards x devices per card)
    env: dict[str, str]  # the whole contract: WANKA_*, visibility, rendezvous
    cpus: int = 0
    memory_gib: int = 0


@dataclass(frozen=True, slots=True)
class Launch:
    job_id: int
    run: int  # 1 for the first start, +1 for each restart
    name: str
    argv: tuple[str, ...]
    tasks: tuple[TaskLaunch, ...]
    checkpoint_dir: str
    user_env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    tenant: str = ""  # whose job: backends that isolate tenants run it under the tenant's identity
    tenant_id: int = 0
    interactive: bool = False  # task 0 runs on a terminal that `open_terminal` reaches


@dataclass(frozen=True, slots=True)
class Terminal:
    """An open connection to an interactive task's terminal (:meth:`Backend.open_terminal`):
    keystroke and window-size frames go to ``writer``, the terminal's bytes come from ``reader``;
    ``close`` ends the connection (the task runs on)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    close: Callable[[], Awaitable[None]]


class Backend(ABC):
    """Where tasks really run. One instance per control plane; called from the control loop only."""

    name: str = ""
    # whether cluster_spec() may change while the server runs (the control loop then follows it)
    inventory_may_change: bool = False
    # runs the control loop hands to one launch_many call at most: the loop stays responsive, and
    # jobs show running as they start (a local launch forks processes; a Slurm one is an sbatch)
    launches_per_tick: int = 64
    # called (from any thread) when a task may have changed state: the control loop wakes up
    on_change: Callable[[], None] = staticmethod(lambda: None)

    @abstractmethod
    def cluster_spec(self) -> dict:
        """This backend's inventory as a cluster spec document (models.cluster)."""

    @abstractmethod
    def node_address(self, node: str) -> str:
        """The address other tasks reach ``node`` at (MASTER_ADDR)."""

    @abstractmethod
    def free_port(self, node: str) -> int:
        """A port free on ``node`` now, for the job's rendezvous (MASTER_PORT)."""

    @abstractmethod
    def checkpoint_dir(self, job_id: int) -> str:
        """The job's checkpoint directory, the same for every run."""

    @abstractmethod
    def launch(self, launch: Launch) -> None:
        """Start every task of this run not started before. Returns at once."""

    terminals: bool = False  # interactive jobs get a terminal (open_terminal) on this backend

    async def open_terminal(self, job_id: int, run: int) -> Terminal | None:
        """A connection to a running interactive run's terminal (task 0), for the server only,
        framed as ``backends._pty_relay`` says; None when it is not open (not yet, or any more)
        or this backend has none. Called on the server's event loop, never the control loop's
        thread: it touches no state of the backend's own."""
        return None

    def launch_many(self, launches: list[Launch]) -> dict[int, Exception | None]:
        """:meth:`launch` for each (job id -> None, or what it raised). A backend whose launches
        wait on a slow call (Slurm's sbatch) overrides this to make them at once. After a
        :class:`BackendUnavailable` the rest are not tried: they get it too, to be tried later."""
        out: dict[int, Exception | None] = {}
        for i, launch in enumerate(launches):
            try:
                self.launch(launch)
                out[launch.job_id] = None
            except BackendUnavailable as exc:
                out.update({later.job_id: exc for later in launches[i:]})
                break
            except Exception as exc:
                out[launch.job_id] = exc
        return out

    @abstractmethod
    def status(self, job_id: int, run: int, tasks: int) -> list[TaskStatus]:
        """Each task of the run: running, exited (with its code) or absent."""

    @abstractmethod
    def signal(self, job_id: int, run: int, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to every process of every running task of the run."""

    @abstractmethod
    def logs(self, job_id: int, run: int, task: int, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of a task's output from ``offset`` (negative: that many bytes before
        the end); the data and the next offset."""

    def adopt(self) -> None:
        """This server takes over scheduling (at start, or from a leader that died): find the
        tasks still running that an earlier server started. Default: nothing to find (status()
        asks the backend's own records)."""
        return None

    def set_node_state(self, node: str, state: str, reason: str) -> None:
        """An operator drained (``draining``) or undrained (``up``) ``node`` in wanka; a backend with
        its own view of nodes mirrors it. Default: nothing to do."""
        return None

    def unhealthy_nodes(self, nodes: list[str]) -> dict[str, str]:
        """Which of ``nodes`` fail their health check now, with why. Default: none."""
        return {}

    def service_endpoint(self, job_id: int, run: int, node: str, port: int) -> tuple[str, dict[str, str]]:
        """Where a service's replica (this run of the job) listens, as the gateway reaches it
        (``host:port``, or ``unix:PATH``), and what its task is told of it. Default: ``port`` on
        the node's address, in ``$PORT``."""
        return f"{self.node_address(node)}:{port}", {"PORT": str(port)}


def inventory_spec(
    name: str,
    title: str,
    pools: dict[tuple[str, int, int, int], list[str]],
    tiers: list[str],
    domains: dict[str, list[str]],
    states: dict[str, str],
) -> dict:
    """A backend's nodes as a cluster spec document (models.cluster): ``pools`` maps (catalog
    model, cards, CPUs, memory GiB) to the names of the nodes alike in those, which keep their
    names; pools are named ``NAME-1``, ``NAME-2``, ... in sorted order."""
    return {
        "name": name,
        "description": f"{title}: {sum(len(v) for v in pools.values())} nodes",
        "tiers": tiers,
        "node_domains": domains,
        "pools": [
            {
                "name": f"{name}-{i}",
                "accelerator": model,
                "nodes": len(names),
                "cards_per_node": cards,
                "cpus": cpus,
                "memory_gib": mem,
                "node_names": names,
            }
            for i, ((model, cards, cpus, mem), names) in enumerate(sorted(pools.items()), 1)
        ],
        "node_states": states,
    }


def task_launches(
    job_id: int,
    run: int,
    cluster: Cluster,
    placement: Placement,
    master_addr: str,
    master_port: int,
    checkpoint_dir: str,
) -> tuple[TaskLaunch, ...]:
    """The contract of ARCHITECTURE.md for every task of a placement.

    Ranks follow the placement's order (group by group, replica by replica); nodes are numbered in
    order of first appearance (NODE_RANK), and LOCAL_RANK counts the job's tasks on the same node.
    """
    model = cluster.models[cluster.model_index[placement.model]]
    per_card = model.devices_per_card
    tasks = list(placement.tasks())
    node_rank: dict[int, int] = {}
    local: dict[int, int] = {}
    for _, node, _, _ in tasks:
        node_rank.setdefault(node, len(node_rank))
    per_node: dict[int, int] = {}
    for _, node, _, _ in tasks:
        per_node[node] = per_node.get(node, 0) + 1
    out = []
    for rank, (role, node, _, cards) in enumerate(tasks):
        local_rank = local.get(node, 0)
        local[node] = local_rank + 1
        devices = tuple(c * per_card + d for c in cards for d in range(per_card))
        group = next(g for g in placement.groups if g.role == role)
        env = {
            "WANKA_JOB_ID": str(job_id),
            "WANKA_RUN": str(run),
            "WANKA_TASK_INDEX": str(rank),
            "WANKA_TASK_ROLE": role,
            "WANKA_NODE": cluster.node_names[node],
            "WANKA_CHECKPOINT_DIR": checkpoint_dir,
            model.visible_devices_env: ",".join(map(str, devices)),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(len(tasks)),
            "RANK": str(rank),
            "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(per_node[node]),
            "NODE_RANK": str(node_rank[node]),
            "NNODES": str(len(node_rank)),
        }
        out.append(
            TaskLaunch(rank, role, cluster.node_names[node], devices, env, group.cpus, group.memory_gib)
        )
    return tuple(out)


def read_log(path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a log file from ``offset`` and the next offset (nothing yet: none).
    A negative ``offset`` counts from the end: ``-N`` reads the last N bytes (a live tail).

    Never follows a link and reads only a regular file with no other name: a task that replaced
    its log with a link to another file (the admin token, another tenant's log) gets nothing
    served (PermissionError)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b"", offset
    except OSError as exc:  # ELOOP: a link
        raise PermissionError(f"{os.path.basename(path)} is not a log file the task wrote") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a hard link is another file's too
            raise PermissionError(f"{os.path.basename(path)} is not a log file the task wrote")
        if offset < 0:
            offset = max(0, st.st_size + offset)
        if offset >= st.st_size:  # nothing there yet (and no seek past what a file can hold)
            return b"", offset
        fh.seek(offset)
        data = fh.read(limit)
    return data, offset + len(data)


# Rendezvous ports come from below Linux's default ephemeral range (32768-60999): a port picked
# there could be taken, between the pick and the job's bind, by any outgoing connection.
PORTS = range(20000, 32768)
_handed: dict[int, float] = {}  # port -> when: not handed out again for a minute


def rendezvous_port(local: bool = True) -> int:
    """A port for a job's MASTER_PORT. ``local``: checked free on this machine now; otherwise (a
    remote node) only not handed out here recently."""
    now = time.monotonic()
    for port, at in list(_handed.items()):
        if now - at > 60:
            del _handed[port]
    for _ in range(200):
        port = random.choice(PORTS)
        if port in _handed:
            continue
        if local:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("", port))
                _handed[port] = now
                return port
            continue
        _handed[port] = now
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
