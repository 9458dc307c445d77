"""A replica for the gateway's tests: what reached it, and answers of every shape (run as a
service's command; listens on $PORT).

- ``GET /headers``: the request's headers as JSON (what the gateway forwarded);
- ``GET /sse``: three events, 100 ms apart;
- ``GET /slow?s=N``: answers after N seconds;
- ``GET /ready``: 200 unless the file named by $NOT_READY exists;
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


async def sse(_request):
    async def events():
        for i in range(3):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(events(), media_type="text/event-stream")


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return PlainTextResponse(JOB)


async def ready(_request):
    flag = os.environ.get("NOT_READY")
    if flag and os.path.exists(flag):
        return PlainTextResponse("not ready", status_code=503)
    return PlainTextResponse("ok")


async def ws(socket):
    await socket.accept()
    async for text in socket.iter_text():
        await socket.send_text(text.upper())


app = Starlette(
    routes=[
        Route("/headers", headers),
        Route("/sse", sse),
        Route("/slow", slow),
        Route("/ready", ready),
        WebSocketRoute("/ws", ws),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
