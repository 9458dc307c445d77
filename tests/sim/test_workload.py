from wanka.core import ClusterState
from wanka.models import load_cluster
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
