"""Schemathesis against the OpenAPI schema of a real server: no input may cause a 5xx answer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import start_server, stop_server
from tests.server.test_api import make_member

ST = Path(sys.executable).parent / "st"


def fuzz(server, token: str, *select: str) -> subprocess.CompletedProcess:
    args = [
        *("run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {token}"),
        *("--checks", "not_a_server_error", "-n", "25", "--seed", "1", "--generation-database", "none"),
        *("--phases", "examples,coverage,fuzzing", *select),
    ]
    return subprocess.run(
        [str(ST), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is a dev dependency (make test installs it)")
def test_no_generated_request_gets_a_server_error(tmp_path):
    server = start_server(tmp_path)
    try:
        member = make_member(server, "fuzz-lab", "fuzz-user")
        # everything but DELETE as admin (a fuzzed DELETE /v1/tokens/1 would revoke the admin's token)
        everything = fuzz(server, server.admin_token, "--exclude-method", "DELETE")
        assert everything.returncode == 0, everything.stdout[-4000:]
        tested = re.search(r"(\d+) operations? tested|Tested: (\d+)", everything.stdout)
        assert " passed" in everything.stdout and tested, everything.stdout[-2000:]
        assert int(tested.group(1) or tested.group(2)) >= 20  # every operation, not a few
        deletes = fuzz(server, member, "--include-method", "DELETE")
        assert deletes.returncode == 0, deletes.stdout[-4000:]
        with server.client(server.admin_token) as admin:  # the server is still up and answering
            assert admin.get("/healthz").status_code == 200
    finally:
        stop_server(server)
