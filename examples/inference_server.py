"""A long-running inference-style service: answers HTTP until it is stopped.

As a service's replica (examples/hello-service.yaml) it listens where wanka says: the Unix socket
$WANKA_SOCKET (local backend) or $PORT (Slurm); as a job's task, on 127.0.0.1 at BASE_PORT + RANK.
It answers GET / with which replica (job) and which cards it is; SIGTERM (a scale-down, a cancel,
a preemption) makes it finish the request in hand and exit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingMixIn, UnixStreamServer


class UnixHTTPServer(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # a Unix peer has no address: BaseHTTPRequestHandler wants a pair
        request, _ = super().get_request()
        return request, ("local", 0)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(
            {
                "replica": os.environ.get("WANKA_JOB_ID", "?"),
                "cards": {k: v for k, v in os.environ.items() if k.endswith("VISIBLE_DEVICES")},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def main() -> int:
    if os.environ.get("WANKA_SOCKET"):
        where = os.environ["WANKA_SOCKET"]
        server = UnixHTTPServer(where, Handler)
    else:
        port = int(os.environ.get("BASE_PORT", "18600")) + int(os.environ.get("RANK", "0"))
        port = int(os.environ.get("PORT") or port)
        where = f"127.0.0.1:{port}"
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown() or None)
    print(f"serving on {where}", flush=True)
    import threading

    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    thread.join()
    server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
