"""The gateway's ASGI app: ``/services/{tenant}/{name}/{path}`` to a ready replica's ``/{path}``.

Per request: find the service (404), check the caller's token when the service asks for one (401
without a live one, 403 for a member of a tenant the service is not shared with; admins pass),
pick the ready replica with the fewest requests outstanding (least outstanding requests, as Envoy's
LEAST_REQUEST and SkyServe's load balancer), and stream its answer back as it comes (Server-Sent
Events and long downloads included). A replica that refuses the connection is taken out at once and
the request goes to another; one that drops the connection before answering is retried elsewhere
when the method is idempotent (RFC 9110 §9.2.2). With no replica ready, the request waits for one
(``wake_timeout_s``) while the autoscaler starts it (scale from zero). WebSockets are relayed
frame by frame.

The caller's wanka token and console cookie never reach a replica: a service's owner must not
collect the tokens of those who call it.

Requests go to replicas over kept-alive HTTP/1.1 connections of :mod:`.upstream` (httptools'
parser); WebSockets, HEAD and probes over aiohttp's client. httpx, measured first, spent ~2 ms of
Python per proxied request; aiohttp's ~0.6 ms; :mod:`.upstream` less (docs/services.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from yarl import URL

from wanka.server import auth
from wanka.server.console.session import COOKIE
from wanka.server.gateway.board import Board, Replica, Route
from wanka.server.gateway.upstream import ConnectFailed, Dropped, Pool

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",  # the body is in hand: no 100-continue to wait for
    }
)
FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"forwarded",
        b"x-real-ip",
    }
)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body is kept whole, so that it can be retried
MAX_HELD_BYTES = 256 * 1024 * 1024  # bodies held at once, every request together (then 503)
BODY_GAP_S, BODY_TOTAL_S = 10.0, 120.0  # between a body's pieces; for all of it (then 408)
ATTEMPTS = 3  # replicas one request may try
TOKEN_CACHE_S = 5.0  # a revoked token still passes the gateway for at most this long
TOKEN_CACHE_SIZE = 10_000
WS_MAX_MESSAGE = 1024 * 1024  # a WebSocket message, either way (aiohttp buffers one whole)
SESSION_COOKIE = "wanka_gw"  # a browser's session with one service (its path only)
# CSP sandbox without allow-same-origin: the page gets an opaque origin (W3C CSP3, "sandbox")
SANDBOX = (b"content-security-policy", b"sandbox allow-scripts allow-forms allow-popups allow-modals")
WHOLE_BYTES = 256 * 1024  # an answer this small, of known length, is read whole and sent at once


class GatewayMetrics:
    """Per service: requests by status code, latency, requests in flight (Prometheus)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["tenant", "service"]
        self.requests = Counter(
            "wanka_service_requests",
            "Requests through the gateway",
            [*labels, "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wanka_service_request_duration_seconds",
            "From the request's arrival to the end of its answer's head",
            labels,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.inflight = Gauge(
            "wanka_service_requests_in_flight", "Requests being answered", labels, registry=self.registry
        )
        self.retries = Counter(
            "wanka_service_retries", "Requests sent to another replica", labels, registry=self.registry
        )
        self._children: dict[tuple, object] = {}  # labels() looked up once per service (and code)

    def of(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Gateway:
    """The ASGI app. ``notify(service_id)`` wakes the control loop (a request waits with no
    replica ready)."""

    def __init__(self, sessions, board: Board, notify: Callable[[int], None]) -> None:
        self.sessions, self.board, self.notify = sessions, board, notify
        self.metrics = GatewayMetrics()
        self.http: aiohttp.ClientSession | None = None  # WebSockets, HEAD, readiness probes
        self.pool = Pool()  # every other request
        self._tokens: dict[str, tuple[auth.Principal, float]] = {}

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        try:
            route, rest = self._route(scope)
            if route is None:  # applied a moment ago? the board looks again (once per 0.1 s at most)
                await self.board.recent()
                route, rest = self._route(scope)
            if route is None:
                raise Refused(404, f"no service {rest.decode('ascii', 'replace')}")
            if _header(scope, b"service-worker"):  # one would watch every service's pages of this origin
                raise Refused(
                    403, "service workers are refused at the gateway: its origin is every service's"
                )
            if kind == "http" and b"wanka_link=" in (scope.get("query_string") or b""):
                await self._redeem(route, scope, send)
                return
            await self._check(route, scope)
        except Refused as exc:
            await _refuse(scope, send, exc)
            return
        if kind == "http":
            await self._http(route, rest, scope, receive, send)
        else:
            await self._websocket(route, rest, scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.http = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, force_close=False),
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                )
                await self.board.start(self.pool)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.board.stop()
                await self.http.close()
                self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- who may call what ---------------------------------------------------------------------

    def _route(self, scope) -> tuple[Route | None, bytes]:
        """The service the path names and the rest of the path (no service: None, and its name)."""
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        parts = raw.split(b"/", 4)  # b"", b"services", tenant, name, rest
        if len(parts) < 4 or parts[0] != b"" or parts[1] != b"services":
            raise Refused(404, "the gateway serves /services/{tenant}/{name}/...")
        tenant, name = parts[2].decode("ascii", "replace"), parts[3].decode("ascii", "replace")
        route = self.board.by_name.get((tenant, name))
        if route is None:
            return None, f"{name!r} of tenant {tenant!r}".encode("ascii", "replace")
        if route.spec.get("kind") == "notebook":  # Jupyter serves under its base URL: the whole path
            return route, raw
        return route, b"/" + (parts[4] if len(parts) > 4 else b"")

    async def _check(self, route: Route, scope) -> None:
        if not route.spec.get("auth", True):
            return
        token = _bearer(scope)
        if token is None:
            who = self.board.browser_session(_cookie(scope, SESSION_COOKIE), route.service_id)
            if who is None:
                raise Refused(
                    401,
                    "this service needs a wanka token (Authorization: Bearer wk_...), or in a "
                    "browser a link from `wanka notebook open` or `wanka service link`",
                    {"www-authenticate": "Bearer"},
                )
        else:
            who = await self._principal(token)
        if who is None:
            raise Refused(401, "missing, unknown or revoked token", {"www-authenticate": "Bearer"})
        if (
            who.is_admin
            or who.tenant_name == route.tenant
            or who.tenant_name in route.spec.get("shared_with", ())
        ):
            return
        raise Refused(403, f"service {route.name} of {route.tenant} is not shared with {who.tenant_name}")

    async def _console_user(self, scope) -> auth.Principal | None:
        """Who the browser is signed in to the console as (its session cookie reaches every port
        of the host), or None."""
        token = _cookie(scope, COOKIE)
        if not token or len(token) > 200:
            return None

        def lookup():
            with self.sessions() as session:
                return auth.authenticate(session, token, console=True)

        return await asyncio.to_thread(lookup)

    async def _principal(self, token: str) -> auth.Principal | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._tokens.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]

        def lookup():
            with self.sessions() as session:
                return auth.authenticate(session, token)

        who = await asyncio.to_thread(lookup)
        if who is not None:
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[key] = (who, now + TOKEN_CACHE_S)
        return who

    async def _redeem(self, route: Route, scope, send) -> None:
        """A browser's one-time link (``wanka_link``, from the API): a session cookie for this
        service's path only (HttpOnly, SameSite=Strict), then on to the same URL without it."""
        params = (scope.get("query_string") or b"").decode("latin-1").split("&")
        code = next((p.split("=", 1)[1] for p in params if p.startswith("wanka_link=")), "")
        rest = "&".join(p for p in params if p and not p.startswith("wanka_link="))
        who = await self._console_user(scope)
        if who is None:
            raise Refused(
                401,
                "open this link in a browser signed in to the wanka console (its /login), as the "
                "user who asked for it",
            )
        owner = self.board.link_user(code)
        if owner is not None and owner != who.user_id:  # sent to someone else: theirs to refuse
            raise Refused(
                403,
                "this link is for another user: open it in a browser signed in to the wanka console as them",
            )
        secret = self.board.redeem_link(code, route.service_id, who.user_id)
        if secret is None:
            raise Refused(
                401, "this link is unknown, used or expired; ask for a new one (wanka notebook open)"
            )
        prefix = f"/services/{route.tenant}/{route.name}/"
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        target += f"?{rest}" if rest else ""
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{SESSION_COOKIE}={secret}; Path={prefix}; HttpOnly; SameSite=Strict{secure}"
        headers = [
            (b"location", target.encode("latin-1")),
            (b"set-cookie", cookie.encode()),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # --- HTTP ----------------------------------------------------------------------------------

    async def _http(self, route: Route, rest: bytes, scope, receive, send) -> None:
        labels = (route.tenant, route.name)
        started = time.monotonic()
        meter = route.meter
        meter.begin(started)
        metrics = self.metrics
        inflight = metrics.of(metrics.inflight, *labels)
        inflight.inc()
        code = 502
        try:
            body = await _read_body(receive)
            code = await self._forward(route, rest, scope, body, receive, send, started)
        except Refused as exc:
            code = exc.status
            await _refuse(scope, send, exc)
        finally:
            meter.end(time.monotonic())
            inflight.dec()
            metrics.of(metrics.requests, *labels, str(code)).inc()

    async def _forward(self, route, rest, scope, body, receive, send, started) -> int:
        method = scope["method"]
        headers = _upstream_headers(scope, route)
        query = scope.get("query_string") or b""
        target = rest + (b"?" + query if query else b"")
        timeout_s = float(route.spec.get("timeout_s", 60))
        sandbox = route.spec.get("kind") != "notebook"
        tried: set[int] = set()
        last = ""
        for attempt in range(ATTEMPTS):
            r = await self._pick(route, tried)
            tried.add(r.job_id)
            if attempt:
                self.metrics.of(self.metrics.retries, route.tenant, route.name).inc()
            r.inflight += 1
            conn = None
            try:
                head = _request_head(method, target, r.endpoint, headers, body)
                conn, _ = await self.pool.send(r.endpoint, head, body, timeout_s, bodiless=method == "HEAD")
                latency = self.metrics.of(self.metrics.latency, route.tenant, route.name)
                latency.observe(time.monotonic() - started)
                prefix = f"/services/{route.tenant}/{route.name}/".encode()
                await _relay_answer(conn, send, receive, sandbox, timeout_s, prefix)
                return conn.status
            except ConnectFailed as exc:  # nothing was sent: any method may go elsewhere
                self.board.mark(route, r, False, at_once=True)
                last = f"replica {r.job_id} at {r.endpoint}: {exc}"
            except Dropped as exc:
                self.board.mark(route, r, False, at_once=True)
                last = f"replica {r.job_id} at {r.endpoint}: {exc}"
                if method not in IDEMPOTENT:
                    raise Refused(502, last + f"; a {method} is not retried (not idempotent)") from None
            except TimeoutError:
                raise Refused(
                    504, f"replica {r.job_id} sent nothing for {timeout_s:g} s (timeout_s)"
                ) from None
            except _Sent:  # the answer began, then the replica or the caller went: nothing to redo
                return conn.status if conn is not None else 200
            finally:
                r.inflight -= 1
                if conn is not None:
                    self.pool.done(r.endpoint, conn)
        raise Refused(502, f"no replica answered after {len(tried)} attempt(s): {last}")

    async def _pick(self, route: Route, tried: set[int]) -> Replica:
        """The ready replica with the fewest outstanding requests (ties at random), waiting for
        one up to the service's ``wake_timeout_s`` when none is ready."""
        deadline = None
        while True:
            best: list[Replica] = []
            low = None
            for r in route.replicas.values():
                if not r.ready or r.draining or r.job_id in tried:
                    continue
                if low is None or r.inflight < low:
                    best, low = [r], r.inflight
                elif r.inflight == low:
                    best.append(r)
            if best:
                return best[0] if len(best) == 1 else random.choice(best)
            wait = float(route.spec.get("wake_timeout_s", 120))
            if deadline is None:
                deadline = time.monotonic() + wait
                self.notify(route.service_id)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Refused(
                    504, f"no replica of {route.name} became ready within {wait:g} s (wake_timeout_s)"
                )
            current = self.board.by_id.get(route.service_id, route)  # the board may have refreshed
            if current is not route:
                route = current
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(route.ready.wait(), min(left, 0.5))

    # --- WebSockets ----------------------------------------------------------------------------

    async def _websocket(self, route: Route, rest: bytes, scope, receive, send) -> None:
        headers = _upstream_headers(scope, route, websocket=True)
        protocols = [p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()]
        query = scope.get("query_string") or b""
        target = rest + (b"?" + query if query else b"")
        route.meter.begin(time.monotonic())
        try:
            r = await self._pick(route, set())
            unix = r.endpoint.startswith("unix:")
            http = (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=r.endpoint[5:]))
                if unix
                else self.http
            )
            host = "replica" if unix else r.endpoint
            url = URL(f"http://{host}{target.decode('latin-1')}", encoded=True)
            try:
                upstream = await http.ws_connect(
                    url, headers=headers, protocols=protocols, max_msg_size=WS_MAX_MESSAGE, autoping=True
                )
            except (aiohttp.ClientError, OSError) as exc:
                if unix:
                    await http.close()
                raise Refused(502, f"replica {r.job_id} refused the WebSocket: {exc}") from None
        except Refused as exc:
            route.meter.end(time.monotonic())
            await _refuse(scope, send, exc)
            return
        r.inflight += 1
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await _relay(upstream, receive, send)
        finally:
            r.inflight -= 1
            route.meter.end(time.monotonic())
            await upstream.close()
            if http is not self.http:
                await http.close()


class _Sent(Exception):
    """The answer's head went to the caller: the request cannot be retried any more."""


def _answer_headers(
    raw: list[tuple[bytes, bytes]], sandbox: bool, prefix: bytes
) -> list[tuple[bytes, bytes]]:
    """The replica's answer's headers for the caller: no hop-by-hop ones, no ``Service-Worker-
    Allowed``; a sandboxed service's sets no cookie (the browser would keep it for the whole host:
    the console's and every service's), a notebook's only its own (named other than wanka's, for a
    path inside its own)."""
    out = []
    for k, v in raw:
        k = k.lower()
        if k in HOP_BY_HOP or k == b"service-worker-allowed":
            continue
        if k == b"set-cookie" and (sandbox or not _own_cookie(v, prefix)):
            continue
        out.append((k, v))
    if sandbox:
        out.append(SANDBOX)
    return out


def _own_cookie(value: bytes, prefix: bytes) -> bool:
    name, _, rest = value.partition(b"=")
    if name.strip().lower().startswith(b"wanka"):
        return False
    attributes = [a.strip().lower() for a in rest.split(b";")[1:]]
    paths = [a[5:].strip() for a in attributes if a.startswith(b"path=")]
    domains = [a for a in attributes if a.startswith(b"domain=")]
    return not domains and bool(paths) and all(p.startswith(prefix) for p in paths)


async def _relay_answer(conn, send, receive, sandbox: bool, timeout_s: float, prefix: bytes = b"/") -> None:
    """The replica's answer to the caller: at once when it is small and its length known (most
    answers: no task to watch the caller), else as it comes, until the caller goes away. A
    service's pages (``sandbox``) run in a browser as an origin of their own: every tenant's
    services share the gateway's origin, and one's page must not script another's."""
    headers = _answer_headers(conn.headers, sandbox, prefix)
    length = conn.content_length
    if length is not None and length <= WHOLE_BYTES:
        try:
            body = await conn.read(timeout_s)
        except TimeoutError:
            raise Dropped(f"its answer stopped for {timeout_s:g} s before its end", True) from None
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": conn.status, "headers": headers})
    gone = asyncio.ensure_future(receive())  # the body was read whole: next comes http.disconnect
    try:
        while True:
            read = asyncio.ensure_future(conn.chunk(timeout_s))
            await asyncio.wait({read, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                raise _Sent()
            try:
                chunk = read.result()
            except TimeoutError:
                raise _Sent() from None
            if not chunk:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()


def _request_head(method: str, target: bytes, endpoint: str, headers: list, body: bytes) -> bytes:
    """The request line and headers for the replica (``headers``: (name, value) text pairs)."""
    host = "replica" if endpoint.startswith("unix:") else endpoint
    lines = [f"{method} {target.decode('latin-1')} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _relay(upstream: aiohttp.ClientWebSocketResponse, receive, send) -> None:
    async def down() -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
            else:
                break
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    async def up() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000))
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Budget:
    """Request bytes the gateway holds at once, all requests together."""

    held = 0


async def _read_body(receive) -> bytes:
    """The request's body, whole: within :data:`MAX_BODY_BYTES`, each piece within
    :data:`BODY_GAP_S` of the last and all of it within :data:`BODY_TOTAL_S` (a body sent a byte at
    a time would hold a connection and its buffer for ever), while the gateway holds less than
    :data:`MAX_HELD_BYTES` of bodies in all."""
    chunks, size = [], 0
    deadline = time.monotonic() + BODY_TOTAL_S
    try:
        while True:
            left = min(BODY_GAP_S, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                raise Refused(
                    408,
                    f"the request body was not sent in time ({BODY_GAP_S:g} s between pieces, "
                    f"{BODY_TOTAL_S:g} s in all)",
                ) from None
            if message["type"] == "http.disconnect":
                raise Refused(499, "the caller went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            _Budget.held += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Refused(
                    413, f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB (the gateway's limit)"
                )
            if _Budget.held > MAX_HELD_BYTES:
                raise Refused(
                    503, "the gateway holds too many request bodies now; try again", {"retry-after": "1"}
                )
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)
    finally:
        _Budget.held -= size


def _header(scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return ""


def _cookie(scope, name: str) -> str:
    for part in _header(scope, b"cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _bearer(scope) -> str | None:
    value = _header(scope, b"authorization")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def _upstream_headers(scope, route: Route, websocket: bool = False) -> list[tuple[str, str]]:
    """The caller's headers for the replica: no hop-by-hop ones, no wanka token, no console
    cookie, and X-Forwarded-* set here (whatever the caller claimed)."""
    out = []
    named = {n.strip().lower().encode() for n in _header(scope, b"connection").split(",") if n.strip()}
    for k, v in scope["headers"]:
        if k in HOP_BY_HOP or k in FORWARDED or k in named:  # and what Connection names (RFC 9110 7.6.1)
            continue
        if websocket and k.startswith(b"sec-websocket-"):
            continue  # the client library makes its own handshake
        value = v.decode("latin-1")
        if k == b"authorization" and value[7:].strip().startswith((auth.PREFIX, auth.SESSION_PREFIX)):
            continue
        if k == b"cookie":
            value = _without_console_cookie(value)
            if not value:
                continue
        out.append((k.decode("latin-1"), value))
    client = scope.get("client")
    host = _header(scope, b"host")
    out += [
        ("x-forwarded-for", client[0] if client else ""),
        ("x-forwarded-proto", scope.get("scheme", "http").replace("ws", "http")),
        ("x-forwarded-prefix", f"/services/{route.tenant}/{route.name}"),
    ]
    if host:
        out.append(("x-forwarded-host", host))
    return out


def _without_console_cookie(value: str) -> str:
    """The Cookie header without wanka's own cookies (the console's, the gateway's sessions)."""
    ours = (COOKIE, SESSION_COOKIE)
    kept = [c for c in value.split(";") if c.strip().split("=", 1)[0].strip() not in ours]
    return ";".join(kept).strip()


async def _refuse(scope, send, exc: Refused) -> None:
    if scope["type"] == "websocket":
        # before the handshake: refuse it with an HTTP answer (ASGI's websocket.http.response
        # is not in every server; a close before accept is a 403 in uvicorn)
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return
    body = json.dumps({"detail": exc.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
    try:
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # the caller is gone (499)
        pass
