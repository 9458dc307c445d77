"""The `wanka` command as a user runs it: a real subprocess, JSON parsed back."""

import json
import subprocess
import sys

import pytest

from wanka.core import POLICIES


def wanka(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def test_cluster_capacity_shenzhen_is_within_five_percent_of_14000p():
    out = json.loads(wanka("cluster", "capacity", "shenzhen-14000p", "--precision", "bf16", "--json").stdout)
    assert abs(out["total_pflops"] / 14_000 - 1) < 0.05
    assert out["published"]["pflops"] == 14_000
    assert out["published"]["implied_cards"] > 14_000 and out["precision"] == "bf16"


def test_cluster_capacity_table_explains_the_published_figure():
    text = wanka("cluster", "capacity", "shenzhen-14000p").stdout
    assert "14,000P" in text and "implies" in text and "13,860.9" in text


def test_cluster_show_json_has_stable_keys():
    out = json.loads(wanka("cluster", "show", "wanka-10k", "--json").stdout)
    assert out["cards"] == 10_000 and out["nodes"] == 1_250
    assert [t["tier"] for t in out["tiers"]] == ["node", "leaf", "pod", "cluster"]
    assert out["pools"][0]["accelerator"] == "ascend-910b2"


def test_cluster_show_reads_a_file_and_reports_errors_by_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: mine\npools:\n  - {name: p, accelerator: h100, nodes: 2, cards_per_node: 8}\n")
    assert json.loads(wanka("cluster", "show", str(f), "--json").stdout)["cards"] == 16
    f.write_text("name: mine\npools:\n  - {name: p, accelerator: nope, nodes: 2, cards_per_node: 8}\n")
    r = wanka("cluster", "show", str(f), check=False)
    assert r.returncode == 2 and "pools[0].accelerator" in r.stderr and "ascend-910c" in r.stderr


@pytest.mark.parametrize("precision", ["fp8", "int8", "fp32"])
def test_capacity_at_other_precisions(precision):
    out = json.loads(
        wanka("cluster", "capacity", "mixed-domestic", "--precision", precision, "--json").stdout
    )
    assert out["precision"] == precision and len(out["pools"]) == 6


def test_catalog_and_policies_and_presets_take_json():
    assert len(json.loads(wanka("catalog", "--json").stdout)) >= 20
    assert {p["name"] for p in json.loads(wanka("policies", "--json").stdout)} == {
        "fifo",
        "slurm",
        "tiresias",
        "drf",
        "wanka-las",
        "wanka",
        "wanka-fifo",
    }
    assert "wanka-10k" in {p["name"] for p in json.loads(wanka("cluster", "presets", "--json").stdout)}


def test_bench_core_json_keys():
    out = json.loads(
        wanka("bench", "core", "--cards", "1000", "--pending", "500", "--runs", "2", "--json").stdout
    )
    r = out["results"][0]
    for key in ("cycle_ms_median", "placements_per_s", "peak_rss_mb"):
        assert r[key] > 0
    assert out["machine"]["cpus"] >= 1


def test_demo_runs_one_cycle_on_wanka_10k():
    out = json.loads(
        wanka("demo", "--pending", "2000", "--running", "1000", "--twin-days", "0", "--json").stdout
    )
    assert out["cluster"]["cards"] == 10_000
    assert out["wanka"]["started"] > 0
    assert {p["policy"] for p in out["policies"]} == set(POLICIES)
    assert "twin" not in out


def test_demo_then_runs_the_twin_with_three_policies(tmp_path):
    out = json.loads(
        wanka(
            "demo",
            "--pending",
            "500",
            "--running",
            "100",
            "--twin-days",
            "0.5",
            "--twin-load",
            "1",
            "--out",
            str(tmp_path),
            "--json",
        ).stdout
    )
    assert [r["policy"] for r in out["twin"]["results"]] == ["fifo", "slurm", "wanka"]
    assert (tmp_path / "report.html").exists()


def test_bad_options_are_refused_clearly():
    r = wanka("cluster", "capacity", "dev", "--precision", "fp4", check=False)
    assert r.returncode != 0 and "fp4" in r.stderr
    r = wanka("bench", "core", "--cards", "100", "--policy", "nope", check=False)
    assert r.returncode == 2 and "unknown policy" in r.stderr


def test_strings_from_the_server_are_shown_not_obeyed_by_the_terminal():
    # hostile review: ESC, C1 CSI, newlines and bidi overrides in a job name acted on an admin's
    # terminal; the API refuses them now, and the CLI still escapes what an older server stored
    from wanka.cli.output import printable

    assert printable("evil\x1b[2J\x1b]52;c;cm0K\x07") == "evil\\x1b[2J\\x1b]52;c;cm0K\\x07"
    assert printable("a\x9bb\nc\u202ed") == "a\\x9bb\\x0ac\\u202ed"
    assert printable("line one\nline two", keep="\n") == "line one\nline two"
    assert printable("名前 ok — fine") == "名前 ok — fine"
    assert printable("a\u200bb\u2028c") == "a\\u200bb\\u2028c"
    assert printable("می\u200cخواهم") == "می\u200cخواهم"  # the zero-width non-joiner is Persian text


def test_the_cli_escapes_every_character_the_api_refuses_in_labels():
    # two lists, one check: the CLI cannot import the API's bounds (pydantic would cost every call
    # its startup), so this keeps them from drifting apart
    from wanka.cli.output import printable
    from wanka.models.bounds import _CONTROLS

    assert all(printable(chr(c)) != chr(c) for c in _CONTROLS)
    escaped = {c for c in range(0x10000) if printable(chr(c)) != chr(c)}
    assert escaped == _CONTROLS
