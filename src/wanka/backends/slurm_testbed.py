"""A real Slurm (Debian's slurm-wlm 22.05) on this machine for tests and benchmarks: its own munged,
one slurmctld and N virtual nodes (one slurmd each, fake GPUs), all on 127.0.0.1 under one root
directory, stopped by their pid files. Needs root and `apt-get install slurm-wlm munge`."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLURMCTLD, SLURMD, SLURMSTEPD = "/usr/sbin/slurmctld-wlm", "/usr/sbin/slurmd-wlm", "/usr/sbin/slurmstepd-wlm"


def available() -> str | None:
    """Why Slurm cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the Slurm daemons are started as root"
    for path in (SLURMCTLD, SLURMD, "/usr/sbin/munged", "/usr/bin/sbatch"):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install slurm-wlm munge)"
    return None


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class SlurmCluster:
    def __init__(
        self,
        root: Path,
        nodes: int,
        gpus: int = 8,
        gpu_type: str = "h100",
        leaf_size: int = 0,
        future: int = 0,
    ):
        """``leaf_size`` > 0 writes a topology.conf: leaf switches of that many nodes under one top
        switch. ``future`` more nodes are configured with State=FUTURE, Slurm's way to add nodes
        without a restart (under the first leaf switch): they join when :meth:`join` starts their
        slurmd."""
        self.root, self.nodes, self.gpus, self.gpu_type = Path(root), nodes, gpus, gpu_type
        self.leaf_size = leaf_size
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        every = [f"node{i:04d}" for i in range(1, nodes + future + 1)]
        self.names, self.future = every[:nodes], every[nodes:]
        for _ in range(50):
            self.port = random.randrange(20000, 50000)
            if _ports_free(self.port, 1) and _ports_free(self.port + 1001, nodes + future):
                break

    # --- start -------------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> SlurmCluster:
        r = self.root
        for d in ("etc", "state", "spool", "log", "run", "dev"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # munged runs as the munge user, who may not traverse ROOT (pytest's tmp dirs are 0700):
        # its files live in a directory of their own
        self.munge = Path(tempfile.mkdtemp(prefix="wanka-munge-"))
        os.chmod(self.munge, 0o755)
        for d in ("run", "etc", "log", "lib"):
            (self.munge / d).mkdir()
        for i in range(self.gpus):  # fake GPUs: Slurm wants character devices, /dev/null is one
            link = r / "dev" / f"nvidia{i}"
            if not link.exists():
                link.symlink_to("/dev/null")
        self._munge()
        host = socket.gethostname()
        every = self.names + self.future
        nodes_line = "".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={self.port + 1001 + i} "
            f"CPUs=32 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=100000 "
            f"Gres=gpu:{self.gpu_type}:{self.gpus} State={'UNKNOWN' if name in self.names else 'FUTURE'}\n"
            for i, name in enumerate(every)
        )
        topology = ""
        if self.leaf_size:
            leaves = [self.names[i : i + self.leaf_size] for i in range(0, self.nodes, self.leaf_size)]
            leaves[0] = leaves[0] + self.future  # spare slots of the first leaf switch
            lines = [f"SwitchName=leaf{k} Nodes={','.join(group)}" for k, group in enumerate(leaves)]
            lines.append(f"SwitchName=top Switches=leaf[0-{len(leaves) - 1}]")
            (r / "etc" / "topology.conf").write_text("\n".join(lines) + "\n")
            topology = "TopologyPlugin=topology/tree\n"
        self.conf.write_text(
            topology
            + f"""ClusterName=wanka-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge}/run/munge.socket.2
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/slurmd-%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
SlurmdDebug=error
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.txt
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
GresTypes=gpu
MpiDefault=none
ReturnToService=1
SlurmdTimeout=300
MinJobAge=600
MaxJobCount=100000
KillWait=2
SlurmdParameters=config_overrides
{nodes_line}PartitionName=wanka Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        (r / "etc" / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={','.join(every)} Name=gpu Type={self.gpu_type} "
            f"File={r}/dev/nvidia[0-{self.gpus - 1}]\n"
        )
        # argv[0] must be exactly slurmctld / slurmd, or the GRES of slurm.conf are ignored
        self.start_controller(clear=True)
        for name in self.names:
            self._slurmd(name)
        if not self._idle(self.nodes, timeout):
            self.stop()
            raise RuntimeError(f"Slurm did not bring {self.nodes} nodes up; see {r}/log")
        return self

    def start_controller(self, clear: bool = False) -> None:
        """slurmctld; ``clear`` forgets saved state (the first start), otherwise it recovers it."""
        argv = ["slurmctld", "-c"] if clear else ["slurmctld"]
        subprocess.run(argv, executable=SLURMCTLD, env=self.env, check=True)

    def stop_controller(self) -> None:
        """slurmctld only, as in an upgrade or a fail-over: the nodes and their jobs carry on."""
        self._kill(self.root / "run" / "slurmctld.pid")

    def _slurmd(self, name: str) -> None:
        subprocess.run(["slurmd", "-N", name, "-d", SLURMSTEPD], executable=SLURMD, env=self.env, check=True)

    def _idle(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-t", "idle", "-o", "%D"], env=self.env, capture_output=True, text=True
            ).stdout.split()
            if out and int(out[0]) >= count:
                return True
            time.sleep(0.2)
        return False

    def join(self, timeout: float = 180) -> str:
        """The next FUTURE node joins, as an operator adds one: its slurmd starts and registers
        (slurmctld then makes it available). Returns its name once Slurm reports it up."""
        name = self.future.pop(0)
        self._slurmd(name)
        self.names.append(name)
        # this node's own state: a count of idle nodes misses it once jobs start on the others
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-n", name, "-o", "%T"], env=self.env, capture_output=True, text=True
            ).stdout.strip()
            if state in ("idle", "mixed", "allocated"):  # registered and responding (no * suffix)
                return name
            time.sleep(0.2)
        raise RuntimeError(f"node {name} did not join; see {self.root}/log")

    def _munge(self) -> None:
        m = self.munge
        key = m / "etc" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        shutil.chown(m, "munge", "munge")
        for p in m.rglob("*"):
            shutil.chown(p, "munge", "munge")
        os.chmod(m, 0o755)
        os.chmod(m / "run", 0o755)
        for d in ("etc", "log", "lib"):
            os.chmod(m / d, 0o700)
        os.chmod(key, 0o400)
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                "/usr/sbin/munged",
                f"--socket={m}/run/munge.socket.2",
                f"--key-file={key}",
                f"--pid-file={m}/run/munged.pid",
                f"--log-file={m}/log/munged.log",
                f"--seed-file={m}/lib/munged.seed",
            ],
            check=True,
        )

    def leave(self, name: str) -> None:
        """``name`` leaves the cluster, as an operator retires a node without a restart: its slurmd
        stops and the node goes back to FUTURE (no Slurm command lists it then)."""
        self._kill(self.root / "run" / f"slurmd-{name}.pid")
        self.run("scontrol", "update", f"nodename={name}", "state=future")
        self.names.remove(name)
        self.future.insert(0, name)

    # --- use and stop ------------------------------------------------------------------------

    def run(self, *argv: str) -> str:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=True).stdout

    def stop(self) -> None:
        """Every daemon of this cluster, by its pid file (slurmds first)."""
        run = self.root / "run"
        pids = [*sorted(run.glob("slurmd-*.pid")), run / "slurmctld.pid"]
        munge = getattr(self, "munge", None)
        if munge is not None:
            pids.append(munge / "run" / "munged.pid")
        for pid_file in pids:
            self._kill(pid_file)
        self._kill_steps()
        if munge is not None:
            shutil.rmtree(munge, ignore_errors=True)

    def _kill_steps(self) -> None:
        """The job steps this cluster's slurmds started and that outlived them (a test that failed
        before cancelling its job): each slurmstepd works in this cluster's log directory, and it
        goes with every process under it."""
        parents: dict[int, int] = {}
        steps = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    parents[pid] = int(fh.read().rsplit(")", 1)[1].split()[1])
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(self.root) + os.sep):
                    steps.append(pid)
            except (OSError, ValueError, IndexError):
                continue
        doomed = set(steps)
        grew = True
        while grew:  # every descendant: the batch script, srun, the launchers, the tasks
            more = {pid for pid, parent in parents.items() if parent in doomed} - doomed
            doomed |= more
            grew = bool(more)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _kill(pid_file: Path) -> None:
        """SIGTERM the daemon of ``pid_file``; SIGKILL if it is still there after 5 s."""
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):  # our own child (a slurmd): reap it
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if _zombie(pid):  # dead, its parent not reaping yet: nothing left to stop
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
