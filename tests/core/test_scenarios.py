"""Every scenario file under scenarios/ — nodes, queues, jobs → expected decisions."""

from pathlib import Path

import pytest

from tests.core.scenario import run_file

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    run_file(path)


def test_every_action_and_preset_has_a_scenario() -> None:
    import yaml

    from wanka.core import POLICIES

    docs = [yaml.safe_load(p.read_text()) for p in SCENARIOS]
    assert set().union(*(d.get("policies") or [d.get("policy", "wanka")] for d in docs)) >= set(POLICIES)
    expects = set().union(*(d.get("expect", {}).keys() for d in docs))
    assert {"start", "stop", "resize", "reservations", "unschedulable"} <= expects
