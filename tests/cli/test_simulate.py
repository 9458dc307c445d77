import csv
import json
from pathlib import Path

from tests.cli.test_cli import wanka

SAMPLE = Path(__file__).parents[1] / "sim" / "data" / "philly_busy_halfday.csv"


def test_simulate_compare_prints_stable_json_keys():
    out = json.loads(
        wanka(
            "simulate", "--workload", f"trace:philly:{SAMPLE}", "--compare", "fifo,tiresias", "--json"
        ).stdout
    )
    assert [r["policy"] for r in out["results"]] == ["fifo", "tiresias"]
    for r in out["results"]:
        for key in ("jobs", "avg_jct_s", "p99_wait_s", "utilization", "ettr", "wall_s"):
            assert key in r
        assert r["jobs"] == 660


def test_simulate_table_and_bad_input(tmp_path):
    text = wanka("simulate", "--cluster", "philly-2048", "--workload", f"trace:philly:{SAMPLE}").stdout
    assert "660 jobs" in text and "philly-2048" in text
    r = wanka("simulate", "--workload", "synthetic:year", check=False)
    assert r.returncode == 2 and "unknown synthetic workload 'year'" in r.stderr
    r = wanka("simulate", "--workload", "parquet:x", check=False)
    assert r.returncode == 2 and "trace:FORMAT:PATH" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,x,1,66,a\n")
    r = wanka("simulate", "--workload", f"trace:philly:{bad}", check=False)
    assert (
        r.returncode == 2
        and "line 2" in r.stderr
        and "duration" in r.stderr
        and "--skip-bad-rows" in r.stderr
    )
    r = wanka("simulate", "--workload", f"trace:philly:{bad}", "--skip-bad-rows", "--json")
    assert json.loads(r.stdout)["results"][0]["skipped_rows"] == 1


def test_simulate_replays_some_tenants_of_a_trace_on_a_resized_cluster():
    args = ("simulate", "--cluster", "philly-2048", "--workload", f"trace:philly:{SAMPLE}")
    out = json.loads(wanka(*args, "--cards", "256", "--tenants", "11cb48", "--json").stdout)
    assert out["cluster"] == "philly-2048-at-256" and "tenants 11cb48 (105 jobs)" in out["workload"]
    assert out["results"][0]["jobs"] == 105 and "p95_wait_s" in out["results"][0]
    r = wanka(*args, "--cards", "250", check=False)
    assert r.returncode == 2 and "--cards: 250" in r.stderr and "whole nodes of 8" in r.stderr
    r = wanka(*args, "--tenants", "nope", check=False)
    assert r.returncode == 2 and "--tenants: no such tenant in the trace: nope" in r.stderr
    r = wanka("simulate", "--tenants", "busiest", "--days", "0.1", check=False)
    assert r.returncode == 2 and "--tenants: only for a trace" in r.stderr


def test_simulate_synthetic_with_failures_writes_a_report(tmp_path):
    out = json.loads(
        wanka(
            "simulate",
            "--days",
            "0.5",
            "--compare",
            "fifo,wanka",
            "--failures",
            "llama3",
            "--hot-spares",
            "2",
            "--out",
            str(tmp_path),
            "--json",
        ).stdout
    )
    assert out["failures"] == "llama3" and len(out["results"]) == 2
    for name in (
        "report.md",
        "report.html",
        "summary.csv",
        "jobs_fifo.csv",
        "timeseries_wanka.csv",
        "utilisation.png",
        "queue.png",
        "wait_cdf.png",
        "tenant_share.png",
        "heatmap.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "| avg_jct_s |" in (tmp_path / "report.md").read_text()


def test_what_if_more_cards_runs_baseline_and_change_on_the_same_jobs():
    out = json.loads(wanka("simulate", "--days", "0.5", "--what-if", "cards+=2048", "--json").stdout)
    base, more = out["results"]
    assert base["policy"] == "wanka (baseline)" and more["policy"] == "wanka (cards+=2048)"
    assert base["jobs"] == more["jobs"] > 0
    r = wanka("simulate", "--days", "0.5", "--what-if", "gpus=9", check=False)
    assert r.returncode == 2 and "cards+=N" in r.stderr


def test_failure_model_file(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("name: flaky\ndaily_rate_per_card: 0.01\ncauses: [{cause: psu, weight: 1, repair_s: 600}]\n")
    out = json.loads(wanka("simulate", "--days", "0.2", "--failures", str(f), "--json").stdout)
    assert out["failures"] == "flaky" and out["results"][0]["failures"] > 0
    f.write_text("daily_rate_per_card: -1\n")
    r = wanka("simulate", "--days", "0.2", "--failures", str(f), check=False)
    assert r.returncode == 2 and "daily_rate_per_card" in r.stderr


def test_a_bad_trace_is_one_line_on_stderr_and_exit_2(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("job_id,submit_s,duration_s,cards,tenant\na,0,10,1,t\na,5,10,1,t\n")
    r = wanka("simulate", "--cluster", "dev", "--workload", f"trace:wanka:{dup}", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {dup}, line 3, column 'job_id': duplicate job id 'a' (first on line 2)"
        " (--skip-bad-rows skips and counts such rows)"
    ]


def test_help_lists_every_trace_format():
    text = " ".join(wanka("simulate", "--help").stdout.split())
    for fmt in ("philly", "itp", "helios", "pai", "openb", "acme", "wanka"):
        assert fmt in text


def one_job_trace(tmp_path: Path, rows: str) -> Path:
    p = tmp_path / "jobs.csv"
    p.write_text("job_id,submit_s,duration_s,cards,tenant\n" + rows)
    return p


def test_each_overhead_is_a_flag_and_the_report_says_which_were_on(tmp_path):
    trace = one_job_trace(tmp_path, "a,0,1000,1,t\n")
    args = ("simulate", "--cluster", "dev", "--workload", f"trace:wanka:{trace}", "--interval", "1")
    on = json.loads(wanka(*args, "--json").stdout)
    assert on["overheads"] == {"checkpoint_write_s": 60.0, "restart_s": 1020.0, "topology_penalty": 0.1}
    assert on["results"][0]["avg_jct_s"] > 1016  # a checkpoint write every hour of compute
    off = ("--checkpoint-write-s", "0", "--restart-s", "0", "--topology-penalty", "0")
    r = json.loads(wanka(*args, *off, "--out", str(tmp_path / "report"), "--json").stdout)
    assert r["overheads"] == {"checkpoint_write_s": 0.0, "restart_s": 0.0, "topology_penalty": 0.0}
    assert r["results"][0]["avg_jct_s"] == 1000.0
    assert "- overheads: none" in (tmp_path / "report" / "report.md").read_text()
    table = wanka(*args).stdout
    assert "overheads: checkpoint writes 60 s each; restarts 1020 s; topology penalty 10%" in table


def test_las_thresholds_of_the_released_tiresias_simulator(tmp_path):
    # issue 14, item 9: eight 1-card jobs of 10,000 s fill `dev`; b arrives at 100 s and starts when
    # they cross the first threshold, 3,250 card-s with the released simulator's limits
    rows = "".join(f"a{i},0,10000,1,t\n" for i in range(8)) + "b,100,100,1,t\n"
    trace = one_job_trace(tmp_path, rows)
    args = ("simulate", "--cluster", "dev", "--workload", f"trace:wanka:{trace}", "--policy", "tiresias")
    off = ("--checkpoint-write-s", "0", "--restart-s", "0", "--topology-penalty", "0", "--interval", "1")
    out = tmp_path / "report"
    r = json.loads(
        wanka(*args, *off, "--las-thresholds", "tiresias-released", "--out", str(out), "--json").stdout
    )
    assert r["las_thresholds"] == [[3250.0, 7200.0]]
    with (out / "jobs_tiresias.csv").open() as fh:
        b = next(row for row in csv.DictReader(fh) if row["job_id"] == "b")
    assert float(b["first_start_s"]) == 3250.0
    assert "- LAS thresholds (card-seconds): 3250, 7200" in (out / "report.md").read_text()
    bad = wanka(*args, "--las-thresholds", "7200,3250", check=False)
    assert bad.returncode == 2 and "ascending positive card-seconds" in bad.stderr
    fifo = wanka(*args[:-1], "fifo", "--las-thresholds", "3600", check=False)
    assert fifo.returncode == 2 and "none of the policies run orders jobs by LAS" in fifo.stderr


EXAMPLES = Path(__file__).parents[2] / "examples"


def test_services_beside_the_jobs_and_what_they_cost_them(tmp_path):
    args = ("simulate", "--cluster", "wanka-10k", "--cards", "1000", "--days", "2")
    out = json.loads(
        wanka(
            *args, "--services", str(EXAMPLES / "twin-services.yaml"), "--out", str(tmp_path), "--json"
        ).stdout
    )
    (run,) = out["results"]
    (alone,) = out["without_services"]
    assert run["policy"] == "wanka" and alone["policy"] == "wanka (no services)"
    assert run["services"] == 3 and run["replica_starts"] >= 4 and 0 < run["demand_covered"] <= 1
    assert run["avg_guaranteed_cards"] > 0 and run["serving_card_hours"] > run["guaranteed_card_hours"]
    assert run["jobs"] == alone["jobs"] and "services" not in alone
    assert run["serving_s"] == 2 * 86400 and out["services_file"].endswith("twin-services.yaml")
    assert run["utilization"] > alone["utilization"]  # the replicas' cards count
    report = (tmp_path / "report.md").read_text()
    assert "## Services" in report and "## What serving costs the jobs" in report
    for name in ("serving.png", "services_wanka.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader((tmp_path / "services_wanka.csv").open()))
    assert sorted(r["service"] for r in rows) == ["chat", "embed", "ocr"]
    series = next(csv.DictReader((tmp_path / "timeseries_wanka.csv").open()))
    assert "serving_cards" in series and "guaranteed_cards" in series


def test_synthetic_services_and_bad_service_files(tmp_path):
    args = ("simulate", "--cluster", "wanka-10k", "--cards", "1000", "--days", "1")
    out = json.loads(wanka(*args, "--services", "synthetic", "--json").stdout)
    assert out["results"][0]["services"] == 6  # 60 per 10,000 cards
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - {name: chat, tenant: szu, load: {peak_rps: 1, trough_rps: 5}}\n")
    r = wanka(*args, "--services", str(bad), check=False)
    assert r.returncode == 2 and "trough_rps (5) must not exceed peak_rps (1)" in r.stderr
    bad.write_text("services:\n  - {name: chat, tenant: nobody, load: {peak_rps: 1}}\n")
    r = wanka(*args, "--services", str(bad), check=False)
    assert r.returncode == 2 and "services[0].tenant" in r.stderr and "no leaf queue 'nobody'" in r.stderr
    assert "startup-m" in r.stderr  # every tenant of the month is listed
    bad.write_text("services:\n  - {name: nb, kind: notebook, tenant: szu, load: {peak_rps: 1}}\n")
    r = wanka(*args, "--services", str(bad), check=False)
    assert r.returncode == 2 and "notebooks are not simulated" in r.stderr
    bad.write_text("services:\n  - {name: Chat!, tenant: szu, load: {peak_rps: 1}}\n")
    r = wanka(*args, "--services", str(bad), check=False)
    assert r.returncode == 2 and "not a DNS label" in r.stderr
    r = wanka(*args, "--services", str(tmp_path / "none.yaml"), check=False)
    assert r.returncode == 2 and "neither 'synthetic' nor an existing file" in r.stderr


def test_a_what_if_whose_queues_lack_a_service_is_one_error_not_a_traceback(tmp_path):
    quotas = tmp_path / "q.yaml"
    quotas.write_text(
        "organisations:\n  - name: other\n    quota: {ascend-910b2: {nominal: 100}}\n"
        "    queues:\n      - {name: other-q, quota: {ascend-910b2: {nominal: 100}}}\n"
    )
    r = wanka(
        "simulate", "--cluster", "wanka-10k", "--cards", "1000", "--days", "0.2",
        "--services", str(EXAMPLES / "twin-services.yaml"), "--what-if", f"quotas={quotas}",
        check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--services with wanka (quotas=" in r.stderr and "no leaf queue 'llm-startup-a'" in r.stderr


def test_every_number_flag_is_finite_and_bounded(tmp_path):
    """Click's float ranges let NaN and inf through; each flag refuses them, and values that would
    have the twin run for ever, naming the flag (exit 2)."""
    trace = one_job_trace(tmp_path, "a,0,1000,1,t\n")
    args = ("simulate", "--cluster", "dev", "--workload", f"trace:wanka:{trace}")
    for flag, value in (
        ("--checkpoint-write-s", "nan"),
        ("--checkpoint-write-s", "inf"),
        ("--checkpoint-write-s", "1e308"),
        ("--restart-s", "nan"),
        ("--restart-s", "1e300"),
        ("--topology-penalty", "inf"),
        ("--topology-penalty", "nan"),
        ("--interval", "nan"),
        ("--days", "inf"),
        ("--days", "nan"),
        ("--load", "nan"),
    ):
        r = wanka(*args, flag, value, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (flag, value, r.stderr)
        assert flag in r.stderr, (flag, value, r.stderr)


def test_a_job_that_can_never_run_is_named_with_the_reason(tmp_path):
    trace = one_job_trace(tmp_path, "big,0,100,9,t\nsmall,0,100,1,t\n")  # dev: one 8-card node
    args = ("simulate", "--cluster", "dev", "--workload", f"trace:wanka:{trace}")
    r = json.loads(wanka(*args, "--json").stdout)["results"][0]
    assert r["jobs"] == 1 and r["jobs_unschedulable"] == 1
    assert [u["job"] for u in r["unschedulable_jobs"]] == ["big"]
    assert "the cluster has 8" in r["unschedulable_jobs"][0]["why"]
    assert "1 job(s) can never run here, e.g. big: " in " ".join(wanka(*args).stdout.split())
