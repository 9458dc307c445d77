"""The console's twin reports over real HTTP against a real server: a what-if on the cluster's own
history runs in a process of its own and reports; one at a time; cancel and server stop end the
process; members see none of it; bad input names its field and starts nothing."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.server.conftest import start_server, stop_server, wait_for
from tests.server.console.helpers import csrf_of, sign_in
from tests.server.test_api import make_member

RUN = re.compile(r"^/twin/([0-9]{10}-[0-9a-f]{8})$")


def start(browser, **fields) -> tuple[int, str]:
    r = browser.post("/twin", data={"csrf": csrf_of(browser, "/twin"), **fields})
    match = RUN.match(r.headers.get("location", ""))
    return r.status_code, (match.group(1) if match else r.text)


def status(browser, run_id: str) -> str:
    return browser.get(f"/fragments/twin/{run_id}").text


def workers(run_id: str) -> list[int]:
    """Pids of what-if processes of this run (by the run directory in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"wanka.sim.whatif" in cmdline and any(arg.endswith(run_id.encode()) for arg in cmdline):
                found.append(int(entry.name))
    return found


def test_an_operator_compares_policies_on_the_clusters_own_history_and_reads_the_report(server):
    member = make_member(server, "twin-t", "twin-tom")
    job = {
        "name": "short",
        "task_groups": [{"replicas": 1, "cards": 1}],
        "command": [sys.executable, "-c", "1"],
    }
    ids = []
    with server.client(member) as c:
        for _ in range(3):
            r = c.post("/v1/jobs", json=job)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        wait_for(lambda: all(c.get(f"/v1/jobs/{i}").json()["state"] == "succeeded" for i in ids), 60)
    with sign_in(server, server.admin_token) as admin:
        code, run_id = start(admin, workload="history", days="1", change="policy", policy="fifo")
        assert code == 303, run_id
        page = admin.get(f"/twin/{run_id}")
        assert page.status_code == 200 and "What-if on" in page.text
        report = wait_for(lambda: (t := status(admin, run_id)) and "twin-report" in t and t, 120, 0.2)
        assert "wanka (baseline)" in report and "fifo (policy)" in report
        # every job that ran in the window, in both runs (other tests' jobs too: at least ours)
        jobs = re.search(r"<td>jobs</td><td>([0-9,]+)</td><td>([0-9,]+)</td>", report)
        assert jobs and jobs.group(1) == jobs.group(2) and int(jobs.group(1).replace(",", "")) >= 3
        plots = re.findall(r'<img src="(/twin/[^"]+\.png)"', report)
        assert len(plots) >= 3
        for src in plots:
            r = admin.get(src)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert r.content.startswith(b"\x89PNG")
        [summary] = re.findall(r'href="(/twin/[^"]+/summary\.csv)"', report)
        r = admin.get(summary)
        assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment")
        assert r.text.splitlines()[0].startswith("policy,")
        listed = admin.get("/twin").text
        assert f'href="/twin/{run_id}"' in listed and "done" in listed


def test_a_member_sees_no_twin_page_report_or_file(server):
    member = make_member(server, "twin-m", "twin-mia")
    with sign_in(server, server.admin_token) as admin:
        code, run_id = start(admin, workload="synthetic", days="1")
        assert code == 303, run_id
        wait_for(lambda: "twin-report" in status(admin, run_id), 120, 0.2)
    with sign_in(server, member) as browser:
        csrf = csrf_of(browser)
        for path in (
            "/twin",
            f"/twin/{run_id}",
            f"/fragments/twin/{run_id}",
            f"/twin/{run_id}/files/queue.png",
        ):
            r = browser.get(path)
            assert r.status_code == 403, (path, r.status_code)
        before = len(list((server.home / "twin").iterdir()))
        r = browser.post("/twin", data={"csrf": csrf, "workload": "synthetic", "days": "1"})
        assert r.status_code == 403
        assert browser.post(f"/twin/{run_id}/cancel", data={"csrf": csrf}).status_code == 403
        assert len(list((server.home / "twin").iterdir())) == before
    assert "Twin" not in sign_in_page(server, member)


def sign_in_page(server, token: str) -> str:
    with sign_in(server, token) as browser:
        return browser.get("/").text


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"days": "1000"}, "days", "90"),
        ({"workload": "synthetic", "days": "31"}, "days", "30"),
        ({"days": "0.000001"}, "days", "ever ran"),  # no job in so short a window
        ({"change": "cards", "cards": "0"}, "cards", "1 or more"),
        ({"change": "cards", "cards": "100001"}, "cards", "100000"),
        ({"change": "policy", "policy": "<b>nope</b>"}, "policy", "tiresias"),
        ({"change": "policy"}, "policy", "preset"),
        ({"change": "quotas", "quotas": "organisations: ["}, "quotas", "line"),
        (
            {"change": "quotas", "quotas": "organisations: [{name: nobody-here}]"},
            "quotas",
            "every tenant needs one",
        ),
        ({"change": "quotas"}, "quotas", "quota document"),
        ({"load": "abc", "workload": "synthetic"}, "load", "number"),
        ({"seed": "-1"}, "seed", "0"),
        ({"workload": "all of it"}, "workload", "history"),
        ({"failures": "/etc/passwd"}, "failures", "llama3"),
    ],
)
def test_a_bad_what_if_names_its_field_and_starts_nothing(server, fields, field, says):
    with server.client(server.admin_token) as api:  # a tenant the bad quota document leaves out
        assert api.post("/v1/tenants", json={"name": "twin-bad"}).status_code in (201, 409)
    with sign_in(server, server.admin_token) as admin:
        before = sorted(os.listdir(server.home / "twin")) if (server.home / "twin").exists() else []
        code, text = start(admin, **{"workload": "history", "days": "1", **fields})
        assert code == 422, text[:300]
        problems = re.search(r'<ul class="problems">(.*?)</ul>', text, re.S).group(1)
        assert f"<b>{field}</b>" in problems and says in problems, problems
        assert "<b>nope</b>" not in text  # a value quoted back is escaped
        after = sorted(os.listdir(server.home / "twin")) if (server.home / "twin").exists() else []
        assert after == before


def test_one_what_if_at_a_time_cancel_stops_it_and_so_does_stopping_the_server(tmp_path):
    # the 10,000-card preset: a synthetic month there takes minutes, long enough to watch
    big = start_server(tmp_path / "home", ("--cluster", "wanka-10k"))
    try:
        with sign_in(big, big.admin_token) as admin:
            code, text = start(admin, workload="synthetic", days="30", load="5")  # ~322,000 jobs
            assert code == 422 and "at most 200,000 in one what-if" in text
            code, run_id = start(admin, workload="synthetic", days="30")
            assert code == 303, run_id
            shown = wait_for(lambda: (t := status(admin, run_id)) and "<progress" in t and t, 30)
            assert "run 1 of 1" in shown and "Cancel" in shown
            assert workers(run_id)
            code, text = start(admin, workload="synthetic", days="1")
            assert code == 409 and "a what-if is running" in text
            r = admin.post(f"/twin/{run_id}/cancel", data={"csrf": csrf_of(admin, f"/twin/{run_id}")})
            assert r.status_code == 303
            assert "This what-if cancelled" in status(admin, run_id)
            assert workers(run_id) == []  # stopped by its pid (its own group) before the answer
            assert admin.get(f"/twin/{run_id}/files/queue.png").status_code == 404  # no report
            # another may start now; stopping the server stops it too
            code, second = start(admin, workload="synthetic", days="30")
            assert code == 303, second
            wait_for(lambda: workers(second), 30)
    finally:
        stop_server(big)
    assert workers(second) == []


def test_report_files_are_reached_by_their_names_only(server):
    with sign_in(server, server.admin_token) as admin:
        code, run_id = start(admin, workload="synthetic", days="1")
        assert code == 303, run_id
        wait_for(lambda: "twin-report" in status(admin, run_id), 120, 0.2)
        for path in (
            f"/twin/{run_id}/files/..%2Frequest.json",
            f"/twin/{run_id}/files/..%2F..%2F..%2Fwanka.db",
            f"/twin/{run_id}/files/input.pickle",
            f"/twin/{run_id}/files/report.html",  # it carries inline style: not served on this origin
            "/twin/..%2F..%2Fadmin-token",
            "/twin/0000000000-zzzzzzzz",
            "/fragments/twin/1796097049-00000000",
        ):
            r = admin.get(path)
            assert r.status_code == 404, (path, r.status_code)


def test_the_what_if_process_imports_nothing_from_the_servers_working_directory(tmp_path):
    # a tenant's job could write there when the server runs from a directory anyone may write:
    # the child runs isolated, in its own run directory (hostile review)
    planted = tmp_path / "cwd"
    (planted / "wanka" / "sim").mkdir(parents=True)
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').write('planted')\n"
    for init in (planted / "wanka" / "__init__.py", planted / "wanka" / "sim" / "__init__.py"):
        init.write_text(code)
    (planted / "wanka" / "sim" / "whatif.py").write_text(code)
    server = start_server(tmp_path / "home", cwd=planted, isolated=True)
    try:
        with sign_in(server, server.admin_token) as admin:
            code_, run_id = start(admin, workload="synthetic", days="1")
            assert code_ == 303, run_id
            wait_for(lambda: "twin-report" in status(admin, run_id), 120, 0.2)
    finally:
        stop_server(server)
    assert not marker.exists()


def test_the_synthetic_month_fits_its_tasks_to_the_live_nodes_host_sizes(server):
    # the synthetic jobs ask for full-size hosts (8 cores a card); the test server's virtual nodes
    # have far fewer: its tasks take their cards' share instead, and the cards are what is tested
    with sign_in(server, server.admin_token) as admin:
        code, run_id = start(admin, workload="synthetic", days="30", load="5")
        assert code == 303, run_id
        report = wait_for(lambda: (t := status(admin, run_id)) and "twin-report" in t and t, 120, 0.2)
        jobs = re.search(r"<td>jobs</td><td>([0-9,]+)</td>", report)
        assert int(jobs.group(1).replace(",", "")) > 0
        assert "can never run" not in report


def test_a_quota_document_what_if_moves_the_synthetic_jobs_to_the_new_trees_queues(server):
    # the synthetic month is built by the what-if's own process (seconds on 10,000 cards), once,
    # and moved to the compared tree: a queue that stays keeps its jobs, the others go to their
    # organisation's first queue there
    make_member(server, "twin-q", "twin-quinn")
    with server.client(server.admin_token) as c:
        model = c.get("/v1/nodes").json()[0]["model"]
        tenants = [t["name"] for t in c.get("/v1/tenants").json()]
    document = "organisations:\n" + "".join(  # every tenant an organisation; twin-q's a new queue
        f"  - name: {t}\n    quota: {{{model}: {{nominal: 0}}}}\n" for t in tenants if t != "twin-q"
    )
    document += (
        f"  - name: twin-q\n    quota: {{{model}: {{nominal: 4}}}}\n    queues:\n"
        f"      - {{name: twin-q-only, quota: {{{model}: {{nominal: 4}}}}}}\n"
    )
    with sign_in(server, server.admin_token) as admin:
        code, run_id = start(admin, workload="synthetic", days="1", change="quotas", quotas=document)
        assert code == 303, run_id
        report = wait_for(lambda: (t := status(admin, run_id)) and "twin-report" in t and t, 120, 0.2)
    assert "(new quotas)" in report and "synthetic jobs: " in report
    row = re.search(r"<td>jobs</td><td>([0-9,]+)</td><td>([0-9,]+)</td></tr>", report)
    assert row and row.group(1) == row.group(2) != "0", row  # the same jobs in both runs
