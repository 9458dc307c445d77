"""`wanka bench cli`: what a user waits for in the everyday workflow, on loopback, with a real
server process and its embedded SQLite database.

- ``wanka jobs`` against the running server, wall time of the whole command (the process starting,
  importing, asking, printing), median and p90 of repeated runs;
- ``wanka -h`` likewise (it imports no command at all);
- one request submitting a job array of 10,000 elements (nodes drained: the figure is the API's).

Commands run as a user runs them: the ``wanka`` console script next to this interpreter.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from wanka.server.bench import _member, _nodes, _Server

GOALS = {"cli_jobs_ms": 300.0, "array_submit_s": 1.0}


def _wanka() -> list[str]:
    script = Path(sys.executable).with_name("wanka")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wanka.cli.main"]


def _wall(argv: list[str], env: dict, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t) * 1e3)
    return sorted(out)


def bench_cli(runs: int = 21, elements: int = 10_000) -> dict:
    with tempfile.TemporaryDirectory(prefix="wanka-bench-cli-") as tmp:
        home = Path(tmp)
        server = _Server(home, ("--virtual-cards", "8", "--max-waiting-jobs-per-tenant", str(elements + 100)))
        try:
            server.start()
            admin = (home / "admin-token").read_text().strip()
            token = _member(server.url, admin)
            _nodes(server.url, admin, "drain")  # nothing runs: the figures are the CLI's and the API's
            env = {**os.environ, "WANKA_URL": server.url, "WANKA_TOKEN": token, "COLUMNS": "200"}
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
            ) as c:
                for i in range(20):  # a listing with something in it
                    c.post(
                        "/v1/jobs",
                        json={"name": f"job-{i}", "task_groups": [{"cards": 1}], "command": ["true"]},
                    )
                jobs_ms = _wall([*_wanka(), "jobs"], env, runs)
                help_ms = _wall([*_wanka(), "-h"], env, runs)
                spec = {
                    "name": "sweep",
                    "array": f"0-{elements - 1}",
                    "task_groups": [{"cards": 1}],
                    "command": ["true"],
                }
                t = time.perf_counter()
                r = c.post("/v1/jobs", json=spec)
                array_s = time.perf_counter() - t
                r.raise_for_status()
                made = r.json()["array_elements"]
                c.post(f"/v1/jobs/{r.json()['id']}/cancel", params={"array": "true"})
        finally:
            server.stop()
    return {
        "runs": runs,
        "cli_jobs_ms_median": statistics.median(jobs_ms),
        "cli_jobs_ms_p90": jobs_ms[int(len(jobs_ms) * 0.9)],
        "cli_help_ms_median": statistics.median(help_ms),
        "array_elements": made,
        "array_submit_s": array_s,
    }
