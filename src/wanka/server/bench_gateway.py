"""`wanka bench gateway`: what the services' gateway adds, through a real server on loopback.

Issue 17's figures: the gateway adds ≤ 2 ms to a request's median latency, and one server process
proxies ≥ 2,000 requests/s on these 2 cores. A service of one replica (the tiny HTTP server below,
whose own cost is near nothing) runs under the real server; a keep-alive load generator (raw
asyncio, uvloop) measures, in the same run:

- ``direct``: one connection straight to the replica (its Unix socket), requests back to back
  (median latency);
- ``gateway``: the same through the gateway, with a member's token (median latency); the
  difference is what the gateway adds;
- ``throughput``: 16 connections through the gateway for a few seconds (requests/s).

Load generator, server and replica share the machine's CPUs, as they would on a node.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

GOALS = {"added_p50_ms": 2.0, "requests_per_s": 2000.0}
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GETs without a body: the head is the request
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        writer.close()


async def _upstream(port: int) -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", port)
    await server.serve_forever()


def _event_loop():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.new_event_loop


async def _client(where: int | str, head: bytes, until: float, latencies: list[float]) -> int:
    if isinstance(where, str):  # a replica's Unix socket (the local backend's)
        reader, writer = await asyncio.open_unix_connection(where)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", where)
    done = 0
    try:
        while time.perf_counter() < until:
            t = time.perf_counter()
            writer.write(head)
            got = await reader.readuntil(b"\r\n\r\n")
            at = got.lower().find(b"content-length:")
            if at < 0:
                raise RuntimeError(f"no content-length in {got[:200]!r}")
            await reader.readexactly(int(got[at + 15 : got.find(b"\r\n", at)]))
            if not got.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"answer {got[:40]!r}")
            latencies.append(time.perf_counter() - t)
            done += 1
    finally:
        writer.close()
    return done


def load(where: int | str, path: str, token: str | None, connections: int, seconds: float) -> dict:
    """``connections`` keep-alive connections to ``where`` (a loopback port, or a Unix socket's
    path) sending GET ``path`` back to back for ``seconds``: requests/s and the median latency
    (ms)."""
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    head = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}\r\n".encode()
    latencies: list[float] = []

    async def run() -> int:
        until = time.perf_counter() + seconds
        counts = await asyncio.gather(*(_client(where, head, until, latencies) for _ in range(connections)))
        return sum(counts)

    loop = _event_loop()()
    try:
        t0 = time.perf_counter()
        n = loop.run_until_complete(run())
        elapsed = time.perf_counter() - t0
    finally:
        loop.close()
    return {"requests_per_s": n / elapsed, "p50_ms": statistics.median(latencies) * 1000}


def bench_gateway(runs: int = 3, seconds: float = 3.0, connections: int = 16) -> dict:
    from wanka.server.bench import _member, _port, _Server

    with tempfile.TemporaryDirectory(prefix="wanka-bench-gateway-") as tmp:
        home = Path(tmp)
        gw = _port()
        server = _Server(home, ("--virtual-cards", "8", "--gateway-port", str(gw)))
        try:
            server.start()
            admin = (home / "admin-token").read_text().strip()
            token = _member(server.url, admin)
            spec = {
                "name": "bench",
                "command": [sys.executable, "-m", "wanka.server.bench_gateway"],
                "cards": 0,
                "readiness": {"path": "/", "interval_s": 0.2},
            }
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
                r = c.put("/v1/services", json=spec)
                r.raise_for_status()
                deadline = time.monotonic() + 60
                while c.get("/v1/services/bench").json()["ready"] < 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the benchmark's replica did not get ready in 60 s")
                    time.sleep(0.1)
            engine = create_engine(f"sqlite:///{home / 'wanka.db'}")
            with engine.connect() as conn:
                from wanka.server import tables

                endpoint = conn.scalar(select(tables.Job.endpoint).where(tables.Job.service_id.is_not(None)))
            engine.dispose()
            direct = endpoint[5:] if endpoint.startswith("unix:") else int(endpoint.rsplit(":", 1)[1])
            path = "/services/bench/bench/"
            load(gw, path, token, connections, 1.0)  # warm: connections, the token cache
            rows = []
            for _ in range(runs):
                alone = load(direct, "/", None, 1, seconds)
                through = load(gw, path, token, 1, seconds)
                many = load(gw, path, token, connections, seconds)
                rows.append(
                    {
                        "direct_p50_ms": alone["p50_ms"],
                        "gateway_p50_ms": through["p50_ms"],
                        "added_p50_ms": through["p50_ms"] - alone["p50_ms"],
                        "requests_per_s": many["requests_per_s"],
                        "loaded_p50_ms": many["p50_ms"],
                    }
                )
            return {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {
                "runs": runs,
                "connections": connections,
                "seconds": seconds,
                "each": rows,
            }
        finally:
            _delete(server.url, home)
            server.stop()


def _delete(url: str, home: Path) -> None:
    """Delete the service and wait for its replica to stop (a stopped server leaves tasks running
    for its successor to adopt; a benchmark's must go)."""
    admin = (home / "admin-token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as c:
        if c.delete("/v1/services/bench", params={"tenant": "bench"}).status_code != 200:
            return
        deadline = time.monotonic() + 30
        while c.get("/v1/services/bench", params={"tenant": "bench"}).status_code == 200:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


async def _upstream_at(path: str) -> None:
    server = await asyncio.start_unix_server(_answer, path)
    await server.serve_forever()


if __name__ == "__main__":  # the benchmark's replica: answers "ok" where wanka says
    loop = _event_loop()()
    if os.environ.get("WANKA_SOCKET"):
        loop.run_until_complete(_upstream_at(os.environ["WANKA_SOCKET"]))
    else:
        loop.run_until_complete(_upstream(int(os.environ["PORT"])))
