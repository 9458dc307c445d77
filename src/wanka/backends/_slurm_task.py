"""Starts one rank of a wanka job under Slurm (``srun … python3 -I -S wanka-task.py tasks.json``).

It picks its rank's environment (the wanka job contract) by ``SLURM_PROCID`` (0 when a single task
runs as the batch script itself) from the run's JSON
file and starts the job's argv directly: the argv and the environment values are data here, never
shell text. It stays as the rank's parent to write the rank's own exit code to ``exit-RANK`` next
to the JSON file (Slurm keeps one code per job step). Standard library only; copied next to each
run so the nodes need nothing of wanka.
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


def main() -> None:
    path = sys.argv[1]
    with open(path) as fh:
        spec = json.load(fh)
    rank = int(os.environ.get("SLURM_PROCID", "0"))  # a single task runs in the batch step itself
    # Slurm's own variables (job id, step, node list) stay; the contract wins where both set one
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM")}
    env.update(spec["env"][rank])
    argv = spec["argv"]
    try:
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
    except OSError as exc:
        print(f"wanka: cannot start {argv[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
        code = 127
    else:
        # Slurm signals every process of the step (scancel, KillWait), the rank included: this
        # launcher only outlives the signal, so that the rank may checkpoint and its code be kept
        for sig in CAUGHT:
            signal.signal(sig, lambda *_: None)
        code = child.wait()
        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells say
    out = os.path.join(os.path.dirname(path), f"exit-{rank}")
    with open(out + ".tmp", "w") as fh:
        fh.write(str(code))
    os.replace(out + ".tmp", out)
    sys.exit(code)


if __name__ == "__main__":
    main()
