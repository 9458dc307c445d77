"""The console's account forms over real HTTP: an operator creates and disables tenants and users,
issues tokens (shown once) and applies prices with the API's own rules; a member issues only its
own tokens and changes nothing else; bad input names its field and stores nothing."""

from __future__ import annotations

import re
import sys

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.console.helpers import csrf_of, sign_in
from tests.server.test_api import make_member

NEW_TOKEN = re.compile(r'<code id="new-token">([^<]+)</code>')


def problems(text: str) -> str:
    found = re.search(r'<ul class="problems">(.*?)</ul>', text, re.S)
    return found.group(1) if found else ""


def post(browser, path: str, **fields):
    return browser.post(path, data={"csrf": csrf_of(browser, "/accounts"), **fields})


@pytest.fixture
def fresh(tmp_path):
    server = start_server(tmp_path / "home")
    yield server
    stop_server(server)


def test_an_operator_creates_a_tenant_a_member_and_its_token_which_is_shown_once(fresh):
    with sign_in(fresh, fresh.admin_token) as admin:
        assert post(admin, "/accounts/tenants", name="acct-lab").status_code == 303
        assert (
            post(admin, "/accounts/users", name="acct-lee", role="member", tenant="acct-lab").status_code
            == 303
        )
        r = post(admin, "/accounts/tokens", user="acct-lee", label="laptop", expires_in_days="30")
        assert r.status_code == 403 and "confirm_token" in problems(r.text)  # the cookie alone mints none
        r = post(
            admin,
            "/accounts/tokens",
            user="acct-lee",
            label="laptop",
            expires_in_days="30",
            confirm_token=fresh.admin_token,
        )
        assert r.status_code == 201
        token = NEW_TOKEN.search(r.text).group(1)
        assert "shown this once" in r.text
        assert token not in admin.get("/accounts").text  # never again
    with fresh.client(token) as c:
        me = c.get("/v1/whoami").json()
        assert me["name"] == "acct-lee" and me["tenant"] == "acct-lab" and me["role"] == "member"
        [row] = [t for t in c.get("/v1/tokens").json() if t["label"] == "laptop"]
        assert row["expires_at"] is not None and row["prefix"] == token[: len(row["prefix"])]


def test_disabling_a_user_stops_its_tokens_and_disabling_a_tenant_cancels_its_jobs(fresh):
    member = make_member(fresh, "acct-off", "acct-olga")
    job = {"name": "long", "task_groups": [{"replicas": 1, "cards": 1}]}
    job["command"] = [sys.executable, "-c", "import time; time.sleep(600)"]
    with fresh.client(member) as c:
        job_id = c.post("/v1/jobs", json=job).json()["id"]
    with sign_in(fresh, fresh.admin_token) as admin:
        assert post(admin, "/accounts/users/acct-olga/disable").status_code == 303
        with fresh.client(member) as c:
            assert c.get("/v1/jobs").status_code == 401
        assert post(admin, "/accounts/users/acct-olga/enable").status_code == 303
        with fresh.client(member) as c:
            assert c.get("/v1/jobs").status_code == 200
        assert post(admin, "/accounts/tenants/acct-off/disable").status_code == 303
        page = admin.get("/accounts").text
        assert re.search(r'data-tenant="acct-off">.*?disabled', page, re.S)
        with fresh.client(fresh.admin_token) as api:
            wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled", 60)
        with fresh.client(member) as c:
            assert c.get("/v1/jobs").status_code == 401
        # the last working admin stays: refused with the API's reason
        r = post(admin, "/accounts/users/admin/disable")
        assert r.status_code == 409 and "last working admin token" in problems(r.text)
        # also behind another admin whose only token is about to expire (it would lock the
        # operator out moments later)
        assert post(admin, "/accounts/users", name="acct-tmp", role="admin", tenant="").status_code == 303
        r = post(
            admin,
            "/accounts/tokens",
            user="acct-tmp",
            expires_in_days="0.01",
            confirm_token=fresh.admin_token,
        )
        assert r.status_code == 201
        r = post(admin, "/accounts/users/admin/disable")
        assert r.status_code == 409 and "last working admin token" in problems(r.text)
        assert post(admin, "/accounts/tenants/no-such/disable").status_code == 404


def test_an_operator_applies_prices_from_the_form_and_a_bad_table_stores_nothing(fresh):
    with sign_in(fresh, fresh.admin_token) as admin:
        model = fresh.client(fresh.admin_token).get("/v1/nodes").json()[0]["model"]
        r = post(admin, "/accounts/prices", currency="CNY", card_hour=f"{model} 12.5\n")
        assert r.status_code == 303
        with fresh.client(fresh.admin_token) as api:
            assert api.get("/v1/prices").json()["card_hour"] == {model: 12.5}
        for fields, field, says in (
            ({"currency": "cny", "card_hour": f"{model} 3"}, "currency", "pattern"),
            ({"currency": "USD", "card_hour": f"{model} 3"}, "currency", "bills are in CNY"),
            ({"currency": "CNY", "card_hour": "tpu-v9 3"}, "card_hour", "unknown accelerator"),
            ({"currency": "CNY", "card_hour": f"{model} -1"}, "card_hour", "greater than or equal to 0"),
            ({"currency": "CNY", "card_hour": f"{model} lots"}, "card_hour", "number"),
            ({"currency": "CNY", "card_hour": "12.5"}, "card_hour", "MODEL PRICE"),
            ({"currency": "CNY", "card_hour": "\n".join(f"m{i} 1" for i in range(300))}, "card_hour", "256"),
        ):
            r = post(admin, "/accounts/prices", **fields)
            assert r.status_code == 422, (fields, r.status_code)
            shown = problems(r.text)
            assert f"<b>{field}" in shown and says in shown, (fields, shown)
        with fresh.client(fresh.admin_token) as api:
            assert api.get("/v1/prices").json()["card_hour"] == {model: 12.5}
            assert len(api.get("/v1/usage").json().get("prices", [None])) >= 0  # still answers


@pytest.mark.parametrize(
    ("path", "fields", "field", "says"),
    [
        ("/accounts/tenants", {"name": "cluster"}, "name", "root of the quota tree"),
        ("/accounts/tenants", {"name": "<script>x</script>"}, "name", "pattern"),
        ("/accounts/tenants", {"name": "x" * 200}, "name", "{0,62}"),
        ("/accounts/users", {"name": "u1", "role": "member", "tenant": ""}, "tenant", "belongs to a tenant"),
        ("/accounts/users", {"name": "u1", "role": "root", "tenant": ""}, "role", "admin|member"),
        ("/accounts/users", {"name": "u1", "role": "member", "tenant": "nope"}, "tenant", "no tenant"),
        ("/accounts/tokens", {"label": "x", "expires_in_days": "soon"}, "expires_in_days", "number of days"),
        # the form's own field and unit, not the API's seconds
        ("/accounts/tokens", {"label": "x", "expires_in_days": "-1"}, "expires_in_days", "above 0"),
        ("/accounts/tokens", {"label": "x", "expires_in_days": "36500"}, "expires_in_days", "at most 3,660"),
        ("/accounts/tokens", {"label": "x", "expires_in_days": "nan"}, "expires_in_days", "above 0"),
        ("/accounts/tokens", {"label": "x", "expires_in_days": "inf"}, "expires_in_days", "at most 3,660"),
        ("/accounts/tokens", {"label": "x" * 300}, "label", "200"),
        ("/accounts/tokens", {"label": "x", "confirm_token": ""}, "confirm_token", "API token of yours"),
    ],
)
def test_a_bad_account_form_names_its_field_and_stores_nothing(server, path, fields, field, says):
    with sign_in(server, server.admin_token) as admin:
        with server.client(server.admin_token) as api:
            before = (api.get("/v1/tenants").json(), len(api.get("/v1/tokens").json()))
        if path == "/accounts/tokens":
            fields = {"confirm_token": server.admin_token, **fields}
        r = post(admin, path, **fields)
        assert r.status_code == (403 if field == "confirm_token" else 422), r.text[:300]
        shown = problems(r.text)
        assert f"<b>{field}" in shown and says in shown, shown
        assert "<script>x</script>" not in r.text  # what was typed comes back escaped
        with server.client(server.admin_token) as api:
            after = (api.get("/v1/tenants").json(), len(api.get("/v1/tokens").json()))
        assert after == before


def test_a_member_issues_only_its_own_tokens_and_changes_no_account(server):
    member = make_member(server, "acct-m", "acct-max")
    other = make_member(server, "acct-n", "acct-nia")
    with sign_in(server, member) as browser:
        page = browser.get("/accounts").text
        assert (
            'name="user"' not in page and "/accounts/prices" not in page and "/accounts/tenants" not in page
        )
        # vouched for by another user's token, or by a session token: refused
        for other_token in (other, browser.cookies.get("wanka_session"), "wk_" + "x" * 40):
            r = post(browser, "/accounts/tokens", label="stolen", confirm_token=other_token)
            assert r.status_code == 403 and "confirm_token" in problems(r.text)
            assert other_token not in r.text  # what was typed is not shown back
        r = post(browser, "/accounts/tokens", label="ci", confirm_token=member)
        assert r.status_code == 201
        token = NEW_TOKEN.search(r.text).group(1)
        with server.client(token) as c:
            assert c.get("/v1/whoami").json()["name"] == "acct-max"
        r = post(browser, "/accounts/tokens", user="acct-nia", label="stolen", confirm_token=member)
        assert r.status_code == 404 and "no user" in problems(r.text)
        for path, fields in (
            ("/accounts/tenants", {"name": "mine"}),
            ("/accounts/users", {"name": "mine", "role": "admin", "tenant": ""}),
            ("/accounts/users/acct-nia/disable", {}),
            ("/accounts/tenants/acct-n/disable", {}),
            ("/accounts/prices", {"currency": "CNY", "card_hour": "ascend-910c 0"}),
        ):
            assert post(browser, path, **fields).status_code == 403, path
        assert browser.post("/accounts/tokens", data={"label": "no csrf"}).status_code == 403
    with server.client(other) as c:
        assert c.get("/v1/jobs").status_code == 200  # untouched
    with server.client(server.admin_token) as api:
        assert "mine" not in [t["name"] for t in api.get("/v1/tenants").json()]
        assert not [t for t in api.get("/v1/tokens").json() if t["label"] in ("stolen", "no csrf")]
