"""An interactive task's terminal, carried between its pseudo-terminal and whoever attaches.

:func:`relay` runs in the process that started the task on a terminal (the local backend's
supervisor, ``_task.py``; the Slurm launcher, ``_slurm_task.py``, on rank 0's node): it serves the
terminal on a Unix socket in the run's directory, one attachment at a time, and copies all output
into the task's log. Framing, from who attaches: a type byte (0 keystrokes, 1 window size as rows
and columns, two 16-bit numbers), a 32-bit big-endian length, the payload; to who attaches: the
terminal's bytes, starting with the last :data:`SCROLLBACK` of them.

:func:`bridge` is the far end on a node the server cannot reach by a socket (Slurm: started by
``srun --overlap`` into the job): it connects to that socket and carries its standard input and
output to it, byte for byte, after writing :data:`READY`.

Standard library only: it is copied next to each Slurm run, and the nodes need nothing of wanka.
"""

import contextlib
import os
import signal
import time

READY = b"\x06"  # the bridge's first byte: the socket answered (what follows is the terminal's)


SCROLLBACK = 16 * 1024  # bytes of an interactive task's output replayed to who attaches


PENDING = 1 << 20  # output held for a slow client; one that falls further behind is dropped

TYPED = 64 * 1024  # keystrokes held for a task that does not read them; past it, who attaches waits

FRAME = 1 << 20  # the largest frame a client may announce (the server sends at most 64 KiB)

DRAIN_S = 1.0  # seconds the terminal is read after the task exited (its last output)


def flush(client, pending: bytearray) -> bool:
    """Send what ``client`` can take now, never waiting (a client that stops reading must not
    stop the task's terminal, or its cancellation). False when it is gone or too far behind."""
    try:
        sent = client.send(pending) if pending else 0
    except BlockingIOError:
        sent = 0
    except OSError:
        return False
    del pending[:sent]
    return len(pending) <= PENDING


def relay(path: str, pid: int, master: int, log: int):
    """Carry the terminal ``master`` of task process ``pid`` (this process's child) to whoever
    attaches, through a Unix socket bound at ``path`` (mode 0600), and into the ``log`` fd, until
    the task has exited; the slave end must be closed here already. Returns wait4's status and
    usage. Sets SIGTERM to hang the terminal up, and SIGHUP to be ignored by this process."""
    import fcntl
    import select
    import socket
    import struct
    import termios

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)  # relative to the run's directory, however long its path
    finally:
        os.umask(old)
    listener.listen(1)

    reaped = []  # set once the task is waited for: its pid may then belong to anyone

    def hang_up(*_):  # cancelled or preempted: the terminal hangs up, as a closed ssh session
        with contextlib.suppress(OSError):
            os.killpg(os.tcgetpgrp(master), signal.SIGHUP)
        if not reaped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGHUP)

    # never blocks on the terminal: a task that stops reading its input (raw mode, a full line
    # buffer) must not stop this loop, which carries its cancellation and records its end
    fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
    signal.signal(signal.SIGTERM, hang_up)
    # where this process leads the terminal's session, closing the master at the end hangs up on
    # it too (SIGHUP to the controlling process); it must live on to record how the task ended
    signal.signal(signal.SIGHUP, lambda *_: None)
    client, frames, ended, pending, typed = None, b"", None, bytearray(), bytearray()
    recent = bytearray()  # the last of the output: who attaches sees the prompt and what led to it
    while True:
        if ended is None:
            waited, status, usage = os.wait4(pid, os.WNOHANG)
            if waited:
                ended = (status, usage)
                reaped.append(pid)
                # what it wrote last is read for a moment more; a child it left behind that goes
                # on writing must not keep the run alive (its supervisor kills what is left)
                drained_by = time.monotonic() + DRAIN_S
        elif time.monotonic() > drained_by:
            break
        # keystrokes are read from who attaches only while the task takes them in (backpressure)
        listening = client is not None and len(typed) < TYPED
        watched = [master, listener, *([client] if listening else [])]
        outgoing = [*([client] if client and pending else []), *([master] if typed else [])]
        ready, writable, _ = select.select(watched, outgoing, [], 0.2)
        if client is not None and client in writable and not flush(client, pending):
            client.close()
            client = None
            continue
        if master in writable:
            try:
                del typed[: os.write(master, typed)]
            except BlockingIOError:
                pass
            except OSError:  # EIO: the terminal is gone; what was typed goes nowhere
                typed.clear()
        if master in ready:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                data = None  # nothing after all
            except OSError:  # EIO: every holder of the terminal is gone
                data = b""
            if data is None:
                pass
            elif data:
                os.write(log, data)
                recent.extend(data)
                del recent[: max(0, len(recent) - SCROLLBACK)]
                if client is not None:
                    pending.extend(data)
                    if not flush(client, pending):
                        client.close()  # it does not read: dropped (it may attach again)
                        client = None
            elif ended is not None:
                break
        elif ended is not None:
            break  # exited, and nothing more to read
        if listener in ready:
            newcomer, _ = listener.accept()
            if client is not None:  # one attachment at a time: the newest wins
                client.close()
            client, frames, pending = newcomer, b"", bytearray(recent)
            client.setblocking(False)  # this loop never waits on who is attached
            if not flush(client, pending):
                client.close()
                client = None
        if listening and client is not None and client in ready:
            try:
                data = client.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                client.close()
                client = None
                continue
            frames += data
            while len(frames) >= 5:
                kind, size = frames[0], int.from_bytes(frames[1:5], "big")
                if size > FRAME:  # not the server's framing: nothing more from this client
                    client.close()
                    client, frames = None, b""
                    break
                if len(frames) < 5 + size:
                    break
                payload, frames = frames[5 : 5 + size], frames[5 + size :]
                if kind == 0:
                    typed.extend(payload)  # written as the terminal takes it (above)
                elif kind == 1 and size == 4:
                    rows, cols = struct.unpack("!HH", payload)
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    if ended is None:
        _, status, usage = os.wait4(pid, 0)
        ended = (status, usage)
        reaped.append(pid)
    for closing in (client, listener):
        if closing is not None:
            closing.close()
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(master)
    os.close(log)
    return ended


def bridge(path: str, wait_s: float = 10.0) -> int:
    """Connect to the terminal socket at ``path`` (waiting up to ``wait_s`` for the task to open
    it) and carry stdin to it and its output to stdout until either side closes. Exit code 0
    after a session, 2 when the socket never answered (nothing written then)."""
    import select
    import socket

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                return 2
            time.sleep(0.05)
    try:
        os.write(1, READY)
        while True:
            ready, _, _ = select.select([0, conn], [], [])
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:  # the server let go: the session ends, the task runs on
                    return 0
                conn.sendall(data)
            if conn in ready:
                data = conn.recv(65536)
                if not data:  # the task ended (or another attachment took the terminal)
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]
    except OSError:  # either side went away mid-write
        return 0
