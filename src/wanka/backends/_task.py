"""The supervisor of one task process (the local backend runs it as ``python -I -S _task.py SPEC``).

It is the leader of the task's process group: the backend signals the group, so SIGTERM reaches the
task and everything it started. It applies CPU affinity and a memory limit, starts the task's argv
without a shell, waits, and writes the exit code next to the log. That file outlives a crash of the
control plane, so a restarted server learns how a task ended while it was down.

Standard library only, imported by nothing: it must start fast and must not depend on wanka.
"""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    # a handler, not SIG_IGN: an ignored signal would stay ignored in the task after exec
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    if spec.get("cpus"):
        with contextlib.suppress(OSError):  # fewer CPUs than asked, or not allowed here: unpinned
            os.sched_setaffinity(0, spec["cpus"])
    if spec.get("memory_bytes"):
        with contextlib.suppress(ValueError, OSError):  # above the hard limit: keep the hard limit
            resource.setrlimit(resource.RLIMIT_AS, (spec["memory_bytes"], spec["memory_bytes"]))
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
        )
    except OSError as exc:  # no such program, not executable: the task fails like a shell would say
        os.write(log, f"wanka: cannot start {spec['argv'][0]!r}: {exc.strerror}\n".encode())
        _write_atomic(spec["exit"], "127\n")
        return 127
    os.close(log)
    while True:
        try:
            code = proc.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells report
    _write_atomic(spec["exit"], f"{code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
