"""Where each service's replicas are, and which of them are ready.

The board follows the database (services, and their replicas' jobs that run with an address) a
few times a second, and probes each replica's readiness path as its spec says (Kubernetes'
readiness probe: ready after one success, out after three failures in a row, or at once when a
request could not reach it). The gateway routes to ready replicas only; the control loop reads
readiness to roll updates over and marks replicas it is about to stop as draining, so that no new
request reaches them while they finish the ones they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from wanka.core import JobState
from wanka.server import tables
from wanka.server.auth import Principal
from wanka.server.gateway.meter import Meter
from wanka.server.gateway.upstream import ConnectFailed, Dropped, Pool

log = logging.getLogger("wanka.gateway")

REFRESH_S = 0.5  # the longest the board goes without reading the database
LINK_TTL_S = 120.0  # a browser link (`wanka notebook open`) works once, within this
BROWSER_SESSION_S = 8 * 3600.0  # and the browser's session with that service lasts this long
MAX_LINKS, MAX_BROWSER_SESSIONS = 10_000, 100_000
LINKS_PER_USER, BROWSERS_PER_USER = 16, 64  # a user's own: the oldest goes (no user fills the board)
ACTIVITY_EVERY_S = 10.0  # how often a notebook's Jupyter is asked for its last activity
PROBE_BYTES = 64 * 1024  # of a probe's (or an activity report's) body: the rest is not read
FAILURE_THRESHOLD = 3  # probe failures in a row that take a replica out (Kubernetes' default)


@dataclass(slots=True)
class Replica:
    job_id: int
    endpoint: str  # host:port
    generation: int
    started: float  # UNIX seconds: the job's start (the probe's initial delay counts from it)
    ready: bool = False
    failures: int = 0
    next_probe: float = 0.0  # monotonic
    inflight: int = 0
    draining: bool = False  # the control loop stops it soon: no new requests
    probing: bool = False


@dataclass(slots=True)
class Route:
    """One service as the gateway sees it."""

    service_id: int
    tenant: str
    name: str
    spec: dict
    replicas: dict[int, Replica] = field(default_factory=dict)
    meter: Meter = field(default_factory=Meter)
    ready: asyncio.Event | None = None  # set while some replica is ready (made on the event loop)
    activity: float = 0.0  # a notebook: Jupyter's own last activity (UNIX seconds; 0: unknown)

    def routable(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.ready and not r.draining]

    def update_ready(self) -> None:
        if self.ready is not None:
            if self.routable():
                self.ready.set()
            else:
                self.ready.clear()


SERVICES = select(
    tables.Service.id, tables.Service.name, tables.Service.spec, tables.Tenant.name.label("tenant")
).join(tables.Tenant, tables.Tenant.id == tables.Service.tenant_id)
REPLICAS = select(
    tables.Job.id,
    tables.Job.service_id,
    tables.Job.endpoint,
    tables.Job.service_generation,
    tables.Job.start_time,
).where(
    tables.Job.service_id.is_not(None),
    tables.Job.state == JobState.RUNNING.value,
    tables.Job.endpoint.is_not(None),
    tables.Job.cancel_requested.is_(False),
)


class Board:
    """Every service's :class:`Route`, by (tenant, name) and by id. Read by the gateway (its event
    loop) and the control loop (its thread): the control loop only reads flags and sets
    ``draining``; the dictionaries are replaced whole, never changed in place."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.by_name: dict[tuple[str, str], Route] = {}
        self.by_id: dict[int, Route] = {}
        self._poke: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._probes: set[asyncio.Task] = set()
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Future | None = None
        self._pool: Pool | None = None
        self.meters: dict[int, Meter] = {}  # kept across refreshes (and before the first request)
        self.activity: dict[int, float] = {}  # notebook -> Jupyter's last activity, UNIX seconds
        self._links: dict[str, tuple[Principal, int, float]] = {}  # one-time code -> who, service, until
        self._browsers: dict[str, tuple[Principal, int, float]] = {}  # sha256(cookie) -> who, service, until
        self._activity_at: dict[int, float] = {}

    # --- the control loop's side (any thread) --------------------------------------------------

    def ready_ids(self, service_id: int) -> set[int]:
        route = self.by_id.get(service_id)
        return {r.job_id for r in route.routable()} if route else set()

    def inflight(self, job_id: int, service_id: int) -> int:
        route = self.by_id.get(service_id)
        r = route.replicas.get(job_id) if route else None
        return r.inflight if r else 0

    def drain(self, service_id: int, job_ids: set[int]) -> None:
        """No new request goes to these replicas (the control loop stops them next)."""
        route = self.by_id.get(service_id)
        if route is None:
            return
        for job_id in job_ids:
            r = route.replicas.get(job_id)
            if r is not None:
                r.draining = True
        self._call(route.update_ready)

    def meter(self, service_id: int) -> Meter:
        m = self.meters.get(service_id)
        if m is None:
            m = self.meters.setdefault(service_id, Meter())
        return m

    def link(self, who: Principal, service_id: int) -> str:
        """A one-time code a browser trades at the gateway for a session with this service
        (:data:`LINK_TTL_S`). Codes live in this server's memory: its gateway redeems them. A
        user has at most :data:`LINKS_PER_USER` waiting (the oldest goes)."""
        now = time.time()
        mine = sorted((v[2], k) for k, v in self._links.items() if v[0].user_id == who.user_id)
        for _, code in mine[: max(0, len(mine) - LINKS_PER_USER + 1)]:
            del self._links[code]
        if len(self._links) >= MAX_LINKS:
            self._links = {k: v for k, v in self._links.items() if v[2] > now}
            if len(self._links) >= MAX_LINKS:
                raise OverflowError("too many browser links waiting; try again in a minute")
        code = secrets.token_urlsafe(32)
        self._links[code] = (who, service_id, now + LINK_TTL_S)
        return code

    def link_user(self, code: str) -> int | None:
        """The user a waiting link was made for (None: no such link)."""
        entry = self._links.get(code) if code else None
        return entry[0].user_id if entry is not None else None

    def redeem_link(self, code: str, service_id: int, user_id: int) -> str | None:
        """The session secret for the browser that brought ``code`` (once), signed in to the
        console as the user who asked for it; None otherwise (the code stays for its own)."""
        entry = self._links.get(code) if code else None
        now = time.time()
        if entry is None or entry[1] != service_id or entry[0].user_id != user_id or entry[2] < now:
            return None
        del self._links[code]
        mine = sorted((v[2], k) for k, v in self._browsers.items() if v[0].user_id == user_id)
        for _, key in mine[: max(0, len(mine) - BROWSERS_PER_USER + 1)]:
            del self._browsers[key]
        if len(self._browsers) >= MAX_BROWSER_SESSIONS:
            self._browsers = {k: v for k, v in self._browsers.items() if v[2] > now}
            if len(self._browsers) >= MAX_BROWSER_SESSIONS:
                return None
        secret = secrets.token_urlsafe(32)
        self._browsers[hashlib.sha256(secret.encode()).hexdigest()] = (
            entry[0],
            service_id,
            now + BROWSER_SESSION_S,
        )
        return secret

    def browser_session(self, secret: str, service_id: int) -> Principal | None:
        if not secret:
            return None
        entry = self._browsers.get(hashlib.sha256(secret.encode()).hexdigest())
        if entry is None or entry[1] != service_id or entry[2] < time.time():
            return None
        return entry[0]

    def poke(self) -> None:
        """Read the database again soon (a replica started or stopped)."""
        if self._poke is not None:
            self._call(self._poke.set)

    def _call(self, fn) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn)

    # --- the gateway's side (its event loop) ---------------------------------------------------

    async def start(self, pool: Pool) -> None:
        self._loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        self._pool = pool
        await self.refresh()
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._probe_loop())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), REFRESH_S)
            self._poke.clear()
            try:
                await self.refresh()
            except Exception:  # the database away for a moment: keep routing what we know
                log.exception("gateway: reading services failed")

    def _read(self) -> tuple[list, list]:
        with self.sessions() as session:
            services = session.execute(SERVICES.where(tables.Service.deleted_at.is_(None))).all()
            replicas = session.execute(REPLICAS).all()
        return services, replicas

    async def recent(self, max_age_s: float = 0.1) -> None:
        """Refresh unless the last refresh began within ``max_age_s`` (a name the board does not
        know may be a service applied a moment ago); callers at once share one refresh."""
        if time.monotonic() - self._refreshed_at < max_age_s:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.refresh())
        await asyncio.shield(self._refreshing)

    async def refresh(self) -> None:
        self._refreshed_at = time.monotonic()
        services, replicas = await asyncio.to_thread(self._read)
        by_service: dict[int, list] = {}
        for row in replicas:
            by_service.setdefault(row.service_id, []).append(row)
        by_id: dict[int, Route] = {}
        for s in services:
            old = self.by_id.get(s.id)
            route = Route(s.id, s.tenant, s.name, s.spec, meter=self.meter(s.id))
            route.ready = old.ready if old and old.ready else asyncio.Event()
            for row in by_service.get(s.id, []):
                kept = old.replicas.get(row.id) if old else None
                if kept is not None and kept.endpoint == row.endpoint:
                    route.replicas[row.id] = kept
                else:
                    route.replicas[row.id] = Replica(
                        row.id, row.endpoint, row.service_generation or 0, row.start_time or time.time()
                    )
            route.update_ready()
            by_id[s.id] = route
        for sid in list(self.meters):
            if sid not in by_id:
                del self.meters[sid]
        self.by_id = by_id
        self.by_name = {(r.tenant, r.name): r for r in by_id.values()}
        if self._pool is not None:
            self._pool.forget({rep.endpoint for r in by_id.values() for rep in r.replicas.values()})

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            wall = time.time()
            for route in list(self.by_id.values()):
                probe = route.spec.get("readiness") or {}
                for r in list(route.replicas.values()):
                    if r.probing or now < r.next_probe:
                        continue
                    if wall < r.started + float(probe.get("initial_delay_s", 0.0)):
                        continue
                    r.probing = True
                    r.next_probe = now + float(probe.get("interval_s", 2.0))
                    if route.spec.get("kind") == "notebook" and now >= self._activity_at.get(
                        route.service_id, 0
                    ):
                        self._activity_at[route.service_id] = now + ACTIVITY_EVERY_S
                        task = asyncio.create_task(self._jupyter_activity(route, r))
                        self._probes.add(task)
                        task.add_done_callback(self._probes.discard)
                    task = asyncio.create_task(self._probe(route, r, probe))
                    self._probes.add(task)  # a reference until it ends (the loop keeps only weak ones)
                    task.add_done_callback(self._probes.discard)

    async def _probe(self, route: Route, r: Replica, probe: dict) -> None:
        ok = False
        try:
            timeout = float(probe.get("timeout_s", 1.0))
            status, _ = await asyncio.wait_for(
                self._pool.get(r.endpoint, probe.get("path", "/"), "", timeout, PROBE_BYTES), timeout
            )
            ok = 200 <= status < 400
        except (TimeoutError, ConnectFailed, Dropped, OSError):
            ok = False
        finally:
            r.probing = False
        self.mark(route, r, ok)

    async def _jupyter_activity(self, route: Route, r: Replica) -> None:
        """Jupyter's own last activity (its ``api/status``: kernels and terminals included), for
        the idle culler."""
        token = (route.spec.get("env") or {}).get("JUPYTER_TOKEN", "")
        path = f"/services/{route.tenant}/{route.name}/api/status"
        try:
            status, body = await asyncio.wait_for(
                self._pool.get(r.endpoint, path, f"authorization: token {token}\r\n", 2.0, PROBE_BYTES), 2.0
            )
            if status != 200:
                return
            when = json.loads(body).get("last_activity")
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except (TimeoutError, ConnectFailed, Dropped, OSError, ValueError, AttributeError, TypeError):
            return
        stamp = min(stamp, time.time())  # a notebook that claims activity to come is idle all the same
        self.activity[route.service_id] = max(self.activity.get(route.service_id, 0.0), stamp)

    def mark(self, route: Route, r: Replica, ok: bool, at_once: bool = False) -> None:
        """A probe's (or a request's) outcome for ``r``: ready after one success; out after
        :data:`FAILURE_THRESHOLD` failures in a row, or at once (``at_once``: it refused a
        connection, so it is not there)."""
        if ok:
            r.failures = 0
            r.ready = True
        else:
            r.failures = FAILURE_THRESHOLD if at_once else r.failures + 1
            if r.failures >= FAILURE_THRESHOLD:
                r.ready = False
            if at_once:
                r.next_probe = 0.0  # look again soon: it may be back
        route.update_ready()
