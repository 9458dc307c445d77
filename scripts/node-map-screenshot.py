"""Screenshot the console's node map of the 10,000-card preset (1,250 nodes) into docs/console/:
a throwaway server on loopback, a few nodes drained, some jobs running; stopped by its pid.

    .venv/bin/python scripts/node-map-screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.server.conftest import start_server, stop_server  # noqa: E402
from tests.server.console.test_browser import CHROMIUM, FLAGS  # noqa: E402


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
            browser.close()
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
