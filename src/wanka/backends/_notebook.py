"""A notebook's replica: Jupyter Server (JupyterLab when installed) on the port and base URL the
gateway expects. Run as ``python -m wanka.backends._notebook`` by the notebook's task.

Reads ``PORT`` (wanka's), ``WANKA_BASE_URL`` (``/services/{tenant}/{name}/``: Jupyter builds its
links and cookie paths from it) and ``JUPYTER_TOKEN`` (Jupyter's own token, which
``wanka notebook open`` puts in the link). Listens on 127.0.0.1 only on a single host; on a node
of a cluster, on the node's address (``WANKA_NODE_ADDRESS``), where the gateway reaches it.
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
        f"--ServerApp.port={int(os.environ['PORT'])}",
        "--ServerApp.port_retries=0",  # the gateway knows this port only
        f"--ServerApp.ip={os.environ.get('WANKA_NODE_ADDRESS', '127.0.0.1')}",
        f"--ServerApp.base_url={os.environ['WANKA_BASE_URL']}",
        "--ServerApp.allow_remote_access=True",  # the gateway's Host header names the gateway
        f"--ServerApp.root_dir={os.getcwd()}",
        "--ServerApp.terminals_enabled=True",
    ]


if __name__ == "__main__":
    if not os.environ.get("JUPYTER_TOKEN"):
        sys.exit("JUPYTER_TOKEN is not set: wanka notebook start sets it")
    args = argv()
    os.execv(args[0], args)
