"""The README's control-plane tour, run exactly as written: its lines, in one bash, against the
server it starts (on a free port, in a fresh home), with what each step should print checked."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import tests.conftest as top

ROOT = Path(__file__).resolve().parents[1]


def tour_lines() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tour:control-plane -->\n```bash\n(.*?)```", text, re.S)
    assert block, "the README's control-plane tour is missing its marker"
    return block.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_tour_runs_as_written(tmp_path):
    home = top.reachable_by_tasks(tmp_path / "home")
    home.mkdir()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WANKA_")},
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WANKA_PORT": str(port),  # the tour's server and client on a port of the test's own
        "WANKA_URL": f"http://127.0.0.1:{port}",
        "WANKA_GATEWAY_PORT": str(free_port()),  # and its services' gateway
        "COLUMNS": "200",
    }
    env.pop("XDG_CONFIG_HOME", None)
    # the server is stopped by its pid whatever happens; every line must succeed (set -e)
    script = "set -euo pipefail\ntrap 'kill $SERVER 2>/dev/null || true' EXIT\n" + tour_lines()
    r = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout
    assert r.returncode == 0, f"the tour stopped:\n{out[-3000:]}\n{r.stderr[-3000:]}"
    assert f"alice (member, tenant lab-a) at http://127.0.0.1:{port}" in out
    lines = out.splitlines()
    for expected in ("hi", "1", "quick"):  # the hello job, rank 1 of the gang, the dev-queue job
        assert expected in lines, expected
    assert lines.count("hi") == 2  # and hello's second run, requeued into a queue of now
    assert "prices in force now (CNY)" in out and "quota document" in out
    assert "lab-a-train" in out and "lab-a-dev" in out  # quotas show, after the document
    assert "node local-0002: draining (ECC errors)" in out
    assert "alice" in out and "JobID" in out  # the job list and the accounting
    assert '{"replica": "' in out  # a replica of the hello service answered through the gateway
    assert (home / ".local" / "share" / "wanka" / "wanka.db").exists()  # the default home, as written
