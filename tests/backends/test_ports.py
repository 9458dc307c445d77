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
    import random

    import wanka.backends.base as base

    # Twenty ports below both the real range and the ephemeral one (no other test or outgoing
    # connection takes them meanwhile); fifteen of them then held here. A port another process
    # already holds is busy too, so "free" is what a bind finds free, not what this test left.
    start = random.randrange(10_000, 19_980)
    monkeypatch.setattr(base, "PORTS", range(start, start + 20))
    monkeypatch.setattr(base, "_handed", {})
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
        free = set()
        for port in range(start + 15, start + 20):
            with socket.socket() as probe:
                try:
                    probe.bind(("", port))
                except OSError:
                    continue
                free.add(port)
        handed = []
        with pytest.raises(RuntimeError, match="no free port"):
            while len(handed) <= len(free):
                handed.append(rendezvous_port())
        assert len(set(handed)) == len(handed) and set(handed) == free
    finally:
        for s in taken:
            s.close()
