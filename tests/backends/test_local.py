"""The local backend on its own: discovery, virtual nodes, limits, idempotent launches — with
real processes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from wanka.backends.base import Launch, TaskLaunch, TaskState, TaskStatus
from wanka.backends.local import LocalBackend


def fake_tool(tmp_path, name: str, output: str) -> str:
    """A directory holding an executable ``name`` that prints ``output``: the vendor tool's place."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    lines = "".join(f"printf '%s\\n' '{line}'\n" for line in output.splitlines())
    tool.write_text("#!/bin/sh\n" + lines)  # shell built-ins only: PATH holds nothing else
    tool.chmod(0o755)
    return str(bin_dir)


def test_cards_are_discovered_through_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_tool(tmp_path, "nvidia-smi", "NVIDIA H200\nNVIDIA H200"))
    backend = LocalBackend(tmp_path / "home")
    spec = backend.cluster_spec()
    assert (backend.virtual, spec["pools"][0]["accelerator"], spec["pools"][0]["cards_per_node"]) == (
        False,
        "h200",
        2,
    )


def test_cards_are_discovered_through_npu_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_tool(tmp_path, "npu-smi", "Card Count : 8\nTotal Count : 8"))
    backend = LocalBackend(tmp_path / "home", accelerator="ascend-910b3", dev=str(tmp_path / "no-dev"))
    assert (backend.virtual, backend.model, backend.cards) == (False, "ascend-910b3", 8)


@pytest.mark.parametrize(
    ("tool", "files", "model"),
    [
        ("npu-smi", ["davinci0", "davinci1", "davinci_manager"], "ascend-910b2"),
        ("cnmon", ["cambricon_dev0", "cambricon_dev1", "cambricon_ctl"], "mlu590"),
        ("xpu-smi", ["xpu0", "xpu1", "xpuctrl"], "p800"),
        ("hy-smi", ["dri/renderD128", "dri/renderD129", "dri/card0"], "k100-ai"),
    ],
)
def test_cards_are_counted_from_the_vendor_device_files(tmp_path, monkeypatch, tool, files, model):
    monkeypatch.setenv("PATH", fake_tool(tmp_path, tool, "ok"))
    dev = tmp_path / "dev"
    for name in files:
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).touch()
    backend = LocalBackend(tmp_path / "home", dev=str(dev))
    assert (backend.virtual, backend.model, backend.cards) == (False, model, 2)


def test_without_accelerators_it_offers_virtual_cards_on_virtual_nodes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    backend = LocalBackend(tmp_path / "home", virtual_nodes=2)
    pool = backend.cluster_spec()["pools"][0]
    assert backend.virtual and (pool["nodes"], pool["cards_per_node"]) == (2, 4)
    with pytest.raises(ValueError, match="virtual_nodes: 3 does not divide 8 cards"):
        LocalBackend(tmp_path / "home", virtual_nodes=3)


def _launch(backend: LocalBackend, job: int, argv: list[str], cpus: int = 0, memory_gib: int = 0) -> Launch:
    env = {"WANKA_JOB_ID": str(job), "WANKA_RUN": "1", "RANK": "0"}
    task = TaskLaunch(0, "worker", "local-0001", (0,), env, cpus, memory_gib)
    return Launch(job, 1, "t", tuple(argv), (task,), backend.checkpoint_dir(job))


def _wait_exit(backend: LocalBackend, job: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (status,) = backend.status(job, 1, 1)
        if status.state is TaskState.EXITED:
            return status.exit_code
        time.sleep(0.02)
    raise AssertionError("task did not end")


def test_a_task_gets_its_cpu_share_and_memory_limit(tmp_path):
    backend = LocalBackend(tmp_path, virtual_cards=2)
    probe = (
        "import json, os, resource; "
        "print(json.dumps([len(os.sched_getaffinity(0)), resource.getrlimit(resource.RLIMIT_AS)[0]]))"
    )
    backend.launch(_launch(backend, 1, [sys.executable, "-c", probe], cpus=1, memory_gib=2))
    assert _wait_exit(backend, 1) == 0
    cpus, limit = json.loads(backend.logs(1, 1, 0, 0, 4096)[0])
    assert cpus == 1 and limit == 2 * 2**30


def test_a_launch_repeated_starts_nothing_twice_and_signals_reach_the_group(tmp_path):
    backend = LocalBackend(tmp_path, virtual_cards=1)
    count = Path(backend.checkpoint_dir(7)) / "starts"  # the job's own: writable under any account
    program = f"open({str(count)!r}, 'a').write('x'); import time; time.sleep(600)"
    launch = _launch(backend, 7, [sys.executable, "-c", program])
    backend.launch(launch)
    backend.launch(launch)  # e.g. after a crash between deciding and recording
    again = LocalBackend(tmp_path, virtual_cards=1)  # a restarted server's backend
    again.launch(launch)
    deadline = time.monotonic() + 10
    while not count.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert count.read_text() == "x"
    assert again.status(7, 1, 1)[0].state is TaskState.RUNNING
    again.signal(7, 1)  # SIGTERM to the group
    assert _wait_exit(again, 7) == 143  # 128 + SIGTERM, as a shell reports it


def test_a_stop_sent_while_the_supervisor_starts_reaches_the_task(tmp_path):
    # CI: a gang's rank 0 failed at once and its rank 1, SIGTERMed while its supervisor was still
    # starting, lost the signal and lived until the SIGKILL (137), or its supervisor died unrecorded
    backend = LocalBackend(tmp_path, virtual_cards=4)
    for job in range(1, 6):
        backend.launch(_launch(backend, job, ["sleep", "600"]))
        backend.signal(job, 1)  # at once: the supervisor is still starting, or its task is
    assert [_wait_exit(backend, job) for job in range(1, 6)] == [143] * 5


@pytest.mark.skipif(os.geteuid() != 0, reason="hands device files to tenant accounts")
def test_a_task_can_open_its_own_cards_device_files_only(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(4):  # stand-ins for /dev/davinciN, as readable by all as a driver may leave them
        (dev / f"davinci{i}").write_text("")
        (dev / f"davinci{i}").chmod(0o666)
    monkeypatch.setenv("PATH", fake_tool(tmp_path, "npu-smi", "ok") + os.pathsep + os.environ["PATH"])
    backend = LocalBackend(tmp_path / "home", dev=str(dev))
    assert not backend.virtual and backend.devices == [str(dev / f"davinci{i}") for i in range(4)]
    probe = (
        "import json, os, sys\n"
        "def opens(p):\n"
        "    try:\n"
        "        open(p, 'r+').close(); return True\n"
        "    except OSError:\n"
        "        return False\n"
        f"print(json.dumps([opens(os.path.join({str(dev)!r}, f'davinci{{i}}')) for i in range(4)]))\n"
    )
    task = TaskLaunch(0, "worker", "local-0001", (1, 2), {"WANKA_JOB_ID": "9", "RANK": "0"})
    launch = Launch(
        9,
        1,
        "t",
        (sys.executable, "-c", probe),
        (task,),
        backend.checkpoint_dir(9),
        tenant="lab",
        tenant_id=7,
    )
    backend.launch(launch)
    assert _wait_exit(backend, 9) == 0
    assert json.loads(backend.logs(9, 1, 0, 0, 4096)[0]) == [False, True, True, False]
    for i in range(4):  # every card root's again once the task ended
        st = (dev / f"davinci{i}").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


@pytest.mark.parametrize(
    ("code", "rss", "kept"),
    [
        (0, 10, (0, 10)),
        (255, 0, (255, 0)),
        (256, -1, (None, None)),
        (10**25, 2**53, (None, None)),
        (-9, None, (None, None)),
    ],
)
def test_a_task_status_never_carries_a_number_the_database_cannot_hold(code, rss, kept):
    """Every backend's report passes through TaskStatus: exit codes outside 0-255 and memory
    outside [0, 2**53) KiB (a job's own files may say anything) become unknown, never an error
    that stops the control loop (found by the hostile review of the Slurm launcher's records)."""
    status = TaskStatus(0, TaskState.EXITED, code, max_rss_kib=rss)
    assert (status.exit_code, status.max_rss_kib) == kept
