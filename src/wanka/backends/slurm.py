"""The Slurm backend: wanka decides, Slurm launches, confines and accounts.

Each run of a job becomes one Slurm batch job pinned to exactly the nodes wanka chose
(``--nodelist``, ``--nodes``, ``--ntasks``, ``--gres``); its script starts every rank with ``srun``
in the order wanka placed them (``--distribution=arbitrary`` with a host file). The job's argv and
environment never appear in the script: they are in a JSON file that a small launcher
(``_slurm_task.py``) reads on each node, picking its rank's contract by ``SLURM_PROCID`` and
starting the argv directly (no shell) — hostile strings stay data. Everything about a run is under
``$WANKA_HOME/runs/JOB/RUN`` on a file system the nodes share (task logs and exit codes included).

Identity: a server run as root submits each tenant's jobs under that tenant's own account
(``sbatch --uid/--gid``, the accounts of ``backends.isolation``; the account must exist on the nodes,
as with any Slurm user), so Slurm confines and accounts them as that user. The run and checkpoint
directories are the account's (0700); the server's database and tokens never lie there.

Idempotence: the Slurm job is named ``wanka-JOB-RUN``; before submitting, the backend records the
name and looks it up in Slurm after a restart, so a server that crashed between ``sbatch`` and
recording the id submits nothing twice.

Throughput: a run of one task needs no ``srun`` step (the batch script, already on the node with
the job's cards, starts it), which halves what slurmctld does per job. Single-task runs launched in
the same tick with the same account, node and cards go to Slurm as one job array
(``sbatch --array``, named ``wanka-array-JOB-RUN`` after its first run): one ``sbatch`` for up to a
node's worth of jobs. Each element picks its run by ``SLURM_ARRAY_TASK_ID``, its name in Slurm is
recorded as ``NAME_INDEX``, and status and ``scancel`` address that element alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wanka.backends import isolation
from wanka.backends._pty_relay import READY
from wanka.backends.base import (
    Backend,
    BackendUnavailable,
    Launch,
    TaskState,
    TaskStatus,
    Terminal,
    inventory_spec,
    read_log,
    rendezvous_port,
)
from wanka.backends.local import _catalog_id
from wanka.models.hardware import default_catalog

log = logging.getLogger("wanka.slurm")

LAUNCHER = Path(__file__).with_name("_slurm_task.py")
PTY_RELAY = Path(__file__).with_name("_pty_relay.py")  # an interactive rank's terminal (copied beside)
TERMINAL_SOCKET = "task-0.pty"  # in the run's directory, on rank 0's node
ATTACH_WAIT_S = 30.0  # for srun's step into the job and the bridge's first byte
# sbatch calls side by side: slurmctld answers several at once, but more than a few only queue up
# on its locks (measured on the 64-node testbed: 4 beat both 1 and 16; docs/benchmarks.md)
SBATCH_AT_ONCE = 4
SQUEUE_EVERY_S = 1.0
KEYS_KEPT = 100_000  # runs whose Slurm name is kept in memory
ARRAY_MAX = 1000  # elements of one grouped submission (Slurm's default MaxArraySize is 1001)
# Slurm job states: still going (not started counts as going: wanka already holds its cards)
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING"}
# not NOT_RESPONDING: Slurm sets it for a moment on every resume, and a node that stays silent is
# set DOWN by Slurm itself after SlurmdTimeout
UNHEALTHY = {"DOWN", "DRAIN", "FAIL", "INVALID_REG", "POWERED_DOWN"}
WANKA_REASON = "wanka: "  # drains wanka asked for: not a fault of the node


# what the Slurm commands say while slurmctld cannot be reached (restarting, failing over)
UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted",
    "backup controller in standby mode",
)


class SlurmError(RuntimeError):
    pass


class SlurmBackend(Backend):
    name = "slurm"
    terminals = True  # interactive runs: open_terminal
    inventory_may_change = True  # nodes join (FUTURE nodes resumed, new slurmds) and leave
    # a node's single-task runs are one sbatch: 1,024 runs are ~130 sbatch calls, 4 side by side,
    # a second or two on an idle controller; handed over before Slurm starts them (its
    # batch_sched_delay is 3 s), they do not compete with their own starts for slurmctld
    launches_per_tick = 1024

    def __init__(
        self,
        home: Path,
        conf: str | None = None,
        partition: str | None = None,
        python: str = "python3",
        single_user: bool = False,
        task_uids: tuple[int, int] = (2_000_000, 2_099_999),
        shared: Path | None = None,
    ):
        self.home = Path(home)
        shared = Path(shared) if shared else self.home  # what the nodes see: runs, checkpoints
        self.runs, self.checkpoints = shared / "runs", shared / "checkpoints"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.isolated = os.geteuid() == 0 and not single_user
        self.task_uids = task_uids
        if self.isolated:  # jobs pass through to their own directories, and list nothing
            for d in (shared, self.runs, self.checkpoints):
                os.chmod(d, 0o711)
        self.env = dict(os.environ)
        if conf:
            self.env["SLURM_CONF"] = conf
        self.partition, self.python = partition, python
        if shutil.which("sbatch", path=self.env.get("PATH")) is None:
            raise ValueError("backend: the Slurm commands (sbatch, squeue, sinfo, scancel) are not on PATH")
        self._jobs: dict[str, dict] = {}
        self._jobs_at = 0.0
        self._nodes: list[dict] = []
        self._nodes_at = -1.0
        self._topology_key: tuple | None = None
        self._topology_value: tuple[list[str], dict[str, list[str]]] = ([], {})
        self.addresses: dict[str, str] = {}
        self._keys: dict[tuple[int, int], tuple[str, int]] = {}  # (job, run) -> name, owner uid
        self._arrays: dict[str, set[int]] = {}  # grouped submissions Slurm lists -> their users
        self._dropped: set[str] = set()  # elements cancelled before they started: no record left
        self._drains: set[asyncio.Future] = set()  # attachments' srun stderr, read and dropped
        self._sinfo()  # fails here, at start, when Slurm cannot be reached

    # --- commands ------------------------------------------------------------------------------

    def _run(self, *argv: str, check: bool = True, input: str | None = None) -> str:
        try:
            out = subprocess.run(
                list(argv), env=self.env, capture_output=True, text=True, timeout=60, input=input
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailable(f"{argv[0]} did not answer in 60 s") from exc
        if out.returncode != 0 and any(s in out.stderr for s in UNREACHABLE):
            raise BackendUnavailable(f"{argv[0]}: {out.stderr.strip()}")
        if check and out.returncode != 0:
            raise SlurmError(f"{argv[0]} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def _json(self, *argv: str) -> dict:
        """A ``--json`` command's document. Without a controller, squeue and sinfo exit 0 with
        empty lists and an ``errors`` entry: that is no answer, not an empty cluster."""
        data = json.loads(self._run(*argv))
        if data.get("errors"):
            raise BackendUnavailable(f"{argv[0]}: {data['errors']}")
        return data

    def _sinfo(self, fresh: bool = True) -> list[dict]:
        """Slurm's nodes (of the partition). The health check reads them fresh; the inventory,
        read right after it in the same tick, may take them from up to a second ago."""
        if fresh or time.monotonic() - self._nodes_at > 1.0:
            nodes = self._json("sinfo", "--json")["nodes"]
            if self.partition:
                nodes = [n for n in nodes if self.partition in n.get("partitions", [])]
            self._nodes, self._nodes_at = nodes, time.monotonic()
            self.addresses.update({n["name"]: n.get("address") or n["name"] for n in nodes})
        return self._nodes

    def _squeue(self, fresh: bool = False) -> dict[str, dict]:
        """Every job Slurm still knows (finished ones stay for MinJobAge), by name (any user may
        name a job anything: :meth:`_job` picks the run's own by its owner); read at most once a
        SQUEUE_EVERY_S: the whole list in JSON costs slurmctld a read lock and real CPU, and read
        5 times a second it slowed every sbatch of a burst (docs/benchmarks.md)."""
        if fresh or time.monotonic() - self._jobs_at > SQUEUE_EVERY_S:
            jobs = self._json("squeue", "--json", "--states=all")["jobs"]
            self._jobs, self._arrays = {}, {}
            for j in jobs:
                if j["name"].startswith("wanka-array-"):  # by element: NAME_INDEX
                    self._arrays.setdefault(j["name"], set()).add(_number(j.get("user_id")))
                    for index in _array_indices(j):
                        self._jobs.setdefault(f"{j['name']}_{index}", []).append(j)
                elif j["name"].startswith("wanka-"):
                    self._jobs.setdefault(j["name"], []).append(j)
            self._jobs_at = time.monotonic()
        return self._jobs

    # --- inventory -----------------------------------------------------------------------------

    def cluster_spec(self) -> dict:
        """Slurm's nodes as pools of identical nodes (same GPU model and count, CPUs, memory);
        nodes down or drained in Slurm start out down in wanka."""
        catalog = default_catalog()
        pools: dict[tuple, list[str]] = {}
        states = {}
        for n in self._sinfo(fresh=False):
            model, cards = _gpus(n.get("gres", ""), catalog)
            if not model or not cards:
                continue  # no accelerators wanka knows: not schedulable by it
            key = (model, cards, int(n.get("cpus", 0)), int(n.get("real_memory", 0)) // 1024)
            pools.setdefault(key, []).append(n["name"])
            if _unhealthy(n):
                states[n["name"]] = "down"
        if not pools:
            raise ValueError("backend: Slurm reports no node with GPUs of a known model (gres gpu:TYPE:N)")
        tiers, domains = self._topology({name for names in pools.values() for name in names})
        return inventory_spec("slurm", "Slurm", pools, tiers, domains, states)

    def _topology(self, nodes: set[str]) -> tuple[list[str], dict[str, list[str]]]:
        """The network tree of topology.conf (next to slurm.conf), when there is one: each node's
        switches from its leaf switch up, one tier per level (the single top switch is the
        cluster itself). Names are expanded by Slurm (`scontrol show hostnames`)."""
        conf = self.env.get("SLURM_CONF", "/etc/slurm/slurm.conf")
        path = Path(conf).with_name("topology.conf")
        try:
            stat = path.stat()
        except FileNotFoundError:
            return [], {}
        key = (stat.st_mtime_ns, stat.st_size, frozenset(nodes))
        if key != self._topology_key:  # read again only when the file or the nodes changed
            self._topology_value, self._topology_key = self._read_topology(path, nodes), key
        return self._topology_value

    def _read_topology(self, path: Path, nodes: set[str]) -> tuple[list[str], dict[str, list[str]]]:
        parent: dict[str, str] = {}
        leaf: dict[str, str] = {}
        for line in path.read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split("#")[0].split() if "=" in f)
            switch = fields.get("SwitchName")
            if not switch:
                continue
            if "Nodes" in fields:
                for node in self._run("scontrol", "show", "hostnames", fields["Nodes"]).split():
                    leaf[node] = switch
            if "Switches" in fields:
                for child in self._run("scontrol", "show", "hostnames", fields["Switches"]).split():
                    parent[child] = switch
        chains = {}
        for node, switch in leaf.items():
            if node not in nodes:
                continue
            chain = [switch]
            while chain[-1] in parent and len(chain) < 16:
                chain.append(parent[chain[-1]])
            chains[node] = chain
        roots = {c[-1] for c in chains.values()}
        if len(roots) == 1:  # one top switch: that is the whole cluster
            chains = {n: c[:-1] for n, c in chains.items()}
        depth = max((len(c) for c in chains.values()), default=0)
        if depth == 0:
            return [], {}
        tiers = [f"switch-level{i}" for i in range(1, depth + 1)]
        return tiers, {n: c + [c[-1]] * (depth - len(c)) for n, c in chains.items() if c}

    def node_address(self, node: str) -> str:
        return self.addresses.get(node, node)

    def free_port(self, node: str) -> int:
        # a remote node cannot be asked; collisions there are rare below its ephemeral range
        return rendezvous_port(local=self.node_address(node) in ("127.0.0.1", "localhost"))

    def checkpoint_dir(self, job_id: int) -> str:
        return str(self.checkpoints / str(job_id))

    def run_dir(self, job_id: int, run: int) -> Path:
        return self.runs / str(job_id) / str(run)

    # --- tasks ---------------------------------------------------------------------------------

    def launch(self, launch: Launch) -> None:
        error = self.launch_many([launch]).get(launch.job_id)
        if error is not None:
            raise error

    def launch_many(self, launches: list[Launch]) -> dict[int, Exception | None]:
        """One squeue for all (what was submitted before a crash is never submitted twice), then
        the submissions side by side: each ``sbatch`` waits ~0.1 s on slurmctld, so one after
        another caps dispatch near 10 jobs/s. Single-task runs alike in account, node and cards go
        as one job array. A controller that does not answer defers them all."""
        todo = [lc for lc in launches if not self._submitted(lc.job_id, lc.run)]
        # a run prepared before but with no id on record may have been submitted just before a
        # crash: Slurm is asked (fresh) about those only
        maybe = [lc for lc in todo if self._record(lc.job_id, lc.run, "slurm").exists()]
        if maybe:
            self._squeue(True)
            found = {}  # (job, run) -> Slurm's id
            for lc in maybe:
                job = self._job(lc.job_id, lc.run)
                if job is not None:  # submitted before the crash (maybe held): release, record
                    found[(lc.job_id, lc.run)] = self._slurm_id(lc.job_id, lc.run, job)
            self._release(list(found.values()))
            for (job_id, run), slurm_id in found.items():
                self._mark(self._record(job_id, run, "slurm-id"), slurm_id)
            todo = [lc for lc in todo if lc not in maybe or (lc.job_id, lc.run) not in found]
        out: dict[int, Exception | None] = {lc.job_id: None for lc in launches}
        groups: dict[tuple, list[Launch]] = {}
        for lc in todo:
            groups.setdefault(self._shape(lc), []).append(lc)
        batches = []
        for shape, group in groups.items():
            if shape is None:  # several tasks (or a terminal): a job of its own
                batches += [[lc] for lc in group]
            else:
                batches += [group[i : i + ARRAY_MAX] for i in range(0, len(group), ARRAY_MAX)]
        if not batches:
            return out
        # several submissions are held until all are in: Slurm starts the first ones ~3 s after
        # their sbatch (batch_sched_delay), and those starts (a slurmstepd and a process each, on
        # the controller's cores too) slowed the sbatch calls still to come tenfold
        hold = len(batches) > 1
        submitted: dict[str, list[Launch]] = {}
        with ThreadPoolExecutor(max_workers=min(SBATCH_AT_ONCE, len(batches))) as pool:
            results = pool.map(lambda b: self._submit_or_error(b, hold), batches)
            for batch, (slurm_id, error) in zip(batches, results, strict=True):
                for lc in batch:
                    out[lc.job_id] = error
                if slurm_id is not None:
                    submitted[slurm_id] = batch
        if hold:
            self._release(list(submitted))
        for slurm_id, batch in submitted.items():  # recorded once released (a restart releases the rest)
            for i, lc in enumerate(batch):
                self._mark(
                    self._record(lc.job_id, lc.run, "slurm-id"),
                    slurm_id if len(batch) == 1 else f"{slurm_id}_{i}",
                )
        self._jobs_at = 0.0
        return out

    def _shape(self, launch: Launch) -> tuple | None:
        """What a single-task run's ``sbatch`` depends on: runs of one shape share one array."""
        if len(launch.tasks) != 1 or launch.interactive:
            return None
        t = launch.tasks[0]
        return (launch.tenant, launch.tenant_id, t.node, len(t.devices))

    def _record(self, job_id: int, run: int, what: str) -> Path:
        """The server's own file about a run (``RUN.slurm``: its name in Slurm and the uid Slurm
        runs it as, written before ``sbatch``; ``RUN.slurm-id``: Slurm's id, after). They lie
        beside the run directory, in the job's directory that only the server may write: the
        job's own account can change everything in its run directory, and must not be able to
        point wanka at another job."""
        return self.runs / str(job_id) / f"{run}.{what}"

    def _name(self, job_id: int, run: int) -> tuple[str, int] | None:
        """The run's name in :meth:`_squeue` (``wanka-JOB-RUN``, or ``NAME_INDEX`` for an element
        of a grouped submission) and the uid Slurm runs it as; None before it was prepared."""
        name = self._keys.get((job_id, run))
        if name is None:
            try:
                key, uid = self._record(job_id, run, "slurm").read_text().split()
                name = (key, int(uid))
            except (OSError, ValueError):
                return None
            if len(self._keys) >= KEYS_KEPT:  # a cache: the records on disk are the truth
                self._keys.clear()
                self._dropped.clear()
            self._keys[(job_id, run)] = name
        return name

    def _key(self, job_id: int, run: int) -> str:
        name = self._name(job_id, run)
        return name[0] if name else f"wanka-{job_id}-{run}"

    def _owner(self, launch: Launch, account: isolation.Account | None) -> int:
        return account.uid if account is not None else os.getuid()

    def _slurm_id(self, job_id: int, run: int, job: dict) -> str:
        """What scancel takes for the run: the job's id, or ``ARRAY_INDEX`` for an element (a
        waiting array's own id stands for all its elements)."""
        key = self._key(job_id, run)
        if key.startswith("wanka-array-"):
            return f"{_number(job.get('array_job_id'))}_{key.rsplit('_', 1)[1]}"
        return str(job["job_id"])

    def _submit_or_error(self, batch: list[Launch], hold: bool) -> tuple[str | None, Exception | None]:
        try:
            return self._submit(batch, hold), None
        except Exception as exc:
            return None, exc

    def _release(self, slurm_ids: list[str]) -> None:
        """Let held submissions start (``scontrol release``, a few hundred ids a call); a job
        that is not held, or is gone, is no error."""
        for i in range(0, len(slurm_ids), 256):
            self._run("scontrol", "release", ",".join(slurm_ids[i : i + 256]), check=False)

    def _prepare(self, launch: Launch) -> isolation.Account | None:
        """The run's directory with its contract (``tasks.json``), launcher and host file, all
        the tenant's; returns the tenant's account (None when not isolated)."""
        rundir = self.run_dir(launch.job_id, launch.run)
        account = None
        if self.isolated:
            account = isolation.launch_account(self.home, launch.tenant, launch.tenant_id, self.task_uids)
        isolation.private_dir(rundir.parent, None, 0o711)  # the job passes through to its run
        isolation.private_dir(rundir, account)
        isolation.private_dir(Path(launch.checkpoint_dir), account)
        base = {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}
        env = [{**base, **launch.user_env, **_slurm_array(launch.user_env), **t.env} for t in launch.tasks]
        nodes = [t.node for t in launch.tasks]  # rank order
        # the run directory is the account's (its tasks write their logs there): written without
        # following links, and the files are the account's (Slurm runs the job as that account)
        contract = {"argv": list(launch.argv), "env": env}
        if launch.interactive:  # rank 0 on a terminal, served beside the contract (_slurm_task.py)
            contract["pty"] = TERMINAL_SOCKET
            isolation.write_file(rundir / "wanka_pty_relay.py", PTY_RELAY.read_bytes(), account)
            self._mark(self._record(launch.job_id, launch.run, "terminal"), launch.tasks[0].node)
        isolation.write_file(rundir / "tasks.json", json.dumps(contract).encode(), account)
        isolation.write_file(rundir / "wanka-task.py", LAUNCHER.read_bytes(), account)
        isolation.write_file(rundir / "hostfile", "".join(f"{n}\n" for n in nodes).encode(), account)
        return account

    def _start_lines(self, launch: Launch) -> str:
        """The script lines that start a run's tasks: into the job's directory (as the job's own
        account: the server never looks at a tenant's path as root; the run's directory when it
        cannot), then the launcher itself for one task (the batch step is on the node already),
        else one ``srun`` step in wanka's rank order."""
        q = shlex.quote
        rundir, tasks = str(self.run_dir(launch.job_id, launch.run)), len(launch.tasks)
        cd = f"cd {q(launch.workdir)} 2>/dev/null || " if launch.workdir else ""
        cd += f"cd {q(rundir)} || exit 1\n"
        launcher = f"{q(self.python)} -I -S {q(rundir + '/wanka-task.py')} {q(rundir + '/tasks.json')}"
        if tasks == 1:
            return f"{cd}exec {launcher} >{q(rundir + '/task-0.log')} 2>&1\n"
        return (
            f"{cd}export SLURM_HOSTFILE={q(rundir + '/hostfile')}\n"
            f"exec srun --kill-on-bad-exit=1 --distribution=arbitrary --ntasks={tasks} "
            f"--output={q(rundir + '/task-%t.log')} {launcher}\n"
        )

    def _submit(self, batch: list[Launch], hold: bool = False) -> str:
        """One ``sbatch`` for the batch (a job, or an array of single-task runs); Slurm's id."""
        first = batch[0]
        rundir = self.run_dir(first.job_id, first.run)
        accounts = [self._prepare(lc) for lc in batch]
        account = accounts[0]  # one shape: one account
        per_node: dict[str, int] = {}
        for t in first.tasks:
            per_node[t.node] = per_node.get(t.node, 0) + len(t.devices)
        gpus = max(per_node.values())  # GPU models: one device per card
        argv = [
            "sbatch",
            "--parsable",
            f"--nodelist={','.join(sorted(per_node))}",
            f"--nodes={len(per_node)}",
            f"--ntasks={len(first.tasks)}",
            f"--chdir={rundir}",
            "--export=PATH,LANG",
            "--no-requeue",
        ]
        if len(batch) == 1:
            name = f"wanka-{first.job_id}-{first.run}"
            script = "#!/bin/sh\n" + self._start_lines(first)
            argv += [f"--job-name={name}", f"--output={rundir / 'batch.log'}"]
            keys = [name]
        else:
            name = f"wanka-array-{first.job_id}-{first.run}"
            cases = "".join(f"{i}) {self._start_lines(lc)};;\n" for i, lc in enumerate(batch))
            script = f'#!/bin/sh\ncase "$SLURM_ARRAY_TASK_ID" in\n{cases}esac\nexit 1\n'
            argv += [f"--job-name={name}", f"--array=0-{len(batch) - 1}", "--output=/dev/null"]
            keys = [f"{name}_{i}" for i in range(len(batch))]
        uid = self._owner(first, account)
        for lc, key in zip(batch, keys, strict=True):  # before sbatch: a crash after it submits nothing twice
            self._mark(self._record(lc.job_id, lc.run, "slurm"), f"{key} {uid}")
            self._keys[(lc.job_id, lc.run)] = (key, uid)
        if gpus:
            argv.append(f"--gres=gpu:{gpus}")
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if account is not None:
            argv[1:1] = [f"--uid={account.uid}", f"--gid={account.gid}"]
        if hold:
            argv.append("--hold")
        # the script goes on sbatch's standard input: a file in the run directory (the job's
        # account's) could be changed between writing and sbatch (#SBATCH lines, a link)
        return self._run(*argv, input=script).strip().split(";")[0]

    @staticmethod
    def _mark(path: Path, text: str, account: isolation.Account | None = None) -> None:
        """Write ``path`` whole or not at all (a crash leaves no half-written file), never
        through a link the job's account planted."""
        isolation.write_file(path, text.encode(), account)

    def _submitted(self, job_id: int, run: int) -> bool:
        return self._record(job_id, run, "slurm-id").exists()

    def _job(self, job_id: int, run: int) -> dict | None:
        """Slurm's record of the run: of its name, and run as its account (any user may name a
        job ``wanka-…``: another tenant's job must never stand for this run)."""
        name = self._name(job_id, run)
        if name is None:
            return None
        key, uid = name
        return next((j for j in self._squeue().get(key, ()) if _number(j.get("user_id")) == uid), None)

    def status(self, job_id: int, run: int, tasks: int) -> list[TaskStatus]:
        job = self._job(job_id, run)
        if job is None:
            if not self._submitted(job_id, run):
                return [TaskStatus(i, TaskState.ABSENT) for i in range(tasks)]
            records = [_rank_record(self.run_dir(job_id, run) / f"exit-{i}") for i in range(tasks)]
            if all(c is not None for c, _ in records):  # ended, and Slurm forgot it (MinJobAge)
                return [TaskStatus(i, TaskState.EXITED, c, max_rss_kib=m) for i, (c, m) in enumerate(records)]
            key, uid = self._name(job_id, run) or ("", -1)
            if uid in self._arrays.get(key.rsplit("_", 1)[0], ()) and key not in self._dropped:
                # Slurm lists the array but not yet this element on its own: still Slurm's
                return [TaskStatus(i, TaskState.RUNNING) for i in range(tasks)]
            return [TaskStatus(i, TaskState.EXITED, None) for i in range(tasks)]
        state = job["job_state"]
        if state in ACTIVE:
            return [TaskStatus(i, TaskState.RUNNING) for i in range(tasks)]
        code = int(job.get("exit_code") or 0)
        if state == "COMPLETED":
            exit_code = 0
        elif state in ("FAILED", "OUT_OF_MEMORY") and code >> 8:
            exit_code = code >> 8
        elif code & 0x7F:
            exit_code = 128 + (code & 0x7F)
        else:
            exit_code = None  # NODE_FAIL, TIMEOUT, CANCELLED, PREEMPTED: ended by Slurm
        # each rank's own code, as its launcher wrote it (Slurm keeps one per step); a rank that
        # wrote none was killed outright (its node failed, or another rank failed first). When no
        # rank wrote one (the run directory is not shared, say), Slurm's code stands for all.
        rundir = self.run_dir(job_id, run)
        records = [_rank_record(rundir / f"exit-{i}") for i in range(tasks)]
        codes = [c for c, _ in records]
        if all(c is None for c in codes) or (state != "COMPLETED" and not any(codes)):
            # the ranks' files are the job's own: they name the failing rank, but never turn a run
            # Slurm saw fail into a success
            codes = [exit_code] * tasks
        return [
            TaskStatus(i, TaskState.EXITED, c, max_rss_kib=m)
            for i, (c, (_, m)) in enumerate(zip(codes, records, strict=True))
        ]

    def signal(self, job_id: int, run: int, sig: int = signal.SIGTERM) -> None:
        job = self._job(job_id, run)
        if job is None or job["job_state"] not in ACTIVE:
            return
        target = self._slurm_id(job_id, run, job)
        if job.get("array_task_string"):  # not started: the cancel leaves no record of it
            self._dropped.add(self._key(job_id, run))
        if sig == signal.SIGTERM:  # Slurm's own cancel: SIGTERM to every step, SIGKILL after KillWait
            self._run("scancel", target, check=False)
        else:
            name = signal.Signals(sig).name.removeprefix("SIG")
            self._run("scancel", "--full", f"--signal={name}", target, check=False)
        self._jobs_at = 0.0

    async def open_terminal(self, job_id: int, run: int) -> Terminal | None:
        """``srun --overlap`` into the run's Slurm job, on rank 0's node and as the job's own
        account, running the launcher as a bridge to the terminal's socket there (Slurm's own way
        into a running allocation; ``sattach`` reaches a step's stdio, not a terminal that outlives
        attachments). Only ``PATH`` of the server's environment reaches the step. Reads only the
        server's own records beside the run (the job's account can change its run directory)."""
        try:
            slurm_id = self._record(job_id, run, "slurm-id").read_text().strip()
            node = self._record(job_id, run, "terminal").read_text().strip()
            uid = int(self._record(job_id, run, "slurm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        rundir = self.run_dir(job_id, run)
        argv = [
            "srun",
            f"--jobid={slurm_id}",
            "--overlap",  # beside the job's own steps, on none of their cards
            "--nodes=1",
            "--ntasks=1",
            f"--nodelist={node}",
            f"--chdir={rundir}",
            "--export=PATH",
            "--quiet",
            "--unbuffered",
            *(self._identity(uid) if self.isolated else ()),
            self.python,
            "-I",
            "-S",
            str(rundir / "wanka-task.py"),
            "--attach",
            TERMINAL_SOCKET,
        ]
        # wanka shows a run running once Slurm has it; Slurm starts it a few seconds later
        # (batch_sched_delay), and refuses a step into it until then
        deadline = time.monotonic() + ATTACH_WAIT_S
        while True:
            terminal, why = await self._bridge(argv, deadline)
            if terminal is not None or "pending" not in why or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if terminal is None:
            log.warning("no terminal for job %s run %s: %s", job_id, run, why)
        return terminal

    async def _bridge(self, argv: list[str], deadline: float) -> tuple[Terminal | None, str]:
        """One try of :meth:`open_terminal`'s ``srun``: the terminal, or None and why not."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,  # read only when it fails: a few lines at most then
            env=self.env,
            start_new_session=True,  # its own group: a signal to the server's group misses it
        )

        async def close() -> None:
            """Closing srun's input ends the bridge, then srun; one that lingers is killed. Its
            output is read (and dropped) meanwhile: a full pipe would keep it from ending, and
            asyncio's own loop reports a process ended only once its pipes are."""
            if not proc.stdin.is_closing():
                proc.stdin.close()
            drain = asyncio.ensure_future(_drain(proc.stdout))
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10)
            finally:
                drain.cancel()

        try:
            first = await asyncio.wait_for(proc.stdout.read(1), max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            first = b""
        if first != READY:  # srun refused (not started yet, or ended), or the socket never answered
            await close()
            said = (await proc.stderr.read(2000)).decode(errors="replace").strip().splitlines()
            # srun's own first line (what the job's bridge may add to it is never logged)
            why = next((line[:300] for line in said if line.startswith("srun: ")), "")
            return None, why or f"srun exited with {proc.returncode}"
        self._drains.add(task := asyncio.ensure_future(_drain(proc.stderr)))  # a full pipe would stall srun
        task.add_done_callback(self._drains.discard)
        return Terminal(proc.stdout, proc.stdin, close), ""

    @staticmethod
    def _identity(uid: int) -> list[str]:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:  # a bare uid (no useradd here): its group is its uid, as launched
            gid = uid
        return [f"--uid={uid}", f"--gid={gid}"]

    def logs(self, job_id: int, run: int, task: int, offset: int, limit: int) -> tuple[bytes, int]:
        return read_log(self.run_dir(job_id, run) / f"task-{task}.log", offset, limit)

    def set_node_state(self, node: str, state: str, reason: str) -> None:
        if state == "draining":
            self._run(
                "scontrol",
                "update",
                f"nodename={node}",
                "state=DRAIN",
                f"reason={WANKA_REASON}{reason or 'drained'}",
            )
        elif state == "up":
            self._run("scontrol", "update", f"nodename={node}", "state=RESUME", check=False)

    def unhealthy_nodes(self, nodes: list[str]) -> dict[str, str]:
        """Nodes Slurm reports down, failed or drained (except drains wanka asked for)."""
        wanted = set(nodes)
        bad = {}
        for n in self._sinfo():
            if n["name"] in wanted and _unhealthy(n):
                bad[n["name"]] = f"Slurm: {'+'.join(_states(n))} {n.get('reason', '')}".strip()
        return bad


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


def _rank_record(path: Path) -> tuple[int | None, int | None]:
    """A rank's exit code (0-255) and peak resident memory (KiB, or None) as its launcher wrote them
    (``CODE [rss=KIB]``). The file lies in the job's own directory: a link, a FIFO or a device in
    its place, or anything else than such a line, is no record (never followed, never waited on),
    and at most 32 bytes are read. Both are the job's own word (its account writes the file): the
    code names the failing rank but never turns a failure into a success (:meth:`status`), and the
    memory is shown in accounting, never billed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None, None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, None
        data = os.read(fd, 33)
    except OSError:
        return None, None
    finally:
        os.close(fd)
    if len(data) > 32:
        return None, None
    code, _, rest = data.decode("ascii", "replace").strip().partition(" ")
    if not (code.isascii() and code.isdigit() and int(code) <= 255):  # what a process can exit with
        return None, None  # no record: Slurm's own code stands
    rss = rest[4:] if rest.startswith("rss=") else ""
    return int(code), int(rss) if rss.isascii() and rss.isdigit() else None  # bounded by TaskStatus


def _gpus(gres: str, catalog) -> tuple[str | None, int]:
    """('h100', 8) from 'gpu:h100:8' (or 'gpu:h100:8(S:0-1)'); (None, 0) without a known type."""
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) == 3 and parts[2].isdigit():
            return _catalog_id(catalog, parts[1]), int(parts[2])
    return None, 0


def _states(node: dict) -> list[str]:
    return [s.upper() for s in [node.get("state", ""), *node.get("state_flags", [])] if s]


def _unhealthy(node: dict) -> bool:
    states = set(_states(node))
    if states & UNHEALTHY - {"DRAIN"}:
        return True
    return "DRAIN" in states and not str(node.get("reason", "")).startswith(WANKA_REASON)


def _number(value) -> int:
    """Slurm's JSON gives some numbers bare and some as ``{"set": …, "number": …}`` by version."""
    if isinstance(value, dict):
        return int(value.get("number") or 0)
    return int(value or 0)


def _array_indices(job: dict) -> list[int]:
    """The element indices an squeue entry of a grouped submission stands for: one running
    element (``array_task_id``), or the waiting rest (``array_task_string``, such as ``2-5,7``;
    our submissions carry no step or throttle)."""
    text = str(job.get("array_task_string") or "").split("%")[0]
    if not text:
        return [_number(job.get("array_task_id"))]
    out = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out += range(int(low), int(high or low) + 1)
    return out


def _slurm_array(env: dict[str, str]) -> dict[str, str]:
    """An array element as a Slurm array task sees itself, so scripts written for ``sbatch
    --array`` run unchanged (wanka submits each element as a job of its own)."""
    if "WANKA_ARRAY_INDEX" not in env:
        return {}
    return {"SLURM_ARRAY_JOB_ID": env["WANKA_ARRAY_JOB_ID"], "SLURM_ARRAY_TASK_ID": env["WANKA_ARRAY_INDEX"]}
