"""The HTTP layer holds against a client with no token: a request head that never ends, or grows
without bound, is cut off, and connections past the cap are turned away, while everyone else is
served (server/http.py)."""

from __future__ import annotations

import socket

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from wanka.server.http import HEAD_TIMEOUT_S, MAX_HEAD_BYTES


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(
        tmp_path_factory.mktemp("wanka-http-home"), ("--virtual-cards", "2", "--max-connections", "40")
    )
    yield s
    stop_server(s)


def _connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT_S + 10)


def _reply(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(4096):
        out += chunk
    return out


def test_a_head_that_grows_without_end_is_cut_off_and_others_are_served(server):
    with _connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ")
        try:
            for _ in range(2 * MAX_HEAD_BYTES // 8192):
                s.sendall(b"a" * 8192)
            reply = _reply(s)
        except (BrokenPipeError, ConnectionResetError):
            reply = b"reset"  # closed on us with our bytes unread: cut off too
        assert reply.startswith(b"HTTP/1.1 431") or reply == b"reset", reply[:100]
        with server.client() as c:
            assert c.get("/healthz").status_code == 200


def test_a_head_that_never_finishes_is_closed(server):
    with _connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        assert _reply(s).startswith(b"HTTP/1.1 408")


def test_connections_past_the_cap_are_turned_away_and_the_server_recovers(server):
    held = [_connect(server) for _ in range(45)]  # open, and silent: each holds a descriptor
    try:
        with _connect(server) as extra:  # accepted after them (the backlog is first come, first served)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b" 503 " in _reply(extra).split(b"\r\n")[0]
    finally:
        for s in held:
            s.close()
    with server.client() as c:
        wait_for(lambda: c.get("/healthz").status_code == 200)
