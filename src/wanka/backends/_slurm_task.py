"""Starts one rank of a wanka job under Slurm (``srun … python3 -I -S wanka-task.py tasks.json``).

It picks its rank's environment (the wanka job contract) by ``SLURM_PROCID`` from the run's JSON
file and executes the job's argv directly: the argv and the environment values are data here, never
shell text. Standard library only; copied next to each run so the nodes need nothing of wanka.
"""

import json
import os
import sys


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    rank = int(os.environ["SLURM_PROCID"])
    # Slurm's own variables (job id, step, node list) stay; the contract wins where both set one
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM")}
    env.update(spec["env"][rank])
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"wanka: cannot start {argv[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
