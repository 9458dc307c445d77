"""A notebook opened from the console in a real browser (Debian's Chromium, driven by Playwright):
the Open button's one-time link through the gateway, into JupyterLab."""

from __future__ import annotations

import os

import pytest

from tests.server.console.test_browser import browser, page, sign_in  # noqa: F401 (fixtures)
from tests.server.services.helpers import apply, wait_replicas
from tests.server.services.test_notebooks import notebook
from tests.server.test_api import make_member
from wanka.server.bench_console import CHROMIUM

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytest.importorskip("jupyterlab")
pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="no chromium (Debian's package)")


def test_a_member_opens_a_notebook_from_the_console_into_jupyterlab(page, server):  # noqa: F811
    token = make_member(server, "nblab", "nblab-dev")
    other = make_member(server, "nbother", "nbother-dev")
    with server.client(token) as c:
        apply(c, notebook("lab", idle=600))
        wait_replicas(c, "lab", ready=1, total=1, timeout=120)
    sign_in(page, server, token)
    page.goto(server.url + "/services")
    row = page.locator("tr[data-service=lab]")
    assert "notebook" in row.inner_text()
    with page.expect_popup() as opened:
        row.locator("button", has_text="Open").click()
    lab = opened.value
    lab.wait_for_selector("#jp-main-dock-panel", timeout=60_000)  # JupyterLab's workspace drew
    assert lab.url.startswith(f"{server.gateway}/services/nblab/lab/lab")
    assert "wanka_link" not in lab.url
    # another tenant's console lists nothing of it
    page.context.clear_cookies()
    sign_in(page, server, other)
    page.goto(server.url + "/services")
    assert page.locator("tr[data-service=lab]").count() == 0
