"""Spec files: YAML read strictly, every problem one clear error naming where it is."""

import subprocess
import sys

import pytest

from wanka.models.errors import MAX_YAML_BYTES, SpecError, load_yaml


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("name: a\ntask_groups: [{cards: 1}]\nname: b\n")
    with pytest.raises(SpecError, match=r"line 3, column 1: .*'name' given twice \(first on line 1\)"):
        load_yaml(f)
    f.write_text("task_groups:\n  - {cards: 1, cards: 2}\n")  # nested mappings too
    with pytest.raises(SpecError, match="'cards' given twice"):
        load_yaml(f)


def test_billion_laughs_is_refused_at_once(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    f = tmp_path / "laughs.yaml"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match=r"line 2, .*aliases \(\*a\) are not accepted"):
        load_yaml(f)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_bytes(b"name: ok\ncommand: [caf\xe9]\n")
    with pytest.raises(SpecError, match="line 2: not UTF-8 text"):
        load_yaml(f)


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_bytes(b"# " + b"x" * MAX_YAML_BYTES + b"\n")
    with pytest.raises(SpecError, match="larger than"):
        load_yaml(f)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: \xff\xfe\n", "not UTF-8"),
        (b"a: &a [1]\nb: *a\n", "aliases"),
        (b"name: x\nname: y\n", "given twice"),
        (b"- just\n- a list\n", "expected a mapping"),
    ],
)
def test_the_cli_says_one_clear_error_for_each(tmp_path, content, message):
    f = tmp_path / "job.yaml"
    f.write_bytes(content)
    r = subprocess.run(
        [sys.executable, "-m", "wanka.cli.main", "submit", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
