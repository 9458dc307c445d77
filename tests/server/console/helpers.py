"""Signing in to the console over real HTTP, and reading its forms' CSRF token."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@contextlib.contextmanager
def sign_in(server, token: str) -> Iterator[httpx.Client]:
    """A client holding a console session of ``token``'s user (no Authorization header)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:  # a bound for a busy host, not a wait
        r = client.post("/login", data={"token": token})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        yield client


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    return CSRF.search(client.get(path).text).group(1)
