"""This terminal, carried to an interactive job's task over the server's WebSocket
(``server/attach_api.py``): raw mode while attached, window sizes as they change."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty


def relay(url: str, token: str | None, job_id: int) -> str:
    """Until the task's terminal closes (or the server ends the attachment). Returns "" on a
    normal end, else why the server refused or ended it."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    address = "ws" + url.removeprefix("http") + f"/v1/jobs/{job_id}/attach"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    stdin = sys.stdin.fileno()
    interactive = os.isatty(stdin)
    with connect(address, additional_headers=headers, max_size=2**20, proxy=None) as ws:
        done = threading.Event()
        outcome = {"why": ""}

        def size() -> None:
            cols, rows = shutil.get_terminal_size()
            with contextlib.suppress(ConnectionClosed):  # refused or ended already: screen() says why
                ws.send(json.dumps({"resize": [rows, cols]}))

        def screen() -> None:
            try:
                for message in ws:
                    if isinstance(message, bytes):
                        os.write(sys.stdout.fileno(), message)
            except ConnectionClosed:
                pass
            code, reason = ws.close_code, ws.close_reason
            if code not in (None, 1000, 1005, 1006):
                outcome["why"] = reason or f"closed ({code})"
            done.set()

        saved = termios.tcgetattr(stdin) if interactive else None
        previous = signal.getsignal(signal.SIGWINCH)
        try:
            if interactive:
                tty.setraw(stdin)
                signal.signal(signal.SIGWINCH, lambda *_: size())
                size()
            threading.Thread(target=screen, daemon=True).start()
            while not done.is_set():
                if select.select([stdin], [], [], 0.1)[0]:
                    data = os.read(stdin, 65536)
                    if not data:  # end of input (not a terminal): the task decides when to end
                        done.wait()
                        break
                    try:
                        ws.send(data)
                    except ConnectionClosed:
                        break
            done.wait(5)
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)
        return outcome["why"]
