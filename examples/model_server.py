"""A small PyTorch model behind a tiny HTTP app: the replica of examples/model-service.yaml.

It listens where wanka says: on the Unix socket $WANKA_SOCKET (the local backend: only its tenant
and the gateway can connect there), or on $PORT of the node's address (Slurm), and answers:

- ``GET /healthz``: 200 once the model is loaded (the readiness probe);
- ``POST /predict`` with ``{"inputs": [[4 floats], ...]}``: the model's outputs, and which
  replica (job) answered;
- ``GET /stream?n=N``: N predictions as Server-Sent Events, one every 50 ms;
- ``WS /ws``: each text message (a JSON list of 4 floats) answered with the model's output.

SIGTERM (a scale-down, a rolling update) finishes the requests in hand, then exits (uvicorn's
graceful shutdown). The model is an MLP with fixed weights (seed 0) on the CPU.
"""

from __future__ import annotations

import asyncio
import json
import os

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

torch.manual_seed(0)
torch.set_num_threads(1)
MODEL = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
REPLICA = os.environ.get("WANKA_JOB_ID", "?")


def predict(rows: list[list[float]]) -> list[list[float]]:
    with torch.no_grad():
        return MODEL(torch.tensor(rows, dtype=torch.float32)).tolist()


async def healthz(_request):
    return JSONResponse({"ok": True, "replica": REPLICA})


async def predict_route(request):
    body = await request.json()
    rows = body.get("inputs")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) == 4 for r in rows):
        return JSONResponse({"detail": "inputs: a list of rows of 4 numbers"}, status_code=422)
    delay = float(body.get("delay_s", 0))  # to hold requests in flight (the load tests)
    if delay > 0:
        await asyncio.sleep(min(delay, 10))
    return JSONResponse({"outputs": predict(rows), "replica": REPLICA})


async def stream(request):
    n = min(int(request.query_params.get("n", "5")), 1000)

    async def events():
        for i in range(n):
            out = predict([[float(i), 0.0, 0.0, 1.0]])[0]
            yield f"id: {i}\ndata: {json.dumps({'i': i, 'output': out, 'replica': REPLICA})}\n\n"
            await asyncio.sleep(0.05)

    return StreamingResponse(events(), media_type="text/event-stream")


async def ws(socket: WebSocket):
    await socket.accept()
    async for text in socket.iter_text():
        await socket.send_text(json.dumps({"output": predict([json.loads(text)])[0], "replica": REPLICA}))


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/predict", predict_route, methods=["POST"]),
        Route("/stream", stream),
        WebSocketRoute("/ws", ws),
    ]
)

if __name__ == "__main__":
    if os.environ.get("WANKA_SOCKET"):
        uvicorn.run(app, uds=os.environ["WANKA_SOCKET"], log_level="warning")
    else:
        host = os.environ.get("WANKA_NODE_ADDRESS", "127.0.0.1")
        uvicorn.run(app, host=host, port=int(os.environ["PORT"]), log_level="warning")
