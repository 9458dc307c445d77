import math
from collections import Counter

import pytest

from wanka.models import load_cluster
from wanka.sim.models import DAY, LLAMA3_CAUSES, CheckpointModel, FailureModel, Models, PerformanceModel


@pytest.mark.parametrize("preset, per_card_day", [("llama3", 419 / (16384 * 54)), ("shenzhen", 0.0003)])
def test_failures_occur_at_the_configured_rate_within_statistical_bounds(preset, per_card_day):
    cluster = load_cluster("wanka-10k")
    days = 200
    failures = FailureModel.preset(preset).sample(cluster, days * DAY, seed=7)
    expected = per_card_day * cluster.total_cards * days
    # Poisson: the count lies within 4 standard deviations of its mean
    assert abs(len(failures) - expected) < 4 * math.sqrt(expected)
    assert all(0 <= f[1] < cluster.num_nodes for f in failures)


def test_the_cause_mix_follows_the_llama3_report():
    cluster = load_cluster("wanka-10k")
    failures = FailureModel("x", 1e-5).sample(cluster, 2 * DAY, seed=3)
    counts = Counter(f[2] for f in failures)
    share = counts["faulty GPU"] / len(failures)
    assert abs(share - 148 / 419) < 0.03  # the largest cause, ~35%
    assert set(counts) <= {c[0] for c in LLAMA3_CAUSES}


def test_the_same_seed_gives_the_same_failures_and_a_stream_is_a_prefix():
    cluster = load_cluster("dev")
    model = FailureModel("x", 1e-4)
    a = model.sample(cluster, 5 * DAY, seed=1)
    assert a == model.sample(cluster, 5 * DAY, seed=1)
    assert a[:10] == model.sample(cluster, a[9][0], seed=1)
    assert a != model.sample(cluster, 5 * DAY, seed=2)


def test_young_daly_interval():
    ckpt = CheckpointModel(write_s=60.0)
    assert ckpt.interval(None, 3600.0 * 10) == pytest.approx(math.sqrt(2 * 60 * 36000))
    assert ckpt.interval(900.0, 10.0) == 900.0  # a job's own interval wins
    assert ckpt.interval(None, math.inf) == ckpt.default_interval_s
    assert ckpt.efficiency(540.0) == pytest.approx(0.9)


def test_speed_model():
    cluster = load_cluster("mixed-domestic")  # first model: ascend-910b3, 313 TFLOPS
    perf = PerformanceModel(topology_penalty=0.1)
    assert perf.speed(cluster, 313.0, 1.0, 0) == 1.0
    assert perf.speed(cluster, 626.0, 1.0, 0) == pytest.approx(2.0)  # twice the rated peak: twice as fast
    assert perf.speed(cluster, 313.0, 0.5, 2) == pytest.approx(0.5 / 1.2)
    with pytest.raises(ValueError, match="llama3"):
        FailureModel.preset("often")


def test_synthetic_job_count_target_scales_only_small_jobs():
    from wanka.sim.synthetic import synthetic_month

    cluster = load_cluster("wanka-10k")
    base = synthetic_month(cluster, days=1.0, seed=4)
    more = synthetic_month(cluster, days=1.0, seed=4, jobs=6000)
    assert abs(len(more.jobs) - 6000) < 4 * math.sqrt(6000)
    big = [j.total_cards for j, _ in more.jobs if j.total_cards >= 256]
    assert len(big) == len([j for j, _ in base.jobs if j.total_cards >= 256])  # gangs untouched


def test_overheads_off_and_the_line_that_says_so():
    assert Models().describe_overheads() == (
        "overheads: checkpoint writes 60 s each; restarts 1020 s; topology penalty 10% per extra tier"
    )
    off = Models().without_overheads()
    assert off.describe_overheads() == "overheads: none"
    assert off.overheads() == {"checkpoint_write_s": 0.0, "restart_s": 0.0, "topology_penalty": 0.0}
    assert off.checkpoints.efficiency(3600.0) == 1.0
    some = Models(checkpoints=CheckpointModel(restart_s=0.0))
    assert some.describe_overheads().endswith("per extra tier (off: restarts)")
