"""The web console in a real browser: Debian's Chromium, driven by Playwright (no downloaded
browser), against a real server on loopback. Skipped, with the reason, where either is missing
(`.ci/setup` installs Chromium). With WANKA_CONSOLE_SCREENSHOTS=DIR the tests save each view there
(docs/console/ holds the committed ones)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.server.conftest import start_server, stop_server
from tests.server.console.test_pages import GOOD_TREE, XSS, submit
from tests.server.test_api import make_member
from wanka.server.bench_console import CHROMIUM, FLAGS

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason="no chromium (Debian's package; .ci/setup installs it)"
)
WAIT_MS = 60_000  # for a state the server reaches by itself (scheduling, a task's end)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    # the page's policy allows this server's scripts and styles only: nothing it serves may break it
    page.violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.violations.append(m.text))
    yield page
    context.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("WANKA_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page, server, token: str) -> None:
    page.goto(server.url + "/")  # signed out: to the sign-in page
    assert page.url.endswith("/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")


def test_a_member_watches_a_job_wait_run_log_and_finish_then_cancels_another(page, server):
    token = make_member(server, "web-a", "web-ann")
    expect = playwright.expect
    sign_in(page, server, token)
    expect(page.locator("h1")).to_have_text("Jobs of web-a")
    page.click("nav a[href='/submit']")
    page.fill("input[name=name]", "six-steps")
    page.fill("input[name=cards]", "99")  # more than a task may ask: said at once, nothing stored
    expect(page.locator("#verdict")).to_contain_text("cards", timeout=WAIT_MS)
    page.fill("input[name=cards]", "1")
    # it prints step 0, then waits for the test to see it running before it goes on and ends (a
    # file in /tmp: the job runs under its tenant's account, which cannot enter the test's folders)
    go = Path(tempfile.gettempdir()) / f"wanka-go-{uuid.uuid4().hex}"
    program = (  # one line: the form takes one argument per line
        f"import os, time; print('step 0', flush=True); go = {str(go)!r}; "
        "any(os.path.exists(go) or time.sleep(0.05) for _ in iter(int, 1)); "
        "[print(f'step {i}', flush=True) for i in range(1, 6)]"
    )
    page.fill("textarea[name=command]", f"{sys.executable}\n-c\n{program}")
    expect(page.locator("#verdict")).to_contain_text("it can run here", timeout=WAIT_MS)
    shot(page, "submit")
    with server.client(server.admin_token) as admin:  # every node drained: it must wait first
        nodes = [n["name"] for n in admin.get("/v1/nodes").json()]
        for node in nodes:
            admin.post(f"/v1/nodes/{node}/drain", json={"reason": "maintenance"})
    page.click("button.primary")
    page.wait_for_url(f"{server.url}/jobs/*")
    done = int(page.url.rsplit("/", 1)[1])
    page.goto(server.url + "/")
    row = page.locator(f"tr[data-job='{done}']")
    expect(row.locator(".badge")).to_have_text("pending", timeout=WAIT_MS)
    expect(row.locator("td.reason")).to_contain_text("waiting", timeout=WAIT_MS)  # why, in words
    row.locator("button:has-text('Hold')").click()  # a row's buttons post the list's one form
    expect(row.locator(".badge")).to_have_text("held", timeout=WAIT_MS)
    row.locator("button:has-text('Release')").click()
    expect(row.locator(".badge")).to_have_text("pending", timeout=WAIT_MS)
    page.click(f"a[href='/jobs/{done}']")
    expect(page.locator("#state")).to_have_text("pending")
    with server.client(server.admin_token) as admin:
        for node in nodes:
            admin.post(f"/v1/nodes/{node}/undrain")
    expect(page.locator("#state")).to_have_text("running", timeout=WAIT_MS)  # the page follows it
    expect(page.locator("#log-0")).to_contain_text("step 0", timeout=WAIT_MS)  # live, while it runs
    go.touch()
    go.chmod(0o644)
    expect(page.locator("#state")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#log-0")).to_contain_text("step 5", timeout=WAIT_MS)
    expect(page.locator("ol.events")).to_contain_text("succeeded")
    shot(page, "job")
    go.unlink()
    running = submit(server, token, name="to-cancel")
    page.goto(f"{server.url}/jobs/{running}")
    expect(page.locator("#state")).to_have_text("running", timeout=WAIT_MS)
    expect(page.locator("#log-0")).to_contain_text("hello", timeout=WAIT_MS)
    page.click("#job-state button.danger")  # Cancel
    expect(page.locator("#state")).to_have_text("cancelled", timeout=WAIT_MS)
    page.goto(server.url + "/")
    shot(page, "jobs")
    assert page.violations == []
    page.click("header button")  # sign out
    page.wait_for_url(server.url + "/login")
    page.goto(server.url + "/")
    assert page.url.endswith("/login")


def test_markup_in_a_job_name_is_text_and_another_tenants_job_is_not_found(page, server):
    owner = make_member(server, "web-b", "web-bea")
    other = make_member(server, "web-c", "web-cid")
    job = submit(server, owner, name=XSS)
    sign_in(page, server, owner)
    cell = page.locator(f"tr[data-job='{job}'] td.name")
    playwright.expect(cell).to_have_text(XSS)
    page.goto(f"{server.url}/jobs/{job}")
    playwright.expect(page.locator("h1 .name")).to_have_text(XSS)
    assert page.locator("img").count() == 0 and page.dialogs == []
    page.context.clear_cookies()
    sign_in(page, server, other)
    response = page.goto(f"{server.url}/jobs/{job}")
    assert response.status == 404 and XSS not in page.content()
    with server.client(owner) as c:
        assert c.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_an_operator_drains_a_node_and_sees_it_on_the_node_list(page, server):
    sign_in(page, server, server.admin_token)
    page.click("nav a[href='/nodes']")
    cell = page.locator(".map a.cell").first  # the node map, drawn as the network is
    name = cell.get_attribute("data-node")
    cell.click()
    page.wait_for_url(f"{server.url}/nodes/{name}")
    page.fill("input[name=reason]", "fan swap")
    page.click("button:has-text('Drain')")
    playwright.expect(page.locator("#node-state")).to_have_text("draining")
    playwright.expect(page.locator("#node-reason")).to_have_text("fan swap")
    shot(page, "node")
    page.click("nav a[href='/nodes']")
    playwright.expect(page.locator(f".map a.cell[data-node='{name}']")).to_have_class("cell draining load-0")
    page.goto(f"{server.url}/nodes/{name}")
    page.click("button:has-text('Undrain')")
    playwright.expect(page.locator("#node-state")).to_have_text("up")
    page.click("nav a[href='/events']")
    playwright.expect(page.locator("main")).to_contain_text("fan swap")  # the audit trail: who drained it
    shot(page, "events")
    page.click("nav a[href='/overview']")
    for chart in ("allocation", "cycles"):
        playwright.expect(page.locator(f"[data-chart={chart}]")).to_have_attribute("data-drawn", "true")
    shot(page, "overview")
    page.click("nav a[href='/quota']")
    playwright.expect(page.locator("[data-chart=usage]")).to_have_attribute("data-drawn", "true")
    shot(page, "quota")
    page.click("nav a[href='/accounts']")
    playwright.expect(page.locator("table.tokens")).to_contain_text("this session")
    shot(page, "accounts")
    assert page.violations == []


def test_an_operator_applies_a_quota_change_after_fixing_a_validation_error(page, tmp_path):
    server = start_server(tmp_path / "home")
    try:
        make_member(server, "ed-a", "ed-ann")
        sign_in(page, server, server.admin_token)
        page.click("nav a[href='/quota']")
        page.click("a[href='/quota/edit']")
        editor = page.locator("textarea[name=document]")
        editor.fill(GOOD_TREE.replace("ascend-910c: {nominal: 6", "tpu: {nominal: 6"))
        verdict = page.locator("#verdict")
        playwright.expect(verdict).to_contain_text("unknown accelerator", timeout=WAIT_MS)
        page.click("button.primary")  # applied anyway: refused, and the document stays as typed
        playwright.expect(page.locator(".problems")).to_contain_text("unknown accelerator")
        playwright.expect(editor).to_have_value(
            GOOD_TREE.replace("ascend-910c: {nominal: 6", "tpu: {nominal: 6")
        )
        editor.fill(GOOD_TREE)
        playwright.expect(verdict).to_contain_text("valid: 2 queues", timeout=WAIT_MS)
        shot(page, "quota-editor")
        page.click("button.primary")
        page.wait_for_url(f"{server.url}/quota*")
        playwright.expect(page.locator("tr[data-queue='ed-a-train']")).to_be_visible()
        assert page.violations == []
    finally:
        stop_server(server)


# an image's load, awaited: true once it is drawn, false when it is broken
LOADED = """img => img.complete ? img.naturalWidth > 0 : new Promise(done => {
    img.addEventListener("load", () => done(img.naturalWidth > 0));
    img.addEventListener("error", () => done(false));
})"""


def test_an_operator_runs_a_what_if_and_reads_its_report_with_plots(page, server):
    sign_in(page, server, server.admin_token)
    page.click("nav a[href='/twin']")
    page.select_option("select[name=workload]", "synthetic")
    page.fill("input[name=days]", "2")
    page.select_option("select[name=change]", "cards")
    page.fill("input[name=cards]", "8")
    page.click("button.primary")
    page.wait_for_url(f"{server.url}/twin/*")
    # the progress bar while it runs (polled), then the report in its place
    report = page.locator("#twin-report")
    playwright.expect(report).to_be_visible(timeout=WAIT_MS)
    playwright.expect(report.locator("table.report")).to_contain_text("wanka (+8 cards)")
    plots = report.locator("img.plot")
    assert plots.count() >= 3
    for i in range(plots.count()):  # each one loaded and drawn, not a broken image
        assert plots.nth(i).evaluate(LOADED)
    assert page.violations == []


MEGABYTE = 1024 * 1024


def test_every_view_weighs_at_most_a_megabyte_as_it_crosses_the_wire(browser, server):
    from wanka.server.bench_console import page_cost
    from wanka.server.bench_console import sign_in as signed_in

    token = make_member(server, "web-w", "web-wes")
    job = submit(server, token, name="weighed")
    operator = signed_in(browser, server.url, server.admin_token)
    views = ["/", "/submit", f"/jobs/{job}", "/quota", "/quota/edit", "/overview", "/nodes", "/events"]
    for view in [*views, "/accounts", "/twin"]:  # cold: nothing from the cache
        cost = page_cost(browser, server.url + view, operator)
        assert 0 < cost["bytes"] <= MEGABYTE, (view, cost)
    with server.client(token) as c:
        assert c.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_the_jobs_page_with_10000_jobs_and_the_10000_card_node_map_weigh_under_a_megabyte(browser):
    # issue 16's setting, as `wanka bench console` measures it (where the load times are printed)
    from wanka.server.bench_console import bench_console

    out = bench_console(jobs=10_000, loads=1, browser=browser)
    assert out["jobs_files"] >= 3 and out["nodes_files"] >= 3  # the page, its style and its script
    assert 0 < out["jobs_kb"] * 1024 <= MEGABYTE and 0 < out["nodes_kb"] * 1024 <= MEGABYTE
