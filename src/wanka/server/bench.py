"""`wanka bench api`: the control plane's speed through its HTTP API, on loopback, with a real
server process and its embedded SQLite database.

- submissions/s sustained by concurrent clients, with the latency of each (p50, p99);
- one page of the job listing with 100,000 jobs stored (median of repeated reads);
- restart with 100,000 jobs stored (all waiting: the worst case) to the first scheduling decision.

The clients run on the same machine as the server, so they compete with it for the CPUs; the
figures are what one machine does with both.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

GOALS = {"submits_per_s": 1000.0, "submit_p99_ms": 50.0, "list_page_ms": 50.0, "restart_s": 10.0}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, home: Path, args: tuple[str, ...] = ("--virtual-cards", "8")):
        self.home, self.port, self.args = home, _port(), args
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> float:
        """Start it; seconds until it answers /healthz."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wanka.cli.main", "server", "--port", str(self.port), *self.args],
            env={**os.environ, "WANKA_HOME": str(self.home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited while starting")
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _member(url: str, admin_token: str) -> str:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        admin.post("/v1/tenants", json={"name": "bench"})
        admin.post("/v1/users", json={"name": "bench-user", "role": "member", "tenant": "bench"})
        return admin.post("/v1/users/bench-user/tokens", json={"label": "bench"}).json()["token"]


JOB = {"name": "bench", "task_groups": [{"replicas": 1, "cards": 1}], "command": ["true"]}


def _submitter(url: str, token: str, threads: int, per_thread: int, start_at: float, out) -> None:
    """One client process: ``threads`` keep-alive connections submitting back to back."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def work():
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            c.get("/healthz")  # connect before the clock starts
            while time.time() < start_at:
                time.sleep(0.001)
            for _ in range(per_thread):
                t = time.perf_counter()
                r = c.post("/v1/jobs", json=JOB)
                mine.append(time.perf_counter() - t)
                if r.status_code != 201:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0], time.time()))


def submit_rate(url: str, token: str, clients: int, per_client: int, processes: int = 1) -> dict:
    """``clients`` keep-alive connections, as threads of ``processes`` client processes. On a
    2-core machine one client process is best: more of them take the server's CPU."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0  # every client connected and waiting
    per_process = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [
        ctx.Process(target=_submitter, args=(url, token, n, per_client, start_at, out))
        for n in per_process
        if n
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for r in results for x in r[0])
    wall = max(r[2] for r in results) - start_at
    return {
        "submits": len(latencies),
        "clients": clients,
        "errors": sum(r[1] for r in results),
        "submits_per_s": len(latencies) / wall,
        "submit_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "submit_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def store_jobs(database: str, count: int) -> None:
    """``count`` waiting jobs written straight into the database (as if submitted earlier)."""
    from sqlalchemy import insert, select

    from wanka.server import db, tables

    engine = db.make_engine(database)
    with engine.begin() as conn:
        tenant = conn.scalar(select(tables.Tenant.id).where(tables.Tenant.name == "bench"))
        user = conn.scalar(select(tables.User.id).where(tables.User.name == "bench-user"))
        first = (conn.scalar(select(tables.Job.id).order_by(tables.Job.id.desc()).limit(1)) or 0) + 1
        spec = {
            "name": "stored",
            "tenant": "bench",
            "queue": "bench",
            "kind": "training",
            "priority_class": "normal",
            "task_groups": [
                {
                    "role": "worker",
                    "replicas": 1,
                    "min_replicas": None,
                    "cards": 1,
                    "accelerators": [],
                    "cpus": 0,
                    "memory_gib": 0,
                }
            ],
            "time_limit_s": 3600,
            "preemptible": None,
            "checkpoint_interval_s": None,
            "command": ["true"],
            "env": {},
            "workdir": None,
            "restart": {"max": 0},
        }
        now = time.time()
        step = 20_000
        for lo in range(0, count, step):
            ids = range(first + lo, first + min(count, lo + step))
            conn.execute(
                insert(tables.Job),
                [
                    {
                        "id": i,
                        "tenant_id": tenant,
                        "user_id": user,
                        "queue": "bench",
                        "name": "stored",
                        "spec": spec,
                        "state": "pending",
                        "reason": "",
                        "cards": 1,
                        "submit_time": now + i * 1e-6,
                        "runs": 0,
                        "failures": 0,
                        "cancel_requested": False,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(tables.JobEvent),
                [{"job_id": i, "time": now, "state": "pending", "reason": "submitted"} for i in ids],
            )
    engine.dispose()


def list_page(url: str, token: str, reads: int = 21) -> dict:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        first, deep, filtered = [], [], []
        for _ in range(reads):
            t = time.perf_counter()
            page = c.get("/v1/jobs", params={"limit": 50}).json()
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            c.get("/v1/jobs", params={"limit": 50, "before_id": page["jobs"][-1]["id"] - 50_000})
            deep.append(time.perf_counter() - t)
            t = time.perf_counter()
            c.get("/v1/jobs", params={"limit": 50, "state": "pending"})
            filtered.append(time.perf_counter() - t)
    return {
        "list_page_ms": statistics.median(first) * 1e3,
        "list_page_deep_ms": statistics.median(deep) * 1e3,
        "list_page_pending_ms": statistics.median(filtered) * 1e3,
    }


def first_decision(url: str, t0: float) -> float:
    """Seconds from ``t0`` until the scheduler's first decision (a job admitted)."""
    while True:
        try:
            health = httpx.get(url + "/healthz", timeout=30).json()
            if health.get("scheduler", {}).get("decisions", 0) > 0:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.01)


def _nodes(url: str, admin_token: str, action: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as admin:
        for node in admin.get("/v1/nodes").json():
            admin.post(f"/v1/nodes/{node['name']}/{action}", json={"reason": "benchmark"})


def bench_api(jobs: int = 100_000, clients: int = 8, per_client: int = 500) -> dict:
    from sqlalchemy import update

    from wanka.server import db, tables

    with tempfile.TemporaryDirectory(prefix="wanka-bench-api-") as tmp:
        home = Path(tmp)
        database = f"sqlite:///{home / 'wanka.db'}"
        server = _Server(home)
        try:
            server.start()
            admin = (home / "admin-token").read_text().strip()
            token = _member(server.url, admin)
            _nodes(server.url, admin, "drain")  # jobs wait: this part measures the API alone
            out = submit_rate(server.url, token, clients, per_client)
            server.stop()
            store_jobs(database, jobs - out["submits"])
            engine = db.make_engine(database)
            with engine.begin() as conn:  # nodes up again: the restarted scheduler has work to do
                conn.execute(update(tables.Node).values(state="up", reason=""))
            engine.dispose()
            server = _Server(home)
            t0 = time.perf_counter()
            out["restart_to_healthy_s"] = server.start()
            out["restart_s"] = first_decision(server.url, t0)
            _nodes(server.url, admin, "drain")  # quiet again for the listing
            out.update(list_page(server.url, token))
            out["jobs_stored"] = jobs
        finally:
            server.stop()
            _stop_tasks(home)
    return out


def _stop_tasks(home: Path) -> None:
    """The first decision started real (trivial) tasks; wait for them before the home goes."""
    deadline = time.monotonic() + 10
    for pid_file in home.glob("runs/*/*/task-*.pid"):
        pid = int(pid_file.read_text().split()[0])
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


LOCAL_GOALS = {"admission_to_start_ms_median": 100.0}


def bench_local(jobs: int = 200, samples: int = 30) -> dict:
    """The local backend under the real server: how long from a job's admission (committed) to its
    process running, and how fast a burst of single-card jobs goes through, all succeeding."""
    with tempfile.TemporaryDirectory(prefix="wanka-bench-local-") as tmp:
        return _dispatch(_Server(Path(tmp)), jobs, samples)


def bench_slurm(nodes: int = 64, gpus: int = 8, jobs: int = 500, samples: int = 20) -> dict:
    """The Slurm backend against a real Slurm on this machine (``nodes`` virtual nodes of ``gpus``
    fake GPUs): from wanka's decision to the task's process running under Slurm, and a burst of
    single-GPU jobs dispatched through it."""
    from wanka.backends.slurm_testbed import SlurmCluster, available

    why = available()
    if why:
        raise RuntimeError(f"no Slurm here: {why}")
    with tempfile.TemporaryDirectory(prefix="wanka-bench-slurm-") as tmp:
        os.chmod(tmp, 0o711)  # as root, jobs run under tenant accounts: they pass through to theirs
        cluster = SlurmCluster(Path(tmp) / "slurm", nodes, gpus)
        t0 = time.perf_counter()
        cluster.start()
        up = time.perf_counter() - t0
        try:
            home = Path(tmp) / "home"
            home.mkdir()
            server = _Server(home, ("--backend", "slurm", "--slurm-conf", str(cluster.conf)))
            out = _dispatch(server, jobs, samples)
        finally:
            cluster.stop()
    return {"slurm_nodes": nodes, "gpus_per_node": gpus, "slurm_up_s": up, **out}


def _elements(c: httpx.Client, array: int) -> list[dict]:
    """Every element of a job array (pages of 1,000)."""
    out, before = [], None
    while True:
        params = {"array": array, "limit": 1000, **({"before_id": before} if before else {})}
        page = c.get("/v1/jobs", params=params).json()
        out += page["jobs"]
        before = page["next_before_id"]
        if not before:
            return out


def _dispatch(server: _Server, jobs: int, samples: int) -> dict:
    """Admission-to-start latency (one job at a time) and a burst of single-card jobs."""
    try:
        server.start()
        admin = (server.home / "admin-token").read_text().strip()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as a:
            a.post("/v1/tenants", json={"name": "bench"})
            a.post("/v1/users", json={"name": "bench-user", "role": "member", "tenant": "bench"})
            token = a.post("/v1/users/bench-user/tokens", json={"label": "bench"}).json()["token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            # 1. latency, one job at a time: `date` prints the moment its process runs
            latencies = []
            for _ in range(samples):
                spec = {**JOB, "command": ["date", "+%s.%N"]}
                jid = c.post("/v1/jobs", json=spec).json()["id"]
                while c.get(f"/v1/jobs/{jid}").json()["state"] not in ("succeeded", "failed"):
                    time.sleep(0.01)
                started = float(c.get(f"/v1/jobs/{jid}/logs").json()["data"])
                admitted = next(
                    e["time"] for e in c.get(f"/v1/jobs/{jid}/events").json() if e["state"] == "admitted"
                )
                latencies.append(started - admitted)
            # 2. a burst: one job array of single-card elements, one request; dispatched when the
            # last element was handed to the backend (its "running" event, the server's clock on
            # this machine), then until all end. Polled twice a second, as a user watching would:
            # a listing of 500 jobs 20 times a second took the loop's share of the CPU
            t0, wall0 = time.perf_counter(), time.time()
            spec = {**JOB, "command": ["true"], "array": f"0-{jobs - 1}"}
            array = c.post("/v1/jobs", json=spec).json()["id"]
            submitted = time.perf_counter() - t0
            states: dict[str, int] = {}
            while True:
                mine = _elements(c, array)
                if all(j["state"] in ("succeeded", "failed", "cancelled") for j in mine):
                    for j in mine:
                        states[j["state"]] = states.get(j["state"], 0) + 1
                    break
                time.sleep(0.5)
            wall = time.perf_counter() - t0
            handed = [
                next(e["time"] for e in c.get(f"/v1/jobs/{j['id']}/events").json() if e["state"] == "running")
                for j in mine
            ]
            dispatched = max(handed) - wall0
            failures: dict[str, int] = {}  # why, for a run that is not all successes
            for j in mine:
                if j["state"] != "succeeded":
                    failures[j["reason"]] = failures.get(j["reason"], 0) + 1
    finally:
        server.stop()
    latencies.sort()
    return {
        "admission_to_start_ms_median": statistics.median(latencies) * 1e3,
        "admission_to_start_ms_p90": latencies[int(len(latencies) * 0.9)] * 1e3,
        "samples": samples,
        "burst_jobs": jobs,
        "burst_submit_s": submitted,
        "burst_wall_s": wall,
        "burst_jobs_per_s": jobs / wall,
        "burst_dispatch_s": dispatched,
        "burst_dispatched_per_s": jobs / dispatched,
        "burst_states": states,
        "burst_failures": failures,
    }
