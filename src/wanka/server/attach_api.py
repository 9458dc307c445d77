"""`wanka run` / `wanka attach`: a terminal in an interactive job's first task, over a WebSocket.

The client authenticates as for every request (``Authorization: Bearer``, in the handshake); only
a job of the caller's own tenant (any, for admins) that is ``running`` and ``interactive`` may be
attached. The server relays between the WebSocket and the task's terminal, which the backend opens
(``Backend.open_terminal``): on the local backend a Unix socket that the task's supervisor opened
in the run's directory, which only the server's account can reach; on Slurm an ``srun --overlap``
step into the job, as the tenant's account, bridging to the socket on rank 0's node.

Client messages: binary frames are keystrokes, text frames ``{"resize": [rows, cols]}``; server
messages are the terminal's output, binary. Close codes: 4401 no or a bad token, 4404 no such job
(also another tenant's), 4409 not an interactive job that runs now (or its terminal is not open),
4501 the backend has no terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy import select

from wanka.core import JobKind, JobState
from wanka.server import auth, tables
from wanka.server.params import MAX_ID

if TYPE_CHECKING:
    from wanka.backends.base import Terminal
    from wanka.server.app import AppState

MAX_FRAME = 64 * 1024  # keystrokes (or a paste) per message
TOKEN_CHECK_S = 2.0  # how soon a revoked token ends a session


def router(state: AppState) -> APIRouter:
    api = APIRouter()
    sessions: dict[int, tuple[asyncio.Event, asyncio.Event]] = {}  # job -> (superseded, closed)
    opening: set[int] = set()  # jobs an attachment is being opened to

    @api.websocket("/v1/jobs/{job_id}/attach")
    async def attach(ws: WebSocket, job_id: int):
        await ws.accept()  # then close with a code and why, which a refused handshake cannot say
        header = ws.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with state.sessions() as session:
            who = auth.authenticate(session, token) if token else None
            if who is None:
                await ws.close(4401, "missing, unknown or revoked token")
                return
            if not 1 <= job_id <= MAX_ID:  # no job has it (and no database column holds it)
                await ws.close(4404, f"no job {job_id}")
                return
            row = session.execute(
                select(tables.Job.tenant_id, tables.Job.state, tables.Job.spec, tables.Job.runs).where(
                    tables.Job.id == job_id
                )
            ).first()
        if row is None or (not who.is_admin and row.tenant_id != who.tenant_id):
            await ws.close(4404, f"no job {job_id}")
            return
        if row.spec.get("kind") != JobKind.INTERACTIVE.value:
            await ws.close(4409, f"job {job_id} is not interactive (submit with --kind interactive)")
            return
        if row.state != JobState.RUNNING.value:
            await ws.close(4409, f"job {job_id} is {row.state}; only a running job has a terminal")
            return
        backend = state.loop.backend
        if not backend.terminals:
            await ws.close(4501, f"the {backend.name} backend offers no terminal (yet)")
            return
        # one attachment per job, the newest winning, held here and not only by the terminal's relay
        # (on Slurm each attachment is an srun step the job's own code answers)
        if job_id in opening:
            await ws.close(4409, f"another attachment to job {job_id} is being opened; try again")
            return
        opening.add(job_id)
        try:
            if job_id in sessions:
                superseded, closed = sessions[job_id]
                superseded.set()
                await closed.wait()  # bounded: a terminal's close ends (or kills) what it started
            terminal = await backend.open_terminal(job_id, row.runs)
        finally:
            opening.discard(job_id)
        if terminal is None:
            await ws.close(4409, f"job {job_id}'s terminal is not open (the job may just have ended)")
            return
        mine = sessions[job_id] = (asyncio.Event(), asyncio.Event())
        try:
            await _relay(ws, terminal, lambda: _still_valid(state, token), mine[0])
        finally:
            await terminal.close()
            mine[1].set()
            if sessions.get(job_id) is mine:
                del sessions[job_id]

    return api


def _still_valid(state: AppState, token: str) -> bool:
    """The token still works (not revoked or expired, its user and tenant not disabled)."""
    with state.sessions() as session:
        return auth.authenticate(session, token) is not None


async def _relay(ws: WebSocket, terminal: Terminal, valid, superseded: asyncio.Event) -> None:
    reader, writer = terminal.reader, terminal.writer

    async def keys() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                data = message["bytes"][:MAX_FRAME]
                writer.write(b"\x00" + len(data).to_bytes(4, "big") + data)
            elif message.get("text") is not None:
                try:
                    rows, cols = json.loads(message["text"])["resize"]
                    size = int(rows).to_bytes(2, "big") + int(cols).to_bytes(2, "big")
                except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                    continue  # not a window size: ignored
                writer.write(b"\x01" + (4).to_bytes(4, "big") + size)
            await writer.drain()

    async def screen() -> None:
        while data := await reader.read(65536):
            await ws.send_bytes(data)

    async def token() -> None:  # a session ends when its token stops working, as requests do
        while True:
            await asyncio.sleep(TOKEN_CHECK_S)
            if not await asyncio.to_thread(valid):
                with contextlib.suppress(Exception):
                    await ws.close(4401, "the token was revoked or expired, or its account disabled")
                return

    async def newer() -> None:
        await superseded.wait()
        with contextlib.suppress(Exception):
            await ws.close(4409, "the terminal was attached elsewhere (the newest attachment wins)")

    tasks = [asyncio.ensure_future(c()) for c in (keys, screen, token, newer)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # none still reads the terminal
        writer.close()
        with contextlib.suppress(Exception):
            await ws.close(1000, "the terminal closed")
