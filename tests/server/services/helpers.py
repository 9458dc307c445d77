"""Services in tests: apply one, wait on its replicas, and a load generator at a chosen rate."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.server.conftest import wait_for

ROOT = Path(__file__).resolve().parents[3]
MODEL_SERVER = [sys.executable, str(ROOT / "examples" / "model_server.py")]
REPLICA_APP = [sys.executable, str(Path(__file__).with_name("replica_app.py"))]


def apply(client: httpx.Client, spec: dict, status: tuple[int, ...] = (200, 201)) -> dict:
    r = client.put("/v1/services", json=spec)
    assert r.status_code in status, r.text
    return r.json()


def show(client: httpx.Client, name: str) -> dict:
    r = client.get(f"/v1/services/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_replicas(client: httpx.Client, name: str, ready: int, total: int | None = None, timeout=90.0):
    """Until ``ready`` replicas are ready and (``total``) that many are live in all."""

    def check():
        s = show(client, name)
        live = [r for r in s["replicas"] if r["state"] in ("pending", "admitted", "running")]
        ok = s["ready"] == ready and (total is None or len(live) == total)
        return s if ok else None

    return wait_for(check, timeout, every=0.2)


class Load:
    """Requests at ``rate`` per second (changeable while it runs) from a pool of threads; every
    answer's status (or the exception's name) is counted."""

    def __init__(self, url: str, token: str | None, path: str, rate: float, json: dict | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)
        self.path, self.rate, self.json = path, rate, json
        self.statuses: Counter = Counter()
        self.replicas: Counter = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
        self.http.close()

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._one)
            next_at += 1.0 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self) -> None:
        try:
            if self.json is not None:
                r = self.http.post(self.path, json=self.json)
            else:
                r = self.http.get(self.path)
            status = r.status_code
            body = r.json() if status == 200 else {}
            replica = body.get("replica") or body.get("job")
            if status != 200:
                with self._lock:
                    self.failures.append(f"{status} {r.text[:300]}")
        except Exception as exc:  # counted: the test says which
            status, replica = type(exc).__name__, None
            with self._lock:
                self.failures.append(repr(exc)[:300])
        with self._lock:
            self.statuses[status] += 1
            if replica is not None:
                self.replicas[str(replica)] += 1
