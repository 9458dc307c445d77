"""What one request, one job and one tenant may ask of the server, and the ASGI guard that keeps
oversized or malformed requests from reaching the application at all.

A body is capped before anything parses it (``Content-Length`` first, then the bytes actually
read, for chunked uploads), so no request's parsing can hold the event loop for longer than a
capped body takes; a NUL in the path or query is refused before it can reach a database that cannot
store one (PostgreSQL). Strings inside a body are the models' to check (``models.bounds.Text``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Server-wide bounds (``wanka server`` flags). Defaults suit a 10,000-card cluster: a gang of
    1,250 eight-card tasks fits in ``max_tasks_per_job``."""

    max_body_bytes: int = MIB
    max_tasks_per_job: int = 2048
    max_running_tasks_per_tenant: int = 4096
    max_waiting_jobs_per_tenant: int = 10_000  # each may store up to MAX_EXEC_BYTES of argv and env


def _reply(send, status: int, field: str, message: str):
    body = json.dumps({"detail": [{"field": field, "message": message}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def go():
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return go()


class _TooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: 413 for a body over ``max_body_bytes``, 422 for a NUL in the path or the
    query (a NUL in a body's string is each model's to refuse, naming the field). Plain ASGI, no
    per-request task, so it costs next to nothing."""

    def __init__(self, app, max_body_bytes: int = MIB):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if b"\x00" in unquote_to_bytes(raw_path) or b"\x00" in unquote_to_bytes(scope["query_string"]):
            return await _reply(send, 422, "path", "contains a NUL character (%00), which is not accepted")
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _reply(send, 400, "content-length", "not a number")
                if declared > limit:
                    return await _reply(send, 413, "body", f"{declared} bytes; the limit is {limit}")
        # read the whole (capped) body here: a chunked upload is cut off at the limit too
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _reply(send, 413, "body", f"over {limit} bytes; the limit is {limit}")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # after the body: wait for the disconnect as usual
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
