"""A hostile tenant against interactive jobs on the Slurm backend: the attach WebSocket, the
server's ``srun --overlap`` bridge into the job (``SlurmBackend.open_terminal``), the launcher's
terminal relay and the files a job owns in its run directory, over a real wanka server run as root
against real Slurm daemons on 127.0.0.1. Skipped where Slurm is missing or not root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

import tests.conftest as top
from tests.backends.test_slurm import slurm_server
from tests.security.test_interactive_attacks import attach
from tests.server.conftest import stop_server, wait_for
from tests.server.test_api import make_member
from tests.server.test_lifecycle import ended, job_state, submit
from wanka.backends.slurm_testbed import SlurmCluster, available

pytestmark = [
    pytest.mark.skipif(available() is not None, reason=f"no Slurm here: {available()}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="tenant accounts need a server run as root"),
]
PY = sys.executable


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    root = top.reachable_by_tasks(tmp_path_factory.mktemp("slurm-term"))
    cluster = SlurmCluster(root, nodes=2, gpus=8).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def server(slurm, tmp_path_factory):
    s = slurm_server(slurm, tmp_path_factory, "wanka-term")
    yield s
    stop_server(s)


def rundir(server, jid: int, run: int = 1) -> Path:
    return server.shared / "runs" / str(jid) / str(run)


def interactive(c, command, **extra) -> int:
    jid = submit(c, command=command, kind="interactive", task_groups=[{"replicas": 1, "cards": 1}], **extra)
    wait_for(lambda: job_state(c, jid)["state"] == "running", timeout=60)
    return jid


def children(pid: int, name: bytes = b"srun") -> list[int]:
    """The ``name`` processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if (
                    int(stat.rsplit(")", 1)[1].split()[1]) == pid
                    and Path(f"/proc/{entry}/comm").read_bytes().strip() == name
                ):
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def hostile(c, server, bridge: str) -> int:
    """An interactive job that puts ``bridge`` (Python) in place of its run directory's launcher,
    which the server's srun runs as ``wanka-task.py --attach task-0.pty`` on every attachment."""
    plant = (
        "import os, sys, time\n"
        f"d = os.path.join({str(server.shared / 'runs')!r}, os.environ['WANKA_JOB_ID'], '1')\n"
        "open(d + '/evil.tmp', 'w').write(sys.argv[1])\n"
        "os.replace(d + '/evil.tmp', d + '/wanka-task.py')\n"
        "print('planted', flush=True)\n"
        "time.sleep(600)\n"
    )
    jid = interactive(c, [PY, "-c", plant, bridge])
    wait_for(lambda: "planted" in log_of_run(server, jid), timeout=30)
    return jid


def log_of_run(server, jid: int) -> str:
    try:
        return (rundir(server, jid) / "task-0.log").read_text(errors="replace")
    except OSError:
        return ""


SLEEPER = "import os, time\nos.write(1, b'\\x06')\ntime.sleep(3600)\n"  # answers, then never lets go


def _open(ws) -> bool:
    """Whether the server has not closed ``ws`` (never waits)."""
    try:
        ws.recv(timeout=0)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return True


def test_one_job_cannot_make_the_server_run_an_srun_per_connection(server, slurm):
    """A planted bridge that never exits: N WebSockets to one job kept N root srun processes. Now
    one attachment per job: the newest wins (the one it replaces is closed first) and one being
    opened turns the others away, so at no moment do two sruns run for the job's terminal."""
    user = make_member(server, "many", "many-user")
    with server.client(user) as c:
        jid = hostile(c, server, SLEEPER)
        most = 0
        try:
            with contextlib.ExitStack() as stack:
                conns = [stack.enter_context(attach(server, user, jid)) for _ in range(6)]

                def settled() -> bool:
                    nonlocal most
                    running = len(children(server.proc.pid))
                    most = max(most, running)
                    return running == 1 and sum(_open(ws) for ws in conns) == 1

                wait_for(settled, timeout=90)
                most = max(most, len(children(server.proc.pid)))
        finally:
            c.post(f"/v1/jobs/{jid}/cancel")
            ended(c, jid, 60)
        assert most <= 1, f"{most} srun processes at once for one job's terminal"


def test_a_rank_cannot_write_an_exit_code_that_breaks_the_control_loop(server, slurm):
    """Rank 1 rewrites exit-0 as a 25-digit code: the control loop's tick then fails forever."""
    user = make_member(server, "bigcode", "bigcode-user")
    bystander = make_member(server, "bystander", "bystander-user")
    runs = str(server.shared / "runs")
    program = (
        "import os, time\n"
        f"d = os.path.join({runs!r}, os.environ['WANKA_JOB_ID'], '1')\n"
        "if os.environ['RANK'] == '1':\n"
        "    while not os.path.exists(d + '/exit-0'): time.sleep(0.01)\n"
        "    open(d + '/x.tmp', 'w').write('9' * 25 + ' rss=1')\n"
        "    os.replace(d + '/x.tmp', d + '/exit-0')\n"
    )
    with server.client(user) as c:
        jid = submit(c, command=[PY, "-c", program], task_groups=[{"replicas": 2, "cards": 1}])
        wait_for(lambda: (rundir(server, jid) / "exit-1").exists(), timeout=60)
        with server.client(bystander) as b:  # another tenant's job, submitted after
            other = submit(b, command=[PY, "-c", "print('still-scheduling')"])
            assert ended(b, other, 30)["state"] == "succeeded"
        assert ended(c, jid, 30)["state"] == "failed"


def test_closing_a_bridge_that_lingers_returns_on_the_plain_asyncio_loop():
    """Terminal.close() kills a lingering srun, then awaits proc.wait() unbounded: on asyncio's own
    loop (no uvloop) that wait needs srun's unread stdout pipe to reach EOF, so it never returns."""
    from wanka.backends.slurm import SlurmBackend

    backend = SlurmBackend.__new__(SlurmBackend)  # no Slurm needed: _bridge runs any argv
    backend.env, backend._drains = None, set()
    srun = [PY, "-c", "import os\nos.write(1, b'\\x06')\nwhile True: os.write(1, b'y' * 65536)"]

    async def attach_and_detach() -> float:
        terminal, why = await backend._bridge(srun, time.monotonic() + 10)
        assert terminal is not None, why
        await terminal.reader.read(65536)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.wait_for(terminal.close(), 20)  # 10 s for srun to end, then it is killed
        return time.monotonic() - started

    assert asyncio.run(attach_and_detach()) < 20
