"""The gateway's own listener inside the server process: a second uvicorn server on the same
event loop as the API's, started and stopped with the API's app."""

from __future__ import annotations

import socket

import uvicorn

from wanka.server.http import BoundedHttp


async def start(app, sock: socket.socket, max_connections: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        http=BoundedHttp,
        lifespan="on",
        limit_concurrency=max_connections,
        timeout_keep_alive=75,  # past a load balancer's usual 60 s idle: its connections are kept
        timeout_graceful_shutdown=5,
        server_header=False,
        proxy_headers=False,  # the edge: X-Forwarded-* from a caller are never believed (nor passed on)
        date_header=False,  # the replica's own Date passes through
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    return server


async def stop(server: uvicorn.Server, sock: socket.socket) -> None:
    server.should_exit = True
    await server.shutdown(sockets=[sock])
