"""A notebook's replica: Jupyter Server (JupyterLab when installed) where the gateway expects it.
Run as ``python -m wanka.backends._notebook`` by the notebook's task.

Reads ``WANKA_SOCKET`` (the local backend: a Unix socket in the job's own directory, which only its
tenant and the gateway reach) or ``PORT`` (a node's port on Slurm, at ``WANKA_NODE_ADDRESS``),
``WANKA_BASE_URL`` (``/services/{tenant}/{name}/``: Jupyter builds its links and cookie paths from
it) and ``JUPYTER_TOKEN`` (Jupyter's own token, which ``wanka notebook open`` puts in the link).
"""

from __future__ import annotations

import importlib.util
import os
import sys


def argv() -> list[str]:
    app = "jupyterlab" if importlib.util.find_spec("jupyterlab") else "jupyter_server"
    return [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        *_where(),
        f"--ServerApp.base_url={os.environ['WANKA_BASE_URL']}",
        "--ServerApp.allow_remote_access=True",  # the gateway's Host header names the gateway
        f"--ServerApp.root_dir={os.getcwd()}",
        "--ServerApp.terminals_enabled=True",
    ]


def _where() -> list[str]:
    """The Unix socket the local backend gives (only its tenant and the gateway reach it), or the
    node's port (Slurm)."""
    if os.environ.get("WANKA_SOCKET"):
        return [f"--ServerApp.sock={os.environ['WANKA_SOCKET']}", "--ServerApp.sock_mode=0600"]
    return [
        f"--ServerApp.port={int(os.environ['PORT'])}",
        "--ServerApp.port_retries=0",  # the gateway knows this port only
        f"--ServerApp.ip={os.environ.get('WANKA_NODE_ADDRESS', '127.0.0.1')}",
    ]


if __name__ == "__main__":
    if not os.environ.get("JUPYTER_TOKEN"):
        sys.exit("JUPYTER_TOKEN is not set: wanka notebook start sets it")
    args = argv()
    os.execv(args[0], args)
