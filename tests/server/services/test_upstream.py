"""The gateway's HTTP/1.1 client (gateway.upstream) against raw servers on loopback that answer in
each shape HTTP/1.1 allows: by length, chunked, until close, after a 1xx, big, or not at all."""

from __future__ import annotations

import asyncio

import pytest

from wanka.server.gateway.upstream import ConnectFailed, Dropped, Pool

HEAD = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


async def _serve(answer):
    """A server that reads one request head per answer and writes ``answer(n)`` (n: how many
    requests this connection had); None closes the connection."""
    served = []

    async def handle(reader, writer):
        n = 0
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                n += 1
                served.append(n)
                out = answer(n)
                if out is None:
                    writer.close()
                    return
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", served


def run(coro):
    return asyncio.run(coro)


def test_answers_by_length_chunked_and_until_close_and_after_informational_ones():
    async def main():
        shapes = {
            "length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            "early": b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello",
        }
        pool = Pool()
        for name, raw in shapes.items():
            server, endpoint, served = await _serve(lambda n, raw=raw: raw)
            for _ in range(3):  # the same connection, kept alive
                conn, _ = await pool.send(endpoint, HEAD, b"", 5)
                assert await conn.read(5) == b"hello", name
                assert conn.status == (201 if name == "early" else 200)
                pool.done(endpoint, conn)
            assert served == [1, 2, 3], name  # one connection served all three
            server.close()
        server, endpoint, served = await _serve(lambda n: None)
        close = await asyncio.start_server(
            lambda r, w: (w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close"), w.close()),
            "127.0.0.1",
            0,
        )
        endpoint = f"127.0.0.1:{close.sockets[0].getsockname()[1]}"
        conn, _ = await pool.send(endpoint, HEAD, b"", 5)
        assert await conn.read(5) == b"until close" and not conn.reusable
        close.close()

    run(main())


def test_a_kept_connection_the_replica_closed_is_retried_once_on_a_new_one():
    async def main():
        # the first connection answers once and closes when idle; the gateway does not know yet
        server, endpoint, _ = await _serve(
            lambda n: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" if n == 1 else None
        )
        pool = Pool()
        conn, kept = await pool.send(endpoint, HEAD, b"", 5)
        assert await conn.read(5) == b"ok" and not kept
        pool.done(endpoint, conn)
        conn, kept = await pool.send(endpoint, HEAD, b"", 5)  # the kept one is dead: a new one
        assert await conn.read(5) == b"ok" and not kept
        server.close()

    run(main())


def test_a_replica_that_is_gone_or_drops_the_request_is_said_so():
    async def main():
        pool = Pool()
        server, endpoint, _ = await _serve(lambda n: None)
        with pytest.raises(Dropped) as dropped:
            await pool.send(endpoint, HEAD, b"", 5)
        assert dropped.value.fresh
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):
            await pool.send(endpoint, HEAD, b"", 5)

    run(main())


def test_a_big_answer_is_read_in_pieces_with_the_socket_paused_between():
    async def main():
        size = 8 * 1024 * 1024
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size
        server, endpoint, _ = await _serve(lambda n: raw)
        pool = Pool()
        conn, _ = await pool.send(endpoint, HEAD, b"", 5)
        await asyncio.sleep(0.2)  # the replica writes as fast as it can; the gateway reads nothing yet
        assert conn._size <= 2 * 1024 * 1024  # paused near the high-water mark, not all 8 MiB held
        got = 0
        while chunk := await conn.chunk(5):
            got += len(chunk)
        assert got == size
        server.close()

    run(main())
