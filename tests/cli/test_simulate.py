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
