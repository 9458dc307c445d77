"""The supervisor of one task process (the local backend runs it as ``python -I -S _task.py SPEC``).

It is the leader of the task's process group: the backend signals the group, so SIGTERM reaches the
task and everything it started. It applies CPU affinity and limits, starts the task's argv without a
shell (as the tenant's own account when the server runs as root), waits, stops whatever the task
left behind, and records the exit code and the end time next to the log. That record outlives a
crash of the control plane, so a restarted server learns how a task ended while it was down.

What the server trusts comes from here, never from the task: the exit status is the supervisor's
own ``waitpid`` of its child, and the record lies in a directory only the server's account can
write. The log is opened here, without following links, and handed to the task as its stdout.

With a cgroup (``spec["cgroup"]``), the task is born inside it (the supervisor enters it, forks the
task, and leaves), so ``cgroup.kill`` ends every process the task started, however it detached.

Standard library only (and ``_pty_relay`` beside it), imported by nothing: it must start fast and
must not depend on wanka.
"""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _finish(spec: dict, code: int, note: str = "", max_rss_kib: int | None = None) -> int:
    """The record the server trusts: exit code, end time, the task's peak memory (``rss=KiB``, as
    sacct's MaxRSS) and, when the task never started, why."""
    rss = f" rss={max_rss_kib}" if max_rss_kib is not None else ""
    _write_atomic(spec["exit"], f"{code} {time.time():.6f}{rss} {note}".rstrip() + "\n")
    return code


def _own_cgroup() -> str | None:
    """This process's cgroup v2 directory, from /proc/self/cgroup's ``0::`` line."""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as fh:
        for line in fh:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def _enter_cgroup(spec: dict) -> str | None:
    """Create the task's cgroup with its limits and move this process into it (the task forked
    next is born there). Returns the cgroup to go back to, or None without a cgroup."""
    group = spec.get("cgroup")
    if not group:
        return None
    back = _own_cgroup()
    try:
        os.makedirs(group, exist_ok=True)
        limits = {"pids.max": spec.get("pids_max")}
        if spec.get("memory_bytes"):
            limits["memory.max"] = spec["memory_bytes"]
        if spec.get("cpus"):  # a quota of that many CPUs per 100 ms period
            limits["cpu.max"] = f"{len(spec['cpus']) * 100000} 100000"
        for name, value in limits.items():
            if value and os.path.exists(os.path.join(group, name)):
                with open(os.path.join(group, name), "w") as fh:
                    fh.write(str(value))
        with open(os.path.join(group, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except OSError as exc:
        sys.stderr.write(f"wanka: no cgroup for this task ({exc}); process limits only\n")
        return None
    return back


def _leave_cgroup(spec: dict, back: str | None) -> None:
    if back is None:
        return
    root = spec["cgroup_mount"]
    with contextlib.suppress(OSError), open(os.path.join(root, back.lstrip("/"), "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))


def _hand_devices(spec: dict, uid: int) -> None:
    """The task's cards' device files to ``uid`` alone (0600), or back to root's when it ended: a
    task opens its own cards only, whatever visibility variable it sets (the device plugin's and
    Slurm ConstrainDevices' job, for a machine without either)."""
    for path in spec.get("devices") or ():
        with contextlib.suppress(OSError):
            os.chown(path, uid, -1)
            os.chmod(path, 0o600)


def _kill_leftovers(spec: dict, entered: bool) -> None:
    """Whatever the task started and left running dies with it (Slurm's proctrack does the same):
    no process keeps a card after its task ended and stopped being billed."""
    group = spec.get("cgroup")
    if entered and group:
        with contextlib.suppress(OSError):
            with open(os.path.join(group, "cgroup.kill"), "w") as fh:
                fh.write("1")
            for _ in range(200):  # until empty (a killed process is gone within milliseconds)
                with open(os.path.join(group, "cgroup.procs")) as fh:
                    if not fh.read().strip():
                        break
                time.sleep(0.01)
            os.rmdir(group)
        return
    me, pgid = os.getpid(), os.getpgid(0)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    os.kill(int(entry), signal.SIGKILL)


def _terminal(spec: dict, uid, gid) -> tuple[int, int]:
    """An interactive task's terminal: a pseudo-terminal pair whose slave becomes this supervisor's
    controlling terminal (it leads its session), so the task it starts on it is a terminal job
    like any, and belongs to the task's account."""
    import fcntl
    import termios

    master, slave = os.openpty()
    if uid is not None:
        os.fchown(slave, uid, gid)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return master, slave


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    # a handler, not SIG_IGN: an ignored signal would stay ignored in the task after exec. The
    # terminal's own signals too (^\\ ^Z, background reads and writes): an interactive task's
    # terminal, or the task itself through it (TIOCSTI), may aim them at this process's group.
    # The backend starts this process with SIGTERM blocked: a stop sent while it starts stays
    # pending until this handler catches it, and is passed on once the task runs (else a cancel in
    # that window is lost and the task lives until SIGKILL)
    stops = []
    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
    for sig in caught:
        signal.signal(sig, lambda signum, _: stops.append(signum) if signum == signal.SIGTERM else None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, caught)
    if spec.get("cpus"):
        with contextlib.suppress(OSError):  # fewer CPUs than asked, or not allowed here: unpinned
            os.sched_setaffinity(0, spec["cpus"])
    if spec.get("memory_bytes"):
        with contextlib.suppress(ValueError, OSError):  # above the hard limit: keep the hard limit
            resource.setrlimit(resource.RLIMIT_AS, (spec["memory_bytes"], spec["memory_bytes"]))
    if spec.get("nproc"):  # counts every process of the task's account: a bound per tenant
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    uid, gid, cwd = spec.get("uid"), spec.get("gid"), spec["cwd"]

    def enter_workdir():  # after the switch to the task's account: it may enter only what it may
        os.chdir(cwd)

    if uid is not None:
        _hand_devices(spec, uid)
    back = _enter_cgroup(spec)
    terminal = _terminal(spec, uid, gid) if spec.get("pty") else None
    try:
        proc = subprocess.Popen(
            spec["argv"],
            env={**spec["env"], "TERM": spec["env"].get("TERM", "xterm")} if terminal else spec["env"],
            stdin=terminal[1] if terminal else subprocess.DEVNULL,
            stdout=terminal[1] if terminal else log,
            stderr=terminal[1] if terminal else log,
            close_fds=True,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
            umask=0o077 if uid is not None else -1,
            preexec_fn=enter_workdir,  # the supervisor has one thread: safe here
        )
    except subprocess.SubprocessError:  # the workdir could not be entered (preexec_fn failed)
        _leave_cgroup(spec, back)
        _hand_devices(spec, 0)
        why = f"could not enter its workdir {cwd!r} (missing, or closed to this job's account)"
        os.write(log, f"wanka: {why}\n".encode())
        return _finish(spec, 126, why)
    except (OSError, ValueError) as exc:  # no such program, not executable, not encodable (an
        # argv the API let through): the task fails like a shell would say, its devices given back
        _leave_cgroup(spec, back)
        _hand_devices(spec, 0)
        why = exc.strerror if isinstance(exc, OSError) else "its command is not valid text"
        os.write(log, f"wanka: cannot start {spec['argv'][0]!r}: {why}\n".encode("utf-8", "replace"))
        return _finish(spec, 127)
    _leave_cgroup(spec, back)
    if stops:  # stopped before the task existed (or between fork and exec): it is stopped now
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGTERM)
    if terminal:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves this folder out
        import _pty_relay  # shared with the Slurm launcher

        os.close(terminal[1])  # the task holds it now: when the task is gone, reading the master fails
        status, usage = _pty_relay.relay(spec["pty"], proc.pid, terminal[0], log)
    else:
        os.close(log)
        # wait4, not wait: the task's resource usage comes with its status (ru_maxrss, KiB on
        # Linux: the largest resident set of the task and the children it waited for)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells report
    _kill_leftovers(spec, back is not None)
    _hand_devices(spec, 0)  # nothing of the task is left to use them
    return _finish(spec, code, max_rss_kib=usage.ru_maxrss)


if __name__ == "__main__":
    sys.exit(main())
