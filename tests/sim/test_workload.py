import pytest

from wanka.core import ClusterState
from wanka.models import load_cluster
from wanka.sim.synthetic import synthetic_month
from wanka.sim.workload import busy_cluster


def test_busy_snapshot_is_consistent():
    c = load_cluster("wanka-10k")
    w = busy_cluster(c, pending=1000, running=5000, seed=1)
    snap = w.snapshot
    rebuilt = ClusterState.with_placements(c, [j.placement for j in snap.running])
    assert (rebuilt.free_cards == snap.state.free_cards).all()
    assert len(snap.running) == 5000 and int(snap.state.free_cards.sum()) < 1000
    sizes = {j.total_cards for j in snap.pending}
    assert 1 in sizes and max(sizes) >= 1024
    assert busy_cluster(c, pending=50, running=10, seed=1).snapshot.pending[0].id == "p000000"


def test_a_job_count_target_with_same_work_keeps_the_offered_card_hours():
    cluster = load_cluster("wanka-10k")

    def card_hours(w):
        return sum(job.total_cards * d for job, d in w.jobs) / 3600.0

    base = synthetic_month(cluster, days=3, seed=1)
    more = synthetic_month(cluster, days=3, seed=1, jobs=60_000)
    same = synthetic_month(cluster, days=3, seed=1, jobs=60_000, same_work=True)
    assert len(same.jobs) == pytest.approx(60_000, rel=0.02) and len(base.jobs) < 10_000
    assert card_hours(same) == pytest.approx(card_hours(base), rel=0.1)
    assert card_hours(more) > 1.3 * card_hours(base)  # without it the extra jobs add their work
