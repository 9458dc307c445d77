"""`wanka bench console`: the web console's weight and speed in a real browser (Debian's Chromium,
driven by Playwright), against a real server on loopback.

Issue 16's figures: the jobs page with 10,000 jobs stored and the node map of the 10,000-card
preset (``wanka-10k``, 1,250 nodes) each render in ≤ 1 s, and a page with its assets weighs
≤ 1 MB as it crosses the wire (compressed). Each load is cold: a fresh browser context, so no
asset comes from the cache. "Render" is the Navigation Timing from the request's start to the end
of the page's load event (its HTML, styles and scripts fetched, parsed and run).

The browser runs on the same machine as the server, so the two compete for the CPUs.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from sqlalchemy import update

GOALS = {"load_ms": 1000.0, "weight_kb": 1024.0}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
# no background traffic to hosts this closed network refuses (the machine's probe)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# what crossed the wire for the page and everything it loaded, and when its load event ended
COST = """() => {
    const [nav] = performance.getEntriesByType("navigation");
    const parts = [nav, ...performance.getEntriesByType("resource")];
    return {
        load_ms: nav.loadEventEnd - nav.startTime,
        bytes: parts.reduce((sum, e) => sum + e.transferSize, 0),
        files: parts.length,
    };
}"""
LOADED = "() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0"


def page_cost(browser, url: str, signed_in: dict) -> dict:
    """One cold load of ``url`` in a fresh context carrying ``signed_in`` (a Playwright storage
    state: the session cookie): ``{"load_ms", "bytes", "files"}``. Raises if the page answers
    other than 200."""
    context = browser.new_context(storage_state=signed_in, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        response = page.goto(url)
        if response is None or response.status != 200:
            raise RuntimeError(f"{url}: {response and response.status}")
        page.wait_for_function(LOADED)
        return page.evaluate(COST)
    finally:
        context.close()


def sign_in(browser, base: str, token: str) -> dict:
    """The storage state (session cookie) of a console sign-in with the API token ``token``."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(base + "/login")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        return context.storage_state()
    finally:
        context.close()


def bench_console(jobs: int = 10_000, loads: int = 7, browser=None) -> dict:
    """Median load time and the weight of the jobs page (a member with ``jobs`` jobs waiting) and of
    the node map (the operator, ``wanka-10k``), over ``loads`` cold loads each, in ``browser`` (a
    Playwright browser; Debian's chromium launched here when None). Needs Playwright for Python
    (the dev extra)."""
    from playwright.sync_api import sync_playwright

    from wanka.server import db, tables
    from wanka.server.bench import _member, _Server, store_jobs

    with tempfile.TemporaryDirectory(prefix="wanka-bench-console-") as tmp:
        home = Path(tmp)
        database = f"sqlite:///{home / 'wanka.db'}"
        args = ("--cluster", "wanka-10k")
        server = _Server(home, args)
        try:
            server.start()
            admin = (home / "admin-token").read_text().strip()
            member = _member(server.url, admin)
            server.stop()
            store_jobs(database, jobs)
            engine = db.make_engine(database)
            with engine.begin() as conn:  # the jobs wait (nothing starts 10,000 processes here)
                conn.execute(update(tables.Node).values(state="draining", reason="benchmark"))
            engine.dispose()
            server = _Server(home, args)
            server.start()
            views = {"jobs": ("/", member), "nodes": ("/nodes", admin)}
            if browser is not None:
                return _loads(browser, server.url, views, loads) | {"jobs_stored": jobs, "nodes": 1250}
            with sync_playwright() as p:
                launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                try:
                    return _loads(launched, server.url, views, loads) | {"jobs_stored": jobs, "nodes": 1250}
                finally:
                    launched.close()
        finally:
            server.stop()


def _loads(browser, base: str, views: dict[str, tuple[str, str]], loads: int) -> dict:
    """For each view (path, token of who signs in): the median and slowest of ``loads`` cold
    loads (ms), the most bytes one took (KiB), and how many files it fetched."""
    out = {"loads": loads}
    for view, (path, token) in views.items():
        state = sign_in(browser, base, token)
        page_cost(browser, base + path, state)  # the server's first render warms its caches
        costs = [page_cost(browser, base + path, state) for _ in range(loads)]
        out[f"{view}_load_ms"] = statistics.median(c["load_ms"] for c in costs)
        out[f"{view}_load_ms_max"] = max(c["load_ms"] for c in costs)
        out[f"{view}_kb"] = max(c["bytes"] for c in costs) / 1024
        out[f"{view}_files"] = costs[0]["files"]
    return out
