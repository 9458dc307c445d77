"""HTTP/1.1 to replicas, kept alive per replica: the gateway's request path.

An asyncio protocol with httptools' response parser (the one uvicorn parses requests with), and a
pool of idle connections per replica. It does only what the gateway asks of it: a request whose
body is already in hand, an answer read as it arrives (whole, or chunk by chunk with flow control),
the connection kept when the answer ended cleanly. aiohttp's client did the same with ~3x the
Python per request (``wanka bench gateway``, docs/services.md); it still carries WebSockets, HEAD
and the readiness probes, where its generality is worth its cost.
"""

from __future__ import annotations

import asyncio
import collections

import httptools

HIGH_WATER = 1024 * 1024  # bytes of an answer buffered before the replica's socket is paused
IDLE_PER_REPLICA = 64  # idle connections kept per replica


class ConnectFailed(Exception):
    """The replica could not be connected to: nothing was sent."""


class Dropped(Exception):
    """The connection ended before the answer's head. ``fresh``: it was new (not a kept one the
    replica may have closed while idle), so the replica saw the request."""

    def __init__(self, message: str, fresh: bool):
        super().__init__(message)
        self.fresh = fresh


class _Conn(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_done",
        "_head",
        "_more",
        "_parser",
        "_paused",
        "_size",
        "bodiless",
        "closed",
        "got_bytes",
        "headers",
        "keep",
        "status",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.bodiless = False  # the request was a HEAD: its answer ends with its head
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        loop = asyncio.get_running_loop()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future = loop.create_future()
        self._done = False
        self._body: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._more: asyncio.Future | None = None
        self._paused = False
        self.got_bytes = False
        self.keep = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Dropped(f"the replica's answer is not HTTP/1.1: {exc}", True))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self._head.done():
            self._fail(Dropped(f"the replica closed the connection ({exc or 'no answer'})", True))
        elif not self._done:
            self._done = True  # an answer delimited by the connection's end (no length)
            self._wake()

    # --- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx informational (103 Early Hints): the real answer follows
            self.headers = []
            return
        self.status = status
        if self.bodiless:  # the parser cannot know a HEAD's answer has no body: it ends here
            self._done, self.keep = True, False
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.status < 200:
            return
        self._body.append(body)
        self._size += len(body)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.keep = self._parser.should_keep_alive()
        self._done = True
        self._wake()

    # --- the gateway's side --------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if not self._head.done():
            self._head.set_exception(exc)
        self._done = True
        self._wake()

    def _wake(self) -> None:
        if self._more is not None and not self._more.done():
            self._more.set_result(None)

    async def head(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._head), timeout)

    @property
    def content_length(self) -> int | None:
        for k, v in self.headers:
            if k.lower() == b"content-length":
                try:
                    return int(v)
                except ValueError:
                    return None
        return None

    async def chunk(self, timeout: float) -> bytes:
        """The next piece of the answer's body; b"" at its end."""
        while not self._body:
            if self._done:
                return b""
            self._more = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._more, timeout)
        data = self._body.popleft()
        self._size -= len(data)
        if self._paused and self._size <= HIGH_WATER // 2:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self, timeout: float) -> bytes:
        parts = []
        while True:
            data = await self.chunk(timeout)
            if not data:
                return b"".join(parts)
            parts.append(data)

    @property
    def reusable(self) -> bool:
        return self._done and self.keep and not self.closed and not self._body


class Pool:
    """Idle keep-alive connections per replica (``host:port``)."""

    def __init__(self) -> None:
        self._idle: dict[str, list[_Conn]] = {}

    async def send(
        self, endpoint: str, head: bytes, body: bytes, timeout: float, bodiless: bool = False
    ) -> tuple[_Conn, bool]:
        """Send a request (``head``: request line and headers, CRLF-ended) on a kept or a new
        connection; wait for the answer's head. Returns the connection (read its body from it,
        then :meth:`done`) and whether it was a kept one. Raises ConnectFailed, Dropped,
        TimeoutError."""
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            conn._reset()
            conn.bodiless = bodiless
            self._write(conn, head, body)
            try:
                await conn.head(timeout)
                return conn, True
            except Dropped as exc:  # the replica closed it while idle: once more, on a new one
                if conn.got_bytes:
                    raise Dropped(str(exc), True) from None
                break
        conn = await self._connect(endpoint)
        conn.bodiless = bodiless
        self._write(conn, head, body)
        await conn.head(timeout)
        return conn, False

    @staticmethod
    def _write(conn: _Conn, head: bytes, body: bytes) -> None:
        conn.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            conn.transport.write(body)

    async def _connect(self, endpoint: str) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            if endpoint.startswith("unix:"):  # the local backend's replicas: a socket in the job's directory
                made = loop.create_unix_connection(_Conn, endpoint[5:])
            else:
                host, _, port = endpoint.rpartition(":")
                made = loop.create_connection(_Conn, host.strip("[]"), int(port))
            _, conn = await asyncio.wait_for(made, 5.0)
        except (TimeoutError, OSError) as exc:
            raise ConnectFailed(getattr(exc, "strerror", None) or str(exc) or "timed out") from None
        return conn

    def done(self, endpoint: str, conn: _Conn) -> None:
        """The answer was read (or abandoned): keep the connection if it can serve another."""
        if conn.reusable:
            idle = self._idle.setdefault(endpoint, [])
            if len(idle) < IDLE_PER_REPLICA:
                idle.append(conn)
                return
        if conn.transport is not None:
            conn.transport.close()

    async def get(
        self, endpoint: str, path: str, headers: str, timeout: float, limit: int
    ) -> tuple[int, bytes]:
        """A GET of ``path`` (readiness probes, Jupyter's activity): the status and at most
        ``limit`` bytes of the body (a longer one is cut, and its connection closed)."""
        head = f"GET {path} HTTP/1.1\r\nhost: replica\r\n{headers}\r\n".encode("latin-1")
        conn, _ = await self.send(endpoint, head, b"", timeout)
        parts, size = [], 0
        try:
            while size <= limit and (data := await conn.chunk(timeout)):
                parts.append(data)
                size += len(data)
        finally:
            if size > limit:
                conn.keep = False
            self.done(endpoint, conn)
        return conn.status, b"".join(parts)[:limit]

    def forget(self, live: set[str]) -> None:
        """Close the idle connections of replicas no longer in ``live``."""
        for endpoint in [e for e in self._idle if e not in live]:
            for conn in self._idle.pop(endpoint):
                if conn.transport is not None:
                    conn.transport.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
