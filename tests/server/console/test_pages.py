"""The web console over real HTTP against a real server: sign-in and its cookie, CSRF on every
form, a tenant's isolation by URL, escaping, operators' pages. (Its pages in a real browser:
test_browser.py.)"""

from __future__ import annotations

import json
import re
import sys

import httpx
import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.console.helpers import csrf_of, sign_in
from tests.server.test_api import make_member

XSS = "<img src=x onerror=alert(1)>"


def submit(server, token: str, name: str = "sleeper", seconds: int = 600) -> int:
    job = {
        "name": name,
        "task_groups": [{"replicas": 1, "cards": 1}],
        "command": [sys.executable, "-c", f"import time; print('hello', flush=True); time.sleep({seconds})"],
    }
    with server.client(token) as c:
        r = c.post("/v1/jobs", json=job)
        assert r.status_code == 201, r.text
        return r.json()["id"]


def job_state(server, job_id: int) -> str:
    with server.client(server.admin_token) as admin:
        return admin.get(f"/v1/jobs/{job_id}").json()["state"]


def console_tokens(server, user: str) -> list[dict]:
    with server.client(server.admin_token) as admin:
        return [t for t in admin.get("/v1/tokens").json() if t["user"] == user and t["label"] == "console"]


def test_sign_in_gives_an_httponly_strict_cookie_of_a_new_token_and_sign_out_revokes_it(server):
    token = make_member(server, "con-a", "con-alice")
    with sign_in(server, token) as browser:
        cookie = browser.cookies.get("wanka_session")
        assert cookie and cookie != token
        [row] = console_tokens(server, "con-alice")  # stored like any token: hashed, with an expiry
        assert row["expires_at"] is not None and row["revoked_at"] is None
        page = browser.get("/")
        assert page.status_code == 200 and "con-alice" in page.text and "Jobs of con-a" in page.text
        csrf = csrf_of(browser)
        assert browser.post("/logout", data={"csrf": csrf}).status_code == 303
        [row] = console_tokens(server, "con-alice")
        assert row["revoked_at"] is not None
    # the cookie copied before sign-out opens nothing now
    with httpx.Client(base_url=server.url, cookies={"wanka_session": cookie}, timeout=10) as copied:
        r = copied.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
    # and the API token typed in still works: sign-out ends the console's session only
    with server.client(token) as c:
        assert c.get("/v1/jobs").status_code == 200


def test_the_set_cookie_header_is_httponly_and_samesite_strict(server):
    token = make_member(server, "con-b", "con-bob")
    r = httpx.post(server.url + "/login", data={"token": token})
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header


def test_a_wrong_token_is_refused_and_stores_nothing(server):
    before = console_tokens(server, "con-nobody")
    for bad in ("wk_not-a-token", "", "x" * 5000):
        r = httpx.post(server.url + "/login", data={"token": bad})
        assert r.status_code == 401 and "set-cookie" not in r.headers
    assert console_tokens(server, "con-nobody") == before
    r = httpx.get(server.url + "/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = httpx.get(server.url + "/fragments/jobs", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/login"


def test_every_form_needs_its_csrf_token_and_this_origin(server):
    token = make_member(server, "con-c", "con-carol")
    job = submit(server, token)
    with sign_in(server, token) as browser:
        csrf = csrf_of(browser)
        for data, headers in (
            ({}, {}),
            ({"csrf": "0" * 64}, {}),
            ({"csrf": csrf}, {"Origin": "http://evil.example"}),
        ):
            r = browser.post(f"/jobs/{job}/cancel", data=data, headers=headers)
            assert r.status_code == 403 and "csrf" in r.text
        assert job_state(server, job) in ("pending", "admitted", "running")
        r = browser.post("/login", data={"token": token}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403  # no login CSRF either
        r = browser.post(f"/jobs/{job}/cancel", data={"csrf": csrf}, headers={"Origin": server.url})
        assert r.status_code == 303
        wait_for(lambda: job_state(server, job) == "cancelled")


def test_a_member_never_sees_or_touches_another_tenants_job_by_url(server):
    alice = make_member(server, "con-d", "con-dave")
    mallory = make_member(server, "con-e", "con-eve")
    job = submit(server, alice, name="secret-run")
    with sign_in(server, mallory) as browser:
        csrf = csrf_of(browser)
        assert "secret-run" not in browser.get("/").text
        assert "secret-run" not in browser.get("/fragments/jobs").text
        for path in (
            f"/jobs/{job}",
            f"/fragments/jobs/{job}",
            f"/fragments/jobs/{job}/logs",
            f"/fragments/jobs/{job}/log/0",
        ):
            r = browser.get(path)
            assert r.status_code == 404 and "secret-run" not in r.text, path
        for action in ("cancel", "hold", "release"):
            assert browser.post(f"/jobs/{job}/{action}", data={"csrf": csrf}).status_code == 404
        assert browser.get("/nodes").status_code == 403  # operators' page
        with server.client(server.admin_token) as admin:
            node = admin.get("/v1/nodes").json()[0]["name"]
        assert browser.post(f"/nodes/{node}/drain", data={"csrf": csrf}).status_code == 403
        assert browser.get(f"/nodes/{node}").status_code == 403
    assert job_state(server, job) in ("pending", "admitted", "running")
    with server.client(server.admin_token) as admin:
        [row] = [n for n in admin.get("/v1/nodes").json() if n["name"] == node]
        assert row["state"] == "up"
        assert admin.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_a_job_named_like_markup_renders_as_text(server):
    token = make_member(server, "con-f", "con-frank")
    job = submit(server, token, name=XSS)
    with sign_in(server, token) as browser:
        for path in ("/", "/fragments/jobs", f"/jobs/{job}"):
            page = browser.get(path)
            assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and XSS not in page.text, path
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        csrf = csrf_of(browser)
        assert browser.post(f"/jobs/{job}/cancel", data={"csrf": csrf}).status_code == 303


def test_only_the_consoles_own_files_are_served(server):
    assert httpx.get(server.url + "/static/htmx.min.js").status_code == 200
    for name in ("..%2F..%2Fserver%2Fauth.py", "..%2Fpages.py", "vendor%2Fhtmx.LICENSE", "nope.js"):
        assert httpx.get(server.url + f"/static/{name}").status_code == 404


def test_the_consoles_files_go_gzipped_to_a_browser_that_takes_it_and_pages_never_do(server):
    from wanka.server.console.pages import HERE, STATIC

    for name, (path, _) in STATIC.items():
        on_disk = (HERE / path).read_bytes()
        packed = httpx.get(server.url + f"/static/{name}", headers={"Accept-Encoding": "gzip, br"})
        assert packed.headers["content-encoding"] == "gzip" and "Accept-Encoding" in packed.headers["vary"]
        assert packed.content == on_disk and int(packed.headers["content-length"]) < len(on_disk)
        for refused in ("identity", "br", "gzip;q=0"):
            plain = httpx.get(server.url + f"/static/{name}", headers={"Accept-Encoding": refused})
            assert "content-encoding" not in plain.headers and plain.content == on_disk, refused
    # a page holds its CSRF token next to text a user chose: never compressed (BREACH)
    page = httpx.get(server.url + "/login", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "content-encoding" not in page.headers


def test_an_operator_drains_and_undrains_a_node_with_a_reason(server):
    token = make_member(server, "con-j", "con-jo")
    running = submit(server, token, name="on-a-node")
    wait_for(lambda: job_state(server, running) == "running")
    with server.client(server.admin_token) as admin:
        [where] = admin.get(f"/v1/jobs/{running}").json()["nodes"]
    with sign_in(server, server.admin_token) as browser:
        detail = browser.get(f"/nodes/{where}").text  # its jobs, whoever's
        assert f'href="/jobs/{running}"' in detail and "con-j" in detail
        assert browser.get("/nodes/no-such-node").status_code == 404
        page = browser.get("/nodes")
        assert page.status_code == 200
        with server.client(server.admin_token) as admin:
            node = admin.get("/v1/nodes").json()[-1]["name"]
        csrf = csrf_of(browser, "/nodes")
        r = browser.post(f"/nodes/{node}/drain", data={"csrf": csrf, "reason": "<b>fan</b> swap"})
        assert r.status_code == 303
        page = browser.get("/nodes").text
        assert re.search(f'class="cell draining load-[0-4]" data-node="{node}"', page)
        table = browser.get("/nodes?as=table").text  # every node a row, with its state and reason
        assert (
            re.search(f'<tr class="node-draining" data-node="{node}">', table) and 'class="cell' not in table
        )
        assert "&lt;b&gt;fan&lt;/b&gt; swap" in table and "<b>fan" not in table
        assert browser.get("/nodes?as=graph").status_code == 422
        assert "&lt;b&gt;fan&lt;/b&gt; swap" in browser.get(f"/nodes/{node}").text
        with server.client(server.admin_token) as admin:
            [row] = [n for n in admin.get("/v1/nodes").json() if n["name"] == node]
            assert (row["state"], row["reason"]) == ("draining", "<b>fan</b> swap")
        r = browser.post(f"/nodes/{node}/drain", data={"csrf": csrf, "reason": "x" * 501})
        assert r.status_code == 422 and "reason" in r.text
        assert browser.post(f"/nodes/{node}/undrain", data={"csrf": csrf}).status_code == 303
        with server.client(server.admin_token) as admin:
            [row] = [n for n in admin.get("/v1/nodes").json() if n["name"] == node]
            assert row["state"] == "up"
            assert admin.post(f"/v1/jobs/{running}/cancel").status_code == 200


def test_the_submit_form_checks_as_you_type_and_a_bad_form_stores_nothing(server):
    token = make_member(server, "con-g", "con-gus")
    with sign_in(server, token) as browser:
        csrf = csrf_of(browser, "/submit")
        good = {"csrf": csrf, "name": "formed", "tasks": "2", "cards": "1", "restarts": "0"}
        good["command"] = f"{sys.executable}\n-c\nprint('from the form')"
        r = browser.post("/fragments/submit-check", data=good)
        assert r.status_code == 200 and "2 task(s), 2 card(s) in queue con-g: it can run here" in r.text
        for change, field, words in (
            ({"tasks": "two"}, "tasks", "a whole number"),
            ({"cards": "65"}, "cards", "less than or equal to 64"),
            ({"cards": "64"}, "cards", "can never run here"),  # no node has 64 cards
            ({"env": "NOEQUALS"}, "env", "NAME=value"),
            ({"command": ""}, "command", "give the argv"),
            ({"queue": "someone-elses"}, "queue", "is not a queue of con-g"),
            ({"time_limit": "-5"}, "time_limit", "greater than 0"),
        ):
            bad = {**good, **change}
            checked = browser.post("/fragments/submit-check", data=bad)
            assert f"<b>{field}</b>" in checked.text and words in checked.text, (change, checked.text)
            r = browser.post("/submit", data=bad)
            assert r.status_code in (403, 422) and words in r.text, (change, r.status_code)
        with server.client(token) as c:
            assert c.get("/v1/jobs").json()["jobs"] == []  # nothing stored by a check or a refusal
        assert browser.post("/submit", data={**good, "csrf": "0" * 64}).status_code == 403
        r = browser.post("/submit", data=good)
        assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
        job = int(r.headers["location"].rsplit("/", 1)[1])
        wait_for(lambda: job_state(server, job) == "succeeded", timeout=60)
        with server.client(token) as c:
            spec = c.get(f"/v1/jobs/{job}").json()["spec"]
            assert spec["command"] == [sys.executable, "-c", "print('from the form')"]
            assert spec["task_groups"][0]["replicas"] == 2


def test_quota_and_usage_show_a_member_its_own_tenant_only(server):
    mine = make_member(server, "con-h", "con-hal")
    theirs = make_member(server, "con-i", "con-ivy")
    busy = submit(server, theirs, name="theirs-running")
    own = submit(server, mine, name="mine-running")
    wait_for(lambda: job_state(server, busy) == "running" and job_state(server, own) == "running")
    with sign_in(server, mine) as browser:
        page = browser.get("/quota")
        assert page.status_code == 200
        assert 'data-queue="con-h"' in page.text and 'data-queue="con-i"' not in page.text
        assert "<td>con-hal</td><td>1</td><td>1</td>" in page.text  # who holds cards: its own users
        assert "con-ivy" not in page.text and "con-i<" not in page.text

        # where its queue stands in fair share: using cards, its factor falls below 1
        def factor() -> float | None:
            row = re.search(
                r'data-queue="con-h".*?<td class="fair-share">(.*?)</td>', browser.get("/quota").text, re.S
            )
            shown = re.search(r">([0-9.]+)</b>", row.group(1))
            return float(shown.group(1)) if shown and float(shown.group(1)) < 1.0 else None

        assert 0 < wait_for(factor, 30) < 1.0
        assert browser.get("/overview").status_code == 403  # the operator's
    with sign_in(server, server.admin_token) as browser:
        page = browser.get("/overview")
        assert page.status_code == 200 and 'id="chart-allocation"' in page.text
        text = browser.get("/quota").text
        assert 'data-queue="con-h"' in text and 'data-queue="con-i"' in text
    with server.client(server.admin_token) as admin:
        for job in (busy, own):
            assert admin.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_the_event_stream_shows_a_member_its_jobs_and_an_admin_who_drained_what(server):
    mine = make_member(server, "con-k", "con-kim")
    theirs = make_member(server, "con-l", "con-lee")
    own, other = submit(server, mine, name="k-job"), submit(server, theirs, name="l-job")
    with server.client(server.admin_token) as admin:
        node = admin.get("/v1/nodes").json()[0]["name"]
        assert admin.post(f"/v1/nodes/{node}/drain", json={"reason": "<i>psu</i>"}).status_code == 200
        assert admin.post(f"/v1/nodes/{node}/undrain").status_code == 200
        for job in (own, other):
            assert admin.post(f"/v1/jobs/{job}/cancel").status_code == 200
    with sign_in(server, mine) as browser:
        for path in ("/events", "/fragments/events", "/events?kind=node"):
            text = browser.get(path).text
            assert "l-job" not in text and f"node {node}" not in text and "psu" not in text, path
        text = browser.get("/events").text
        assert f'href="/jobs/{own}"' in text and "k-job" in text and "cancelled by" in text
        assert browser.get("/events?kind=bogus").status_code == 422
    with sign_in(server, server.admin_token) as browser:
        text = browser.get("/events?kind=node").text
        assert f"node {node}" in text and "&lt;i&gt;psu&lt;/i&gt; — by admin" in text and "k-job" not in text
        text = browser.get("/events").text
        assert "k-job" in text and "l-job" in text and f"node {node}" in text


GOOD_TREE = """organisations:
  - name: ed-a
    quota:
      ascend-910c: {nominal: 6, borrowing_limit: 2}
    queues:
      - name: ed-a-train
        quota: {ascend-910c: {nominal: 4}}
"""


def test_the_quota_editor_checks_as_you_type_refuses_bad_documents_and_applies_good_ones(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        member = make_member(server, "ed-a", "ed-ann")
        with sign_in(server, member) as browser:
            csrf = csrf_of(browser)
            assert browser.get("/quota/edit").status_code == 403
            for path in ("/fragments/quota-check", "/quota/edit"):
                assert browser.post(path, data={"csrf": csrf, "document": GOOD_TREE}).status_code == 403
        with sign_in(server, server.admin_token) as browser:
            csrf = csrf_of(browser, "/quota/edit")
            for bad, words in (
                ("organisations: [\n  - name: ed-a\n   quota: x", "line 2, column 3"),
                (GOOD_TREE.replace("ascend-910c: {nominal: 6", "tpu: {nominal: 6"), "unknown accelerator"),
                (GOOD_TREE.replace("ed-a", "someone"), "no top-level organisation for tenant(s) ed-a"),
                ("- just a list", "a mapping with organisations"),
            ):
                checked = browser.post("/fragments/quota-check", data={"csrf": csrf, "document": bad})
                assert checked.status_code == 200 and words in checked.text, (bad, checked.text)
                applied = browser.post("/quota/edit", data={"csrf": csrf, "document": bad})
                assert applied.status_code == 422 and words in applied.text
            # hostile review: a tenant's organisation nested in another's would get that one's queues
            make_member(server, "ed-b", "ed-bo")
            nested = GOOD_TREE + "        queues: [{name: ed-b}]\n"
            checked = browser.post("/fragments/quota-check", data={"csrf": csrf, "document": nested})
            assert "no top-level organisation for tenant(s) ed-b" in checked.text, checked.text
            bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
                f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8)
            )
            deep = "organisations: " + "[" * 2000 + "]" * 2000
            for bad, words in ((bomb, "aliases expanded"), (deep, "nested deeper than 64 levels")):
                checked = browser.post("/fragments/quota-check", data={"csrf": csrf, "document": bad})
                assert checked.status_code == 200 and words in checked.text, checked.text[:300]
            good = GOOD_TREE + "  - name: ed-b\n"  # every tenant, ed-b too, at the top
            with server.client(server.admin_token) as admin:
                names = {q["name"] for q in admin.get("/v1/queues").json()}
                assert "ed-a-train" not in names  # nothing stored
            checked = browser.post("/fragments/quota-check", data={"csrf": csrf, "document": good})
            assert "valid: 3 queues" in checked.text
            no_csrf = browser.post("/quota/edit", data={"document": good})
            assert no_csrf.status_code == 403
            applied = browser.post("/quota/edit", data={"csrf": csrf, "document": good})
            assert applied.status_code == 303
            with server.client(server.admin_token) as admin:
                queues = {q["name"]: q for q in admin.get("/v1/queues").json()}
                assert queues["ed-a-train"]["quota"]["ascend-910c"]["nominal"] == 4
            assert "ed-a-train" in browser.get("/quota/edit").text  # the editor opens on the tree in force
            assert "quota tree" in browser.get("/events?kind=quota").text
        with server.client(server.admin_token) as admin:  # no tenant may be named like the root or a queue
            for name in ("cluster", "ed-a-train"):
                r = admin.post("/v1/tenants", json={"name": name})
                assert r.status_code == 422 and "a tenant needs a name no queue has" in r.text, name
            assert admin.get("/v1/queues").status_code == 200  # the tree in force still stands
    finally:
        stop_server(server)


def test_a_console_session_opens_the_console_only_and_ends_with_the_token_it_came_from(server):
    # hostile review: the cookie was a full API token, and every port of the host receives it
    token = make_member(server, "con-m", "con-mia")
    with sign_in(server, token) as browser:
        cookie = browser.cookies.get("wanka_session")
        assert cookie.startswith("wks_")
        with server.client(cookie) as stolen:
            r = stolen.get("/v1/jobs")
            assert r.status_code == 401 and "console session" in r.text
            assert stolen.post("/v1/users/con-mia/tokens", json={"label": "x"}).status_code == 401
    with httpx.Client(base_url=server.url, cookies={"wanka_session": token}, timeout=10) as api_cookie:
        assert api_cookie.get("/").status_code == 303  # and an API token is no console session
    # the session ends when the API token it was signed in with is revoked ...
    with server.client(server.admin_token) as admin:
        r = admin.post("/v1/users/con-mia/tokens", json={"label": "short", "expires_in_s": 600})
        short, short_id = r.json()["token"], r.json()["id"]
        with sign_in(server, short) as browser:
            session = max(console_tokens(server, "con-mia"), key=lambda t: t["id"])  # this sign-in's
            assert session["expires_at"] <= r.json()["expires_at"] + 1  # ... and never outlives it
            assert browser.get("/").status_code == 200
            assert admin.delete(f"/v1/tokens/{short_id}").status_code == 200
            assert browser.get("/").status_code == 303


def test_signing_out_of_the_console_never_leaves_the_operator_without_an_api_token(tmp_path):
    # hostile review: console sessions counted as the operator's live admin tokens, so the last
    # API token could be revoked while one was open; signing out then locked the operator out
    server = start_server(tmp_path / "home")
    try:
        with server.client(server.admin_token) as admin:
            first = admin.get("/v1/tokens").json()[0]
            second = admin.post("/v1/users/admin/tokens", json={"label": "second"}).json()
        with sign_in(server, second["token"]) as browser, server.client(second["token"]) as c:
            assert c.delete(f"/v1/tokens/{first['id']}").status_code == 200
            assert c.delete(f"/v1/tokens/{second['id']}").status_code == 409  # the last API token
            assert browser.post("/logout", data={"csrf": csrf_of(browser)}).status_code == 303
            assert c.get("/v1/whoami").status_code == 200  # the operator is still in
    finally:
        stop_server(server)


def test_the_log_tail_shows_the_end_of_a_long_log_and_api_docs_load_nothing_from_a_cdn(server):
    token = make_member(server, "con-n", "con-ned")
    program = "import sys\nfor i in range(40000): print(f'line {i:06d}' + 'x' * 40)\nprint('THE-REAL-END')"
    with server.client(token) as c:
        job = c.post(
            "/v1/jobs",
            json={
                "name": "chatty",
                "task_groups": [{"cards": 1}],
                "command": [sys.executable, "-c", program],
            },
        ).json()["id"]
    wait_for(lambda: job_state(server, job) == "succeeded", timeout=60)
    with sign_in(server, token) as browser:
        tail = browser.get(f"/fragments/jobs/{job}/log/0").text
        assert "THE-REAL-END" in tail and "line 039999" in tail and "line 000000" not in tail
        assert len(tail) < 20_000
        assert browser.get(f"/jobs/{job}?task=5").status_code == 404  # it has one task
        assert browser.get(f"/jobs/{job}?task=x").status_code == 422
    for path in ("/docs", "/redoc"):
        assert httpx.get(server.url + path).status_code == 404
    assert httpx.get(server.url + "/openapi.json").status_code == 200


def test_an_admin_submits_from_the_form_for_a_tenant_it_names(server):
    make_member(server, "con-o", "con-ola")
    with sign_in(server, server.admin_token) as browser:
        csrf = csrf_of(browser, "/submit")
        form = {"csrf": csrf, "tenant": "con-o", "tasks": "1", "cards": "1", "restarts": "0"}
        form["command"] = f"{sys.executable}\n-c\nprint(1)"
        assert "it can run here" in browser.post("/fragments/submit-check", data=form).text
        r = browser.post("/submit", data=form)
        assert r.status_code == 303, r.text
        job = int(r.headers["location"].rsplit("/", 1)[1])
    with server.client(server.admin_token) as admin:
        assert admin.get(f"/v1/jobs/{job}").json()["tenant"] == "con-o"


def test_a_job_page_draws_its_placement_and_resubmits_with_changes(server):
    token = make_member(server, "con-p", "con-pat")
    other = make_member(server, "con-q", "con-quinn")
    job = submit(server, token, name="placed")
    wait_for(lambda: job_state(server, job) == "running")
    with server.client(token) as c:
        [node] = c.get(f"/v1/jobs/{job}").json()["nodes"]
    with sign_in(server, token) as browser:
        assert f'class="cell mine" data-node="{node}"' in browser.get(f"/jobs/{job}").text
        form = browser.get(f"/submit?from={job}").text
        assert 'value="placed"' in form and "time.sleep(600)" in form and 'name="cards" value="1"' in form
        assert browser.get("/submit?from=abc").status_code == 422
    with sign_in(server, other) as browser:
        assert browser.get(f"/submit?from={job}").status_code == 404  # another tenant's spec
    with server.client(token) as c:
        assert c.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_the_job_list_folds_an_array_into_one_row_and_sorts(server):
    token = make_member(server, "con-r", "con-ray")
    other = make_member(server, "con-s", "con-sal")
    with server.client(token) as c:
        spec = {"name": "sweep", "array": "0-3", "task_groups": [{"cards": 1}], "command": ["sleep", "600"]}
        array = c.post("/v1/jobs", json=spec, params={"hold": True}).json()["array_job_id"]
    big = submit(server, token, name="big-one")
    with sign_in(server, token) as browser:
        text = browser.get("/").text
        assert text.count(f'data-array="{array}"') == 1 and "4 held" in text
        assert text.count('data-job="') == 1  # the elements are folded; big-one is listed
        elements = browser.get(f"/?array={array}").text
        assert elements.count('data-job="') == 4 and f"[{array}_3]" in elements
        assert browser.get(f"/fragments/jobs?array={array}&sort=name").text.count('data-job="') == 4
        assert browser.get("/?sort=bogus").status_code == 422
        assert browser.get("/?sort=cards").status_code == 200
    with sign_in(server, other) as browser:
        assert 'data-job="' not in browser.get(f"/?array={array}").text  # another tenant's array
    with server.client(token) as c:
        assert c.post(f"/v1/jobs/{array}/cancel", params={"array": True}).status_code == 200
        assert c.post(f"/v1/jobs/{big}/cancel").status_code == 200


def test_the_job_list_pages_by_a_hundred_sorts_over_every_page_and_returns_to_its_page(server, drained):
    import re

    from wanka.server.console.job_list import MAX_ROWS

    token = make_member(server, "con-pg", "con-pg-ann")
    with server.client(token) as c:
        spec = {"name": "many", "array": "0-104", "task_groups": [{"cards": 1}], "command": ["true"]}
        array = c.post("/v1/jobs", json=spec, params={"hold": True}).json()["array_job_id"]
    with sign_in(server, token) as browser:
        first = browser.get(f"/?array={array}").text
        ids = re.findall(r'data-job="(\d+)"', first)
        assert len(ids) == MAX_ROWS == 100 and 'rel="next"' in first and ">first page<" not in first
        older = re.search(r'href="/\?([^"]*)" rel="next"', first).group(1).replace("&amp;", "&")
        second = browser.get(f"/?{older}").text
        rest = re.findall(r'data-job="(\d+)"', second)
        assert len(rest) == 5 and not set(ids) & set(rest) and 'rel="next"' not in second
        assert ">first page<" in second and max(map(int, rest)) < min(map(int, ids))  # newest first
        assert f'hx-get="/fragments/jobs?{older.replace("&", "&amp;")}"' in second  # polls its page
        bad_queries = (
            "before=x1",
            "before=" + "9" * 19,
            "sort=size",
            "after_id=5",
            "sort=cards&after_key=x&after_id=1",
        )
        for bad in bad_queries:
            assert browser.get(f"/?{bad}").status_code == 422, bad
        # outside its own list the array is one row counting all 105 elements, not the page's
        whole = browser.get("/?before=12345678901").text  # ids past seven digits page too
        assert whole.count(f'data-array="{array}"') == 1 and "array of 105:" in whole and "105 held" in whole
        # a row's Release posts the table's one form (its CSRF field) and returns to its page
        [table] = re.findall(r'<form method="post" class="rows">.*?</form>', second, re.S)
        [csrf] = re.findall(r'name="csrf" value="([^"]+)"', table)
        [back] = re.findall(r'name="back" value="([^"]+)"', table)
        action = f"/jobs/{rest[0]}/release"
        assert f'formaction="{action}"' in table and "<form" not in table[1:]
        fields = {"csrf": csrf, "back": back.replace("&amp;", "&")}
        r = browser.post(action, data=fields, headers={"Origin": server.url})
        assert r.status_code == 303 and r.headers["location"] == f"/?{older}"
        assert job_state(server, int(rest[0])) == "pending"  # every node drained: it waits
        for elsewhere in ("https://evil.example/", "//evil.example/?array=1", "/nodes?array=1"):
            fields = {"csrf": csrf, "back": elsewhere}
            r = browser.post(f"/jobs/{rest[0]}/hold", data=fields, headers={"Origin": server.url})
            assert r.status_code == 303 and r.headers["location"] == "/", elsewhere
            browser.post(f"/jobs/{rest[0]}/release", data={"csrf": csrf}, headers={"Origin": server.url})
        # sorted over every page: the oldest element, cancelled, leads the sort by state
        with server.client(token) as c:
            assert c.post(f"/v1/jobs/{rest[-1]}/cancel").status_code == 200
        by_state = re.findall(r'data-job="(\d+)"', browser.get(f"/?array={array}&sort=state").text)
        assert by_state[0] == rest[-1] and len(by_state) == MAX_ROWS
        assert "after_key=held" in browser.get(f"/?array={array}&sort=state").text  # its next page
        # by queue position: only the waiting ones, the next to start first
        with server.client(token) as c:
            assert c.post(f"/v1/jobs/{rest[1]}/release").status_code == 200
        queue = sorted(rest[:2], key=int)  # one submit time: the lower id first
        by_position = f"/?array={array}&sort=position"
        wait_for(lambda: re.findall(r'data-job="(\d+)"', browser.get(by_position).text) == queue)
        # folded, the array ranks at its best-placed element (its first one is held); a waiting job
        # the scheduler has not placed (its dependency unmet) comes after the placed ones
        with server.client(token) as c:
            spec = {"name": "after", "task_groups": [{"cards": 1}], "command": ["true"]}
            later = c.post("/v1/jobs", json={**spec, "dependency": f"afterok:{ids[0]}"}).json()["id"]
        wait_for(
            lambda: (
                re.findall(r'data-(?:job|array)="(\d+)"', browser.get("/?sort=position").text)
                == [str(array), str(later)]
            )
        )
        # a sorted list pages by its last row's key and id: a job that moves ahead of the cursor
        # between two loads is neither repeated nor does it push another off the next page
        page0 = browser.get(f"/?array={array}&sort=state").text
        shown0 = re.findall(r'data-job="(\d+)"', page0)
        following = re.search(r'href="/\?([^"]*)" rel="next"', page0).group(1).replace("&amp;", "&")
        after = [i for i in ids + rest if i not in shown0]
        moved = next(i for i in after if job_state(server, int(i)) == "held")
        with server.client(token) as c:  # cancelled sorts before held: it moves ahead of the cursor
            assert c.post(f"/v1/jobs/{moved}/cancel").status_code == 200
        shown1 = re.findall(r'data-job="(\d+)"', browser.get(f"/?{following}").text)
        assert not set(shown0) & set(shown1) and sorted(shown1) == sorted(set(after) - {moved})
    with server.client(token) as c:  # the dependent job first: its dependency cancelled ends it
        assert c.post(f"/v1/jobs/{later}/cancel").status_code == 200
        assert c.post(f"/v1/jobs/{array}/cancel", params={"array": True}).status_code == 200


def test_a_hold_an_admin_placed_shows_no_release_to_a_member(server, drained):
    token = make_member(server, "con-ah", "con-ah-ann")
    job = submit(server, token, name="admin-held")
    with server.client(server.admin_token) as admin:
        assert admin.post(f"/v1/jobs/{job}/hold").status_code == 200
    with sign_in(server, token) as browser:
        for path in ("/", f"/jobs/{job}"):
            assert f"/jobs/{job}/release" not in browser.get(path).text, path
    with sign_in(server, server.admin_token) as browser:
        assert f"/jobs/{job}/release" in browser.get("/").text
    with server.client(token) as c:
        assert c.post(f"/v1/jobs/{job}/cancel").status_code == 200


def test_behind_a_tls_proxy_the_session_cookie_is_secure(server):
    token = make_member(server, "con-tls", "con-tls-ann")
    origin = server.url.replace("http://", "https://")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        headers = {"X-Forwarded-Proto": "https", "Origin": origin}  # as a proxy on this host sends
        proxied = c.post("/login", data={"token": token}, headers=headers)
        assert proxied.status_code == 303 and "; secure" in proxied.headers["set-cookie"].lower()
        plain = c.post("/login", data={"token": token})
        assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
    with sign_in(server, token) as browser:  # plain HTTP on loopback: the cookie must still work
        assert browser.get("/").status_code == 200


def test_failing_scheduler_ticks_show_in_healthz_and_on_the_overview(tmp_path):
    # hostile review: with the tree in force broken, every tick failed while /healthz said "ok"
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session as DbSession

    from wanka.server import tables

    server = start_server(tmp_path / "home")
    try:
        engine = create_engine(server.database)
        with DbSession(engine) as db:  # what no API accepts any more: a tree naming the root twice
            body = {"organisations": [{"name": "cluster"}]}
            db.add(tables.QuotaDocument(body=body, applied_at=0.0, applied_by=1))
            db.commit()
        with server.client(server.admin_token) as admin:
            admin.post("/v1/tenants", json={"name": "tick-a"})  # wakes the loop, which reloads the tree
            health = wait_for(lambda: (h := admin.get("/healthz").json())["status"] == "degraded" and h)
            assert "cluster" in health["error"]
            with sign_in(server, server.admin_token) as browser:
                assert "The scheduler is in trouble" in browser.get("/overview").text
            r = admin.put("/v1/quotas", json={"organisations": [{"name": "tick-a"}]})
            assert r.status_code == 200, r.text
            wait_for(lambda: admin.get("/healthz").json()["status"] == "ok")
        engine.dispose()
    finally:
        stop_server(server)


def test_the_accounts_page_lists_tokens_tenants_and_prices_and_revokes_by_the_apis_rules(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        alice = make_member(server, "acc-a", "acc-ann")
        bob = make_member(server, "acc-b", "acc-bob")
        with server.client(server.admin_token) as admin:
            r = admin.put("/v1/prices", json={"currency": "CNY", "card_hour": {"ascend-910c": 12.5}})
            assert r.status_code == 200, r.text
            tokens = {t["user"]: t["id"] for t in admin.get("/v1/tokens").json()}
        with sign_in(server, alice) as browser:
            page = browser.get("/accounts").text
            assert "acc-ann" in page and "acc-bob" not in page and 'data-tenant="' not in page
            assert "ascend-910c" in page and "12.5" in page and "this session" in page
            csrf = csrf_of(browser, "/accounts")
            r = browser.post(f"/tokens/{tokens['acc-bob']}/revoke", data={"csrf": csrf})
            assert r.status_code == 404  # another's token, as the API says
            assert browser.post(f"/tokens/{tokens['acc-ann']}/revoke", data={}).status_code == 403  # CSRF
            assert browser.post(f"/tokens/{tokens['acc-ann']}/revoke", data={"csrf": csrf}).status_code == 303
            assert browser.get("/accounts").status_code == 303  # its session ended with the token
        with server.client(bob) as c:
            assert c.get("/v1/jobs").status_code == 200
        with sign_in(server, server.admin_token) as browser:
            page = browser.get("/accounts").text
            assert 'data-tenant="acc-a"' in page and 'data-user="acc-bob"' in page and "acc-ann" in page
            csrf = csrf_of(browser, "/accounts")
            r = browser.post(f"/tokens/{tokens['admin']}/revoke", data={"csrf": csrf})
            assert r.status_code == 409 and "last working admin token" in r.text
    finally:
        stop_server(server)


def test_the_overview_charts_goodput_as_the_card_time_not_lost_to_failed_runs(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        token = make_member(server, "con-g", "con-gus")
        ids = []
        with server.client(token) as c:
            for code in (0, 3):  # the same card time, one kept and one lost
                job = {
                    "name": f"exit-{code}",
                    "task_groups": [{"replicas": 1, "cards": 1}],
                    "command": [sys.executable, "-c", f"import time, sys; time.sleep(1); sys.exit({code})"],
                }
                ids.append(c.post("/v1/jobs", json=job).json()["id"])
            wait_for(
                lambda: [c.get(f"/v1/jobs/{i}").json()["state"] for i in ids] == ["succeeded", "failed"], 60
            )
        with sign_in(server, server.admin_token) as browser:
            page = browser.get("/overview").text
            chart = json.loads(re.search(r'id="chart-allocation">(.*?)</script>', page, re.S).group(1))
            last = chart["goodput"][-1]
            assert last is not None and 0.2 < last < 0.8  # about half the held card time was lost
            assert chart["allocated"][-1] > 0
            assert all(g is None for g in chart["goodput"][:-2])  # nothing held before: no figure
    finally:
        stop_server(server)


def test_a_jobs_page_shows_how_each_task_ended_and_what_its_checkpoint_directory_holds(server):
    token = make_member(server, "con-c", "con-cal")
    script = (
        "import os, sys; d = os.environ['WANKA_CHECKPOINT_DIR']; "
        "open(os.path.join(d, 'step-000100.pt'), 'wb').write(b'x' * 4096); "
        "os.symlink('/etc/shadow', os.path.join(d, '<b>shadow')); sys.exit(3)"
    )
    job = {
        "name": "ckpt",
        "task_groups": [{"replicas": 1, "cards": 1}],
        "command": [sys.executable, "-c", script],
    }
    with server.client(token) as c:
        job_id = c.post("/v1/jobs", json=job).json()["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "failed", 60)
    with sign_in(server, token) as browser:
        page = browser.get(f"/jobs/{job_id}").text
        runs = re.search(r'<table class="task-runs">(.*?)</table>', page, re.S).group(1)
        assert '<td class="exit">3' in runs and ">failed<" in runs
        saved = re.search(r'<table class="checkpoints">(.*?)</table>', page, re.S).group(1)
        assert "<td>step-000100.pt</td><td>file</td><td>4,096 B</td>" in saved
        # a link is shown as one, never followed; its name is text
        assert "<td>&lt;b&gt;shadow</td><td>link</td><td></td>" in saved
        assert "root:" not in page


def test_a_checkpoint_name_that_is_not_utf8_shows_as_text_and_breaks_no_page(server):
    token = make_member(server, "con-u", "con-uma")
    script = (
        "import os; d = os.fsencode(os.environ['WANKA_CHECKPOINT_DIR']); "
        "open(os.path.join(d, b'bad-\\xff-name'), 'wb').write(b'1')"
    )
    job = {
        "name": "bytes",
        "task_groups": [{"replicas": 1, "cards": 1}],
        "command": [sys.executable, "-c", script],
    }
    with server.client(token) as c:
        job_id = c.post("/v1/jobs", json=job).json()["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded", 60)
    for who in (token, server.admin_token):
        with sign_in(server, who) as browser:
            r = browser.get(f"/jobs/{job_id}")
            assert r.status_code == 200 and "<td>bad-\ufffd-name</td>" in r.text


def test_a_refused_page_or_action_answers_as_a_page_of_the_console_not_json(server):
    token = make_member(server, "con-err", "con-err-ann")
    job = submit(server, token, name="<b>not-held</b>")
    with sign_in(server, token) as browser:
        refused = browser.get("/overview")  # an operator's page
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert (
            "admins only" in refused.text
            and "script-src 'self'" in refused.headers["content-security-policy"]
        )
        assert browser.get("/jobs/999999999").status_code == 404
        typed = browser.get("/jobs/abc")  # a path value of the wrong type: the page names it
        assert (
            typed.status_code == 422 and "job_id" in typed.text and "content-security-policy" in typed.headers
        )
        csrf = csrf_of(browser)
        r = browser.post(f"/jobs/{job}/release", data={"csrf": csrf}, headers={"Origin": server.url})
        assert (
            r.status_code == 409
            and "is not held" in r.text
            and r.headers["content-type"].startswith("text/html")
        )
    with server.client(token) as c:
        assert (
            c.get(f"/v1/jobs/{job}/nope").headers["content-type"] == "application/json"
        )  # the API keeps JSON
        assert c.post(f"/v1/jobs/{job}/cancel").status_code == 200


@pytest.mark.parametrize(
    ("header", "takes"),
    [
        ("gzip, deflate, br", True),
        ("br", False),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0.5", True),
        ("x-gzip", True),
        ("GZIP;Q=1", True),
        ("*", True),
        ("*;q=0, gzip", True),  # named beats the wildcard, either way
        ("gzip;q=0, *", False),
        ("gzip;level=1;q=0", False),  # the weight wherever it stands
        ("gzip;q=abc", False),
        ("gzip;q=nan", False),
    ],
)
def test_accept_encoding_weights_decide_gzip(header, takes):
    from wanka.server.console.pages import accepts_gzip

    assert accepts_gzip(header) is takes
