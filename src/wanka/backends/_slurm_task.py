"""Starts one rank of a wanka job under Slurm (``srun … python3 -I -S wanka-task.py tasks.json``).

It picks its rank's environment (the wanka job contract) by ``SLURM_PROCID`` (0 when a single task
runs as the batch script itself) from the run's JSON
file and starts the job's argv directly: the argv and the environment values are data here, never
shell text. It stays as the rank's parent to write the rank's own exit code to ``exit-RANK`` next
to the JSON file (Slurm keeps one code per job step). Standard library only; copied next to each
run so the nodes need nothing of wanka.

An interactive job's rank 0 runs on a pseudo-terminal, which this launcher serves on the Unix
socket ``task-0.pty`` in the run's directory (``_pty_relay``, copied beside it). The server reaches
that socket from the node with ``srun --overlap`` into the job, running this launcher as
``wanka-task.py --attach task-0.pty``: a bridge between srun's pipes and the socket.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys

CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def _die_with_parent() -> None:
    """In the child: SIGKILL when this launcher dies (Slurm killing the step kills the rank)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: Slurm's proctrack still kills it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _relay_module():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves this folder out
    import wanka_pty_relay

    return wanka_pty_relay


def _on_terminal(argv: list[str], env: dict, rundir: str) -> tuple[int, int | None]:
    """Run ``argv`` on a new pseudo-terminal (its controlling terminal, in a session of its own)
    and relay the terminal until it exits; its exit status and peak resident memory (KiB)."""
    import fcntl
    import termios

    relay = _relay_module()
    master, slave = os.openpty()

    def child_setup():  # after setsid (start_new_session): the terminal becomes the session's
        _die_with_parent()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        child = subprocess.Popen(
            argv,
            env={**env, "TERM": env.get("TERM", "xterm")},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=child_setup,
        )
    except OSError as exc:
        return _cannot_start(argv, exc)
    os.close(slave)  # the task holds it now: when the task is gone, reading the master fails
    for sig in CAUGHT:  # the relay then hangs the terminal up on SIGTERM
        signal.signal(sig, lambda *_: None)
    os.chdir(rundir)  # the socket's name is relative: a run directory's path may be long
    status, usage = relay.relay("task-0.pty", child.pid, master, os.dup(1))  # all output to the log too
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


def main() -> None:
    if sys.argv[1] == "--attach":  # the server's end of an interactive rank's terminal
        sys.exit(_relay_module().bridge(sys.argv[2]))
    path = sys.argv[1]
    with open(path) as fh:
        spec = json.load(fh)
    rank = int(os.environ.get("SLURM_PROCID", "0"))  # a single task runs in the batch step itself
    # Slurm's own variables (job id, step, node list) stay; the contract wins where both set one
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM")}
    env.update(spec["env"][rank])
    argv = spec["argv"]
    if spec.get("pty") and rank == 0:
        code, rss = _on_terminal(argv, env, os.path.dirname(os.path.abspath(path)))
    else:
        code, rss = _run(argv, env)
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells say
    out = os.path.join(os.path.dirname(path), f"exit-{rank}")
    with open(out + ".tmp", "w") as fh:  # and its peak memory (sacct's MaxRSS), where known
        fh.write(str(code) if rss is None else f"{code} rss={rss}")
    os.replace(out + ".tmp", out)
    sys.exit(code)


def _cannot_start(argv: list[str], exc: OSError) -> tuple[int, None]:
    """The shell's answer to a command it cannot run: the reason on stderr (the task's log), 127."""
    print(f"wanka: cannot start {argv[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
    return 127, None


def _run(argv: list[str], env: dict) -> tuple[int, int | None]:
    """Run ``argv`` to its end: its exit status and peak resident memory (KiB: ``wait4``'s
    ru_maxrss, the largest of the rank and the children it waited for)."""
    try:
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
    except OSError as exc:
        return _cannot_start(argv, exc)
    # Slurm signals every process of the step (scancel, KillWait), the rank included: this
    # launcher only outlives the signal, so that the rank may checkpoint and its code be kept
    for sig in CAUGHT:
        signal.signal(sig, lambda *_: None)
    _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


if __name__ == "__main__":
    main()
