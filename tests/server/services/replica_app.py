"""A replica for the gateway's tests: what reached it, and answers of every shape (run as a
service's command; listens on $PORT).

- ``GET /headers``: the request's headers as JSON (what the gateway forwarded);
- ``GET /sse``: three events, each after the first sent only once the client asks for it with
  ``GET /sse/next`` (or ``never-asked`` after 30 s): a client that can ask has had the one before
  while the stream was open, so the relay is proven causally, whatever the machine's speed;
- ``GET /slow?s=N``: answers after N seconds;
- ``GET /ready``: 200 unless the file named by $NOT_READY exists;
- ``GET /cookie``: sets cookies for the whole host (the console's name among them);
- ``WS /ws``: echoes each text message, upper-cased.
"""

from __future__ import annotations

import asyncio
import os

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

JOB = os.environ.get("WANKA_JOB_ID", "?")


async def headers(request):
    return JSONResponse({"headers": dict(request.headers), "job": JOB, "path": request.url.path})


_next: asyncio.Event | None = None  # set by GET /sse/next: the stream's next event may go


async def sse(_request):
    async def events():
        global _next
        for i in range(3):
            _next = asyncio.Event()  # before the event goes: the client may ask at once
            yield f"data: {i}\n\n"
            if i < 2:
                try:
                    await asyncio.wait_for(_next.wait(), 30)
                except TimeoutError:
                    yield "data: never-asked\n\n"
                    return

    return StreamingResponse(events(), media_type="text/event-stream")


async def sse_next(_request):
    if _next is not None:
        _next.set()
    return PlainTextResponse("ok")


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return PlainTextResponse(JOB)


async def ready(_request):
    flag = os.environ.get("NOT_READY")
    if flag and os.path.exists(flag):
        return PlainTextResponse("not ready", status_code=503)
    return PlainTextResponse("ok")


async def cookie(_request):  # a hostile page's cookies: the console's, another service's
    response = PlainTextResponse("cookies")
    response.set_cookie("wanka_session", "wks_attacker", path="/")
    response.set_cookie("app", "1", path="/")
    return response


async def ws(socket):
    await socket.accept()
    async for text in socket.iter_text():
        await socket.send_text(text.upper())


app = Starlette(
    routes=[
        Route("/headers", headers),
        Route("/sse", sse),
        Route("/sse/next", sse_next),
        Route("/slow", slow),
        Route("/ready", ready),
        Route("/cookie", cookie),
        WebSocketRoute("/ws", ws),
    ]
)

if __name__ == "__main__":  # where wanka says: a Unix socket (local backend) or a port (Slurm)
    if os.environ.get("WANKA_SOCKET"):
        uvicorn.run(app, uds=os.environ["WANKA_SOCKET"], log_level="warning")
    else:
        host = os.environ.get("WANKA_NODE_ADDRESS", "127.0.0.1")
        uvicorn.run(app, host=host, port=int(os.environ["PORT"]), log_level="warning")
