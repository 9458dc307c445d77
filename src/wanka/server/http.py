"""The HTTP protocol the server speaks: uvicorn's httptools protocol, with the bounds it lacks.

uvicorn's httptools protocol accepts a request head of any size and waits forever for one to
finish, and both cost the event loop or a file descriptor: a client with no token could hold every
other tenant's requests (a head growing by megabytes) or every descriptor (connections that never
finish their head, "slowloris"). This protocol closes a connection whose head passes
``MAX_HEAD_BYTES`` (431) or does not finish within ``HEAD_TIMEOUT_S`` (408). The server also caps
open connections (uvicorn's ``limit_concurrency``: 503 past it) below its descriptor limit.

Sources: nginx's ``large_client_header_buffers`` (4 × 8 KiB by default) and
``client_header_timeout`` (60 s); Apache's ``LimitRequestFieldSize`` and ``mod_reqtimeout``.
"""

from __future__ import annotations

import asyncio
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
HEAD_TIMEOUT_S = 10.0  # from a request's first byte (or the connection) to its last header


def _reply(transport: asyncio.Transport, status: bytes) -> None:
    transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    transport.close()


class BoundedHttp(HttpToolsProtocol):
    """httptools with a bounded request head, in bytes and in time."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._head_deadline: asyncio.TimerHandle | None = self.loop.call_later(HEAD_TIMEOUT_S, self._slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # one read: at most the transport's buffer (256 KiB)
        if self._in_head and not self.transport.is_closing():  # the head has not ended in it
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._cancel_deadline()
                _reply(self.transport, b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _slow(self) -> None:
        self._head_deadline = None
        if self._in_head and not self.transport.is_closing():
            _reply(self.transport, b"408 Request Timeout")


def raise_descriptor_limit() -> int:
    """The soft limit on open files raised to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
