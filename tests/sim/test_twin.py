"""The twin drives the real core in simulated time: hand-computed runs, conservation, determinism."""

from dataclasses import replace
from pathlib import Path

import pytest

from wanka.core import POLICIES, Job, PendingIndex, RunningIndex, TaskGroup, get_policy, run_cycle
from wanka.models import load_cluster, parse_cluster
from wanka.sim.metrics import summarize
from wanka.sim.models import CheckpointModel, FailureModel, Models
from wanka.sim.replay import tenant_queues, trace_jobs
from wanka.sim.traces import read_philly
from wanka.sim.twin import SimConfig, Twin

ONE_NODE = {"name": "one", "pools": [{"name": "n", "accelerator": "h100", "nodes": 1, "cards_per_node": 8}]}


FREE_CHECKPOINTS = Models(checkpoints=CheckpointModel(write_s=0.0, restart_s=0.0))


def run(jobs, policy="fifo", cluster=None, interval=60.0, models=FREE_CHECKPOINTS):
    """One twin run; by default checkpoints cost nothing, so hand-computed times stay simple."""
    cluster = cluster or parse_cluster(ONE_NODE)
    queues = tenant_queues(cluster, [j.queue for j, _ in jobs])
    return Twin(cluster, queues, jobs, get_policy(policy), SimConfig(cycle_interval_s=interval), models).run()


def job(jid, submit, cards=8, checkpoint=None):
    return Job(
        jid, "t", "q", (TaskGroup("w", 1, cards),), submit_time=submit, checkpoint_interval_s=checkpoint
    )


def test_two_jobs_on_one_node_by_hand():
    result = run([(job("a", 0.0), 100.0), (job("b", 10.0), 50.0)], interval=1.0)
    by = {s.job.id: s for s in result.stats}
    assert (by["a"].first_start, by["a"].end) == (0.0, 100.0)
    assert (by["b"].first_start, by["b"].end) == (100.0, 150.0)  # waits for a: one 8-card node
    m = summarize(result)
    assert m["avg_jct_s"] == pytest.approx((100 + 140) / 2)
    assert m["avg_wait_s"] == pytest.approx(45.0)
    assert m["utilization"] == pytest.approx(1.0) and m["makespan_s"] == 150.0
    assert m["ettr"] == pytest.approx(1.0) and m["goodput"] == pytest.approx(1.0)


def test_a_job_that_holds_no_cards_runs_at_full_speed():
    """A CPU-only job (data preparation) holds its whole size in tasks: it is not a division by
    its 0 cards, and it runs beside an 8-card job on the one node."""
    pool = {"name": "n", "accelerator": "h100", "nodes": 1, "cards_per_node": 8}
    pool |= {"cpus": 64, "memory_gib": 512}
    cluster = parse_cluster({"name": "one", "pools": [pool]})
    cpu_only = Job("prep", "t", "q", (TaskGroup("w", 2, 0, cpus=4),), submit_time=0.0)
    result = run([(cpu_only, 100.0), (job("a", 0.0), 100.0)], cluster=cluster, interval=1.0)
    by = {s.job.id: s for s in result.stats}
    assert (by["prep"].first_start, by["prep"].end) == (0.0, 100.0)
    assert (by["a"].first_start, by["a"].end) == (0.0, 100.0)


def test_rounds_are_batched_at_most_one_per_interval():
    # rounds at 0 (a arrives), 60 (b arrived at 10: not before 0 + 60), 120 (a ended at 100)
    result = run([(job("a", 0.0), 100.0), (job("b", 10.0), 50.0)], interval=60.0)
    by = {s.job.id: s for s in result.stats}
    assert (by["b"].first_start, by["b"].end) == (120.0, 170.0)
    assert result.cycles == 3


def test_tiresias_preempts_a_long_job_which_loses_work_since_its_checkpoint():
    # a: 2,000 s on 8 cards; after 450 s it has 3,600 card-s and drops to the second LAS queue.
    # b arrives at 1,000 s and preempts it; a checkpoints every 300 s, so 100 s of work is lost
    # (a run that began at t=0 once counted as not started and lost nothing).
    result = run([(job("a", 0.0, checkpoint=300.0), 2000.0), (job("b", 1000.0), 100.0)], "tiresias")
    by = {s.job.id: s for s in result.stats}
    assert by["a"].preemptions == 1 and by["b"].first_start == 1000.0 and by["b"].end == 1100.0
    assert by["a"].end == pytest.approx(1100.0 + 1100.0)  # 1,000 s left + 100 s redone
    assert by["a"].lost_card_s == pytest.approx(800.0)
    assert by["a"].useful_card_s == pytest.approx(2000.0 * 8)


@pytest.fixture(scope="module")
def busy():
    return read_philly(Path(__file__).parent / "data" / "philly_busy_halfday.csv")


def small_cluster(nodes):
    data = {
        "name": f"philly-{nodes * 8}",
        "tiers": ["leaf"],
        "pools": [
            {"name": "gpu", "accelerator": "a100", "nodes": nodes, "cards_per_node": 8, "layout": {"leaf": 4}}
        ],
    }
    return parse_cluster(data)


@pytest.mark.parametrize("policy", ["fifo", "slurm", "tiresias", "drf", "wanka"])
@pytest.mark.parametrize("failures", ["none", "llama3x1000"])
def test_conservation_every_job_ends_once_and_useful_work_equals_the_work_asked(busy, policy, failures):
    cluster = small_cluster(16)
    jobs = trace_jobs(busy, cluster)
    models = Models()  # default checkpoint costs and topology penalty
    if failures != "none":  # Llama 3's rate x 1000, so a half-day replay sees failures
        models = Models(
            failures=FailureModel("llama3x1000", FailureModel.preset("llama3").per_card_rate * 1000)
        )
    result = run(jobs, policy, cluster, models=models)
    assert all(s.outcome == "succeeded" for s in result.stats)
    for s in result.stats:
        assert s.progress_s - s.lost_progress_s == pytest.approx(s.duration_s, rel=1e-9, abs=1e-6)
        assert s.useful_card_s >= -1e-6 and s.lost_card_s >= 0 and s.overhead_card_s >= -1e-6
        assert s.end >= s.first_start >= s.job.submit_time
    if failures != "none":
        assert result.failures and sum(s.failures for s in result.stats) > 0
    m = summarize(result)
    assert 0 < m["useful_utilization"] <= m["utilization"] <= 1.0


def test_same_input_same_metrics(busy):
    cluster = small_cluster(16)
    a = summarize(run(trace_jobs(busy, cluster), "wanka", cluster))
    b = summarize(run(trace_jobs(busy, cluster), "wanka", cluster))
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


def test_under_heavy_load_tiresias_beats_fifo_on_average_jct(busy):
    cluster = small_cluster(16)  # 128 GPUs for half of Philly's busiest day
    fifo = summarize(run(trace_jobs(busy, cluster), "fifo", cluster))
    las = summarize(run(trace_jobs(busy, cluster), "tiresias", cluster))
    assert las["avg_jct_s"] < fifo["avg_jct_s"] / 2


def test_philly_2048_preset():
    c = load_cluster("philly-2048")
    assert (c.num_nodes, c.total_cards, c.tiers) == (256, 2048, ("node", "leaf", "cluster"))


def test_a_failure_breaks_the_job_and_a_hot_spare_takes_the_failed_nodes_place():
    cluster = parse_cluster(
        {"name": "two", "pools": [{"name": "n", "accelerator": "h100", "nodes": 2, "cards_per_node": 8}]}
    )
    # failures every ~2 hours per card-hour budget: a 10-hour job on 8 cards will see some
    failures = FailureModel("often", 1.0 / (8 * 3 * 3600))
    models = Models(
        failures=FailureModel(failures.name, failures.per_card_rate, hot_spares=1),
        checkpoints=CheckpointModel(write_s=0.0, restart_s=0.0, default_interval_s=600.0),
    )
    result = run([(job("long", 0.0), 10 * 3600.0)], "fifo", cluster, interval=1.0, models=models)
    st = result.stats[0]
    assert st.outcome == "succeeded" and st.failures >= 1 and result.failures
    assert st.progress_s - st.lost_progress_s == pytest.approx(10 * 3600.0)
    assert st.lost_card_s <= st.failures * 600.0 * 8 + 1e-6  # never more than one interval lost per failure


def test_policies_compared_meet_the_identical_failure_sequence(busy):
    cluster = small_cluster(16)
    models = Models(failures=FailureModel("x", FailureModel.preset("llama3").per_card_rate * 2000))
    a = run(trace_jobs(busy, cluster), "fifo", cluster, models=models).failures
    b = run(trace_jobs(busy, cluster), "tiresias", cluster, models=models).failures
    common = min(len(a), len(b))
    assert common > 0 and a[:common] == b[:common]


class CheckedTwin(Twin):
    """Before every round, compares the running and pending indexes the twin keeps with ones built
    from scratch, and the round's decisions with those of a cycle that builds its own."""

    rounds_checked = 0

    def _decide(self, snapshot):
        kept = run_cycle(snapshot, self.policy)
        fresh = run_cycle(replace(snapshot, index=None, pending_index=None), self.policy)
        assert kept.decisions == fresh.decisions
        assert kept.reservations == fresh.reservations
        assert kept.unschedulable == fresh.unschedulable
        assert kept.order == fresh.order
        return kept

    def _round(self, now):
        fresh = RunningIndex.build(
            self.cluster, self.queues, self.running.values(), now, self.policy.default_time_limit_s
        )
        kept = self.index
        assert list(kept.entries) == list(fresh.entries) == list(self.running)
        for job_id, entry in kept.entries.items():
            other = fresh.entries[job_id]
            assert (entry.placement, entry.flavor, entry.queue, entry.end) == (
                other.placement,
                other.flavor,
                other.queue,
                other.end,
            )
        assert (kept.held, kept.cpus, kept.memory) == (fresh.held, fresh.cpus, fresh.memory)
        assert list(kept.elastic) == list(fresh.elastic)
        assert {q: c for q, c in kept.preemptible.items() if c} == fresh.preemptible
        policy = self.policy
        waiting = PendingIndex(
            self.cluster, self.queues, policy.job_order, self.pending.jobs[::-1], policy.las.thresholds
        )
        assert [j.id for j in self.pending.jobs] == [j.id for j in waiting.jobs]
        assert self.pending.rejected == waiting.rejected

        def per_queue(index: PendingIndex) -> dict[int, list[str]]:
            return {q: [j.id for j in jobs] for q, jobs in index.queue_jobs().items()}

        assert per_queue(self.pending) == per_queue(waiting)
        assert [j.id for j in self.pending.needing_at_most(8)] == [j.id for j in waiting.needing_at_most(8)]
        assert self.pending.smallest_need() == waiting.smallest_need()
        self.rounds_checked += 1
        return super()._round(now)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_the_indexes_kept_across_rounds_equal_ones_rebuilt(busy, policy):
    cluster = small_cluster(16)
    jobs = trace_jobs(busy, cluster)
    for i in range(0, len(jobs), 7):  # some elastic gangs, so resizes happen too
        j = jobs[i][0]
        j.groups = (TaskGroup("w", 4, 2, min_replicas=1),)
        j._cards = j._min_cards = -1
    models = Models(failures=FailureModel("x1000", FailureModel.preset("llama3").per_card_rate * 1000))
    queues = tenant_queues(cluster, [j.queue for j, _ in jobs])
    twin = CheckedTwin(cluster, queues, jobs, get_policy(policy), SimConfig(), models)
    result = twin.run()
    assert twin.rounds_checked > 50
    assert sum(s.preemptions + s.failures for s in result.stats) > 0
    assert all(s.outcome == "succeeded" for s in result.stats)
