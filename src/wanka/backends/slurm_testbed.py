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
    def __init__(self, root: Path, nodes: int, gpus: int = 8, gpu_type: str = "h100", leaf_size: int = 0):
        """``leaf_size`` > 0 writes a topology.conf: leaf switches of that many nodes under one top
        switch."""
        self.root, self.nodes, self.gpus, self.gpu_type = Path(root), nodes, gpus, gpu_type
        self.leaf_size = leaf_size
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.names = [f"node{i:04d}" for i in range(1, nodes + 1)]
        for _ in range(50):
            self.port = random.randrange(20000, 50000)
            if _ports_free(self.port, 1) and _ports_free(self.port + 1001, nodes):
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
        last = f"{self.nodes:04d}"
        nodes_line = (
            f"NodeName=node[0001-{last}] NodeHostname={host} NodeAddr=127.0.0.1 "
            f"Port=[{self.port + 1001}-{self.port + 1000 + self.nodes}] CPUs=32 Boards=1 SocketsPerBoard=2 "
            f"CoresPerSocket=16 ThreadsPerCore=1 RealMemory=100000 Gres=gpu:{self.gpu_type}:{self.gpus} "
            "State=UNKNOWN"
        )
        topology = ""
        if self.leaf_size:
            leaves = [self.names[i : i + self.leaf_size] for i in range(0, self.nodes, self.leaf_size)]
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
{nodes_line}
PartitionName=wanka Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        (r / "etc" / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName=node[0001-{last}] Name=gpu Type={self.gpu_type} "
            f"File={r}/dev/nvidia[0-{self.gpus - 1}]\n"
        )
        # argv[0] must be exactly slurmctld / slurmd, or the GRES of slurm.conf are ignored
        subprocess.run(["slurmctld", "-c"], executable=SLURMCTLD, env=self.env, check=True)
        for name in self.names:
            subprocess.run(
                ["slurmd", "-N", name, "-d", SLURMSTEPD], executable=SLURMD, env=self.env, check=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-t", "idle", "-o", "%D"], env=self.env, capture_output=True, text=True
            ).stdout.split()
            if out and int(out[0]) == self.nodes:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Slurm did not bring {self.nodes} nodes up; see {r}/log")

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
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if munge is not None:
            shutil.rmtree(munge, ignore_errors=True)
