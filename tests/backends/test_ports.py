"""Rendezvous ports (MASTER_PORT): below the ephemeral range, free now, never handed out twice in
a row (two gangs launched in the same tick must not share one)."""

from __future__ import annotations

import socket

import pytest

from wanka.backends.base import PORTS, rendezvous_port


def test_ports_are_free_below_the_ephemeral_range_and_distinct():
    ports = [rendezvous_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(PORTS.start <= p < PORTS.stop < 32769 for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # free when handed out (nobody else took it since)


def test_only_free_ports_are_handed_out_each_once(monkeypatch):
    import wanka.backends.base as base

    with socket.socket() as probe:  # twenty ports free now, fifteen of them then taken
        probe.bind(("127.0.0.1", 0))
        start = probe.getsockname()[1] - 10
    monkeypatch.setattr(base, "PORTS", range(start, start + 20))
    taken = []
    try:
        for port in range(start, start + 15):
            s = socket.socket()
            try:
                s.bind(("", port))
            except OSError:
                s.close()
                continue
            taken.append(s)
        busy = {s.getsockname()[1] for s in taken}
        free = set(range(start, start + 20)) - busy - set(base._handed)
        handed = []
        with pytest.raises(RuntimeError, match="no free port"):
            while len(handed) <= len(free):
                handed.append(rendezvous_port())
        # each once, never a busy one (another process may have taken one of the free meanwhile)
        assert len(set(handed)) == len(handed) and set(handed) <= free and len(handed) >= len(free) - 1
    finally:
        for s in taken:
            s.close()
