"""Screenshot the console views that need a large cluster into docs/console/: the node map of the
10,000-card preset (1,250 nodes) with a few nodes drained, and a twin report (a synthetic week
there at three times the load, wanka against tiresias). A throwaway server on loopback, stopped
by its pid. The other views' screenshots come from the browser tests
(tests/server/console/test_browser.py).

    .venv/bin/python scripts/console-screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.server.conftest import start_server, stop_server  # noqa: E402

from wanka.server.bench_console import CHROMIUM, FLAGS  # noqa: E402


def main() -> None:
    server = start_server(Path(tempfile.mkdtemp()), ("--cluster", "wanka-10k", "--virtual-cards", "64"))
    try:
        with server.client(server.admin_token) as admin:
            names = [n["name"] for n in admin.get("/v1/nodes").json()]
            for name in names[40:44] + names[700:702]:
                admin.post(f"/v1/nodes/{name}/drain", json={"reason": "ECC errors"})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url + "/login")
            page.fill("input[name=token]", server.admin_token)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/")
            page.goto(server.url + "/nodes")
            page.screenshot(path=str(ROOT / "docs" / "console" / "node-map.png"))
            page.goto(server.url + "/twin")
            page.select_option("select[name=workload]", "synthetic")
            page.fill("input[name=days]", "7")
            page.fill("input[name=load]", "3")
            page.select_option("select[name=change]", "policy")
            page.select_option("select[name=policy]", "tiresias")
            page.click("button.primary")
            bar = page.locator("#twin-progress")  # the page's policy runs no injected script: poll
            while float(bar.get_attribute("value") or 0) < 0.2:
                page.wait_for_timeout(1000)
            page.screenshot(path=str(ROOT / "docs" / "console" / "twin-progress.png"))
            page.wait_for_selector("#twin-report", timeout=1_800_000)
            page.screenshot(path=str(ROOT / "docs" / "console" / "twin.png"), full_page=True)
            browser.close()
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
