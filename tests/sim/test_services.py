"""Services in the twin: replicas follow a request curve under the control plane's autoscaler,
minimum replicas within quota are never preempted, extras are, and what serving holds shows in the
jobs' numbers."""

import math

import pytest

from wanka.core import FlavorQuota, Job, QueueNode, QueueTree, TaskGroup, get_policy
from wanka.core.autoscale import Metric, ScalingPolicy
from wanka.models import parse_cluster
from wanka.sim.metrics import summarize
from wanka.sim.models import CheckpointModel, FailureModel, Models, PerformanceModel
from wanka.sim.services import DiurnalLoad, Fleet, ServiceModel, check_services, synthetic_services
from wanka.sim.twin import SimConfig, Twin

HOUR, DAY = 3600.0, 86400.0
NO_OVERHEADS = Models(
    checkpoints=CheckpointModel(write_s=0.0, restart_s=0.0),
    performance=PerformanceModel(topology_penalty=0.0),
)


def cluster(nodes: int = 2):
    spec = {"name": "c", "pools": [{"name": "n", "accelerator": "h100", "nodes": nodes, "cards_per_node": 8}]}
    return parse_cluster(spec)


def queues(c, nominal: dict[str, int]) -> QueueTree:
    """Leaf queues with these nominal quotas (cards) under a root holding the cluster."""
    nodes = [QueueNode("root", None, {"h100": FlavorQuota(c.total_cards)})]
    nodes += [QueueNode(q, "root", {"h100": FlavorQuota(n)}) for q, n in nominal.items()]
    return QueueTree(nodes, ["h100"])


def job(jid: str, queue: str, cards: int, submit: float = 0.0, priority_class: str = "normal") -> Job:
    from wanka.core import PRIORITY_CLASSES

    pc = PRIORITY_CLASSES[priority_class]
    groups = (TaskGroup("w", 1, cards),) if cards <= 8 else (TaskGroup("w", cards // 8, 8),)
    return Job(
        jid,
        queue,
        queue,
        groups,
        priority=pc.value,
        priority_class=pc.name,
        preemptible=pc.preemptible,
        submit_time=submit,
    )


def service(name="chat", queue="a", cards=1, lo=1, hi=8, target=10.0, peak=50.0, trough=5.0, **kw):
    policy = ScalingPolicy(
        Metric.RPS, target, lo, hi, up_delay_s=kw.pop("up", 60.0), down_delay_s=kw.pop("down", 600.0)
    )
    load = DiurnalLoad(peak, trough, kw.pop("peak_hour", 14.0), kw.pop("weekend", 1.0), kw.pop("noise", 0.0))
    return ServiceModel(name, queue, policy, load, cards, startup_s=kw.pop("startup_s", 0.0), **kw)


def run(c, tree, jobs, services, policy="wanka", models=NO_OVERHEADS, seed=0, serving_s=2 * DAY):
    config = SimConfig(seed=seed, services_until_s=serving_s)
    return Twin(c, tree, jobs, get_policy(policy), config, models, services=services).run()


def replicas(result):
    return [s for s in result.stats if s.service]


def test_replicas_follow_the_daily_curve_between_min_and_max():
    # 50 requests/s at 14:00, 5 at 02:00, 10 per replica: 5 replicas at the peak, 1 at the low
    c = cluster()
    r = run(c, queues(c, {"a": 8, "b": 8}), [(job("long", "b", 1), 2 * DAY)], [service()])
    at = {s.time: s.serving_cards for s in r.samples}
    assert at[14 * HOUR] == 5 and at[DAY + 14 * HOUR] == 5
    assert at[2 * HOUR] == 1 and at[DAY + 2 * HOUR] == 1
    assert min(v for t, v in at.items() if t > 0) == 1 and max(at.values()) == 5  # t=0: before any
    m = summarize(r)
    assert m["services"] == 1 and m["demand_covered"] > 0.99  # room enough, no start-up time
    assert m["scale_events"] >= 8  # up and down, four steps each way, every day
    assert m["jobs"] == 1 and m["avg_jct_s"] == pytest.approx(2 * DAY)  # the job is not slowed


def test_the_count_is_the_autoscalers_own_rise_after_the_up_delay_fall_after_the_down_delay():
    # a step-shaped day is not possible with a cosine; a peak of 100 and trough of 0 with a 2 h up
    # delay: the count rises two hours after the curve asks for more, never earlier
    c = cluster()
    fast = run(
        c, queues(c, {"a": 16}), [(job("j", "a", 1), DAY)], [service(lo=0, hi=10, peak=100, trough=0, up=60)]
    )
    slow = run(
        c,
        queues(c, {"a": 16}),
        [(job("j", "a", 1), DAY)],
        [service(lo=0, hi=10, peak=100, trough=0, up=7200)],
    )
    f = {s.time: s.serving_cards for s in fast.samples}
    s = {s.time: s.serving_cards for s in slow.samples}
    assert all(s[t] <= f[t] for t in f if t <= 12 * HOUR)  # rising: the slow one lags
    assert any(s[t] < f[t] for t in f if t <= 12 * HOUR)
    assert f[14 * HOUR] == s[14 * HOUR] == 10


def test_minimum_replicas_within_quota_are_never_preempted_the_others_are():
    # queue a's nominal quota holds 2 of its 3 two-card minimum replicas
    c = cluster()
    svc = service(cards=2, lo=3, hi=3, peak=1, trough=1)
    r = run(c, queues(c, {"a": 4, "b": 12}), [(job("j", "b", 1), HOUR)], [svc])
    flags = sorted(s.job.preemptible for s in replicas(r))
    assert flags == [False, False, True]


def test_a_tenant_reclaiming_its_quota_preempts_extra_replicas_never_guaranteed_ones():
    # a's service grows to 12 one-card replicas at its peak, borrowing b's idle quota; b's 8-card
    # job arrives at the peak and takes its quota back from the preemptible extras
    c = cluster()
    svc = service(lo=2, hi=12, target=10, peak=120, trough=10, priority_class="normal")
    r = run(c, queues(c, {"a": 8, "b": 8}), [(job("b-train", "b", 8, submit=14 * HOUR), 2 * HOUR)], [svc])
    m = summarize(r)
    preempted = [s for s in replicas(r) if s.preemptions]
    assert preempted and m["replica_preemptions"] == sum(s.preemptions for s in preempted)
    assert all(s.job.preemptible for s in preempted)  # the two guaranteed ones kept running
    train = next(s for s in r.stats if s.job.id == "b-train")
    assert train.first_start - train.job.submit_time <= 120.0  # reclaimed at once
    assert m["demand_covered"] < 1.0  # while b trains, a's peak is served by fewer replicas


def test_cards_held_by_minimum_replicas_delay_training_exactly():
    # four 8-card, one-hour jobs on 16 cards: two at a time, JCT 1 h and 2 h. A service holding
    # 8 cards of never-preempted replicas leaves room for one at a time: 1, 2, 3, 4 h. (The
    # service runs before the jobs come, as a service does.)
    c = cluster()
    jobs = lambda: [(job(f"j{i}", "b", 8, submit=60.0), HOUR) for i in range(4)]  # noqa: E731
    tree = queues(c, {"a": 8, "b": 8})
    svc = service(cards=2, lo=4, hi=4, peak=1, trough=1, priority_class="high")
    without = summarize(run(c, tree, jobs(), [], policy="fifo"))
    with_ = summarize(run(c, tree, jobs(), [svc], policy="fifo", serving_s=4 * HOUR + 60))
    assert without["avg_jct_s"] == pytest.approx(1.5 * HOUR)
    assert with_["avg_jct_s"] == pytest.approx(2.5 * HOUR)
    assert with_["avg_guaranteed_cards"] == pytest.approx(8.0)
    # the replicas' cards count, from t=0 (the jobs' from t=60)
    assert with_["utilization"] == pytest.approx((8 * 14460 + 4 * 8 * 3600) / (16 * 14460))


def test_a_replica_too_big_for_any_node_stops_its_service_not_the_run():
    c = cluster()
    r = run(
        c, queues(c, {"a": 16}), [(job("j", "a", 1), HOUR)], [service(cards=16, lo=1, hi=1, peak=1, trough=1)]
    )
    (stats,) = r.services
    assert stats.unschedulable and stats.covered == 0 and stats.requests > 0
    assert summarize(r)["jobs"] == 1


def test_start_up_time_holds_cards_before_a_replica_serves():
    c = cluster()
    tree = queues(c, {"a": 16})
    quick = summarize(run(c, tree, [(job("j", "a", 1), DAY)], [service(startup_s=0.0)]))
    slow = summarize(run(c, tree, [(job("j", "a", 1), DAY)], [service(startup_s=1800.0)]))
    assert slow["demand_covered"] < quick["demand_covered"]


def test_a_month_with_services_and_failures_conserves_every_jobs_work_and_repeats_exactly():
    c = parse_cluster(
        {
            "name": "m",
            "tiers": ["leaf"],
            "pools": [
                {"name": "g", "accelerator": "a100", "nodes": 16, "cards_per_node": 8, "layout": {"leaf": 4}}
            ],
        }
    )
    from wanka.sim.synthetic import contract_queues, synthetic_month

    tree = contract_queues(c)
    models = Models(failures=FailureModel.preset("llama3"))

    def once():
        work = synthetic_month(c, days=5, seed=3)
        svcs = synthetic_services(tree, 8, c.total_cards * 40, seed=3)[:12]
        return Twin(c, tree, work.jobs, get_policy("wanka"), SimConfig(seed=3), models, services=svcs).run()

    a, b = once(), once()
    ma, mb = summarize(a), summarize(b)
    assert {k: v for k, v in ma.items() if k != "wall_s"} == {k: v for k, v in mb.items() if k != "wall_s"}
    assert ma["services"] == 12 and ma["replica_starts"] > 0
    for s in a.stats:
        if s.service:
            assert s.lost_card_s == 0 and s.allocated_card_s >= 0
            continue
        if s.outcome == "succeeded":
            assert s.progress_s - s.lost_progress_s == pytest.approx(s.duration_s, rel=1e-9, abs=1e-6)
    bound = sum(m.model.policy.max * m.model.cards for m in a.services)
    assert all(x.serving_cards <= bound and x.guaranteed_cards <= x.serving_cards for x in a.samples)


def test_noise_and_weekends_shape_the_load_deterministically():
    c = cluster()
    tree = queues(c, {"a": 16})
    svc = service(weekend=0.5, noise=0.3)
    f1, f2 = Fleet([svc], tree, seed=1, every_s=60), Fleet([svc], tree, seed=1, every_s=60)
    monday, saturday = 14 * HOUR, 5 * DAY + 14 * HOUR
    assert f1.rps(monday)[0] == f2.rps(monday)[0]  # the same seed, the same hour: the same load
    quiet = Fleet([service(weekend=0.5)], tree, seed=1, every_s=60)
    assert quiet.rps(saturday)[0] == pytest.approx(0.5 * quiet.rps(monday)[0])
    assert quiet.rps(2 * HOUR)[0] == pytest.approx(5.0) and quiet.rps(14 * HOUR)[0] == pytest.approx(50.0)
    draws = [f1.rps(h * HOUR + 14 * HOUR)[0] for h in range(0, 24 * 7 * 4, 24)]
    assert len(set(draws)) > 1 and math.isfinite(sum(draws))


def test_services_name_a_leaf_queue_of_the_workload():
    c = cluster()
    tree = queues(c, {"a": 8})
    with pytest.raises(ValueError, match="no leaf queue 'nope'; its queues: a"):
        check_services([service(queue="nope")], tree)
    with pytest.raises(ValueError, match="no leaf queue 'root'"):
        check_services([service(queue="root")], tree)
    with pytest.raises(ValueError, match="share a name"):
        check_services([service(), service()], tree)


def test_synthetic_services_scale_with_the_cluster_and_follow_nominal_shares():
    c = cluster(16)
    tree = queues(c, {"big": 96, "small": 32})
    svcs = synthetic_services(tree, 8, 10_000, seed=0)
    assert len(svcs) == 60
    big = sum(1 for s in svcs if s.queue == "big")
    assert 30 < big < 60  # three times the share, drawn at random
    assert all(1 <= s.policy.min <= s.policy.max <= 64 and s.cards in (1, 2, 4, 8) for s in svcs)
    assert svcs == synthetic_services(tree, 8, 10_000, seed=0)


def test_a_service_with_min_zero_sleeps_through_the_quiet_hours_and_wakes():
    # 5 requests/s at 14:00, none at 02:00; a step expecting under one request sees none
    c = cluster()
    svc = service(lo=0, hi=5, target=1.0, peak=5.0, trough=0.0, down=600.0)
    r = run(c, queues(c, {"a": 16}), [(job("j", "a", 1), 2 * DAY)], [svc])
    at = {s.time: s.serving_cards for s in r.samples}
    assert at[2 * HOUR] == 0 and at[DAY + 2 * HOUR] == 0
    assert at[14 * HOUR] == 5 and at[4 * HOUR] >= 1


def test_services_serve_their_period_even_without_jobs_and_every_policy_meets_the_same_demand():
    c = cluster()
    tree = queues(c, {"a": 16})
    svc = service(lo=1, hi=4, peak=30, trough=5, noise=0.2)
    runs = {
        p: Twin(
            c, tree, [], get_policy(p), SimConfig(services_until_s=2 * DAY), NO_OVERHEADS, services=[svc]
        ).run()
        for p in ("fifo", "wanka")
    }
    for r in runs.values():
        m = summarize(r)
        assert r.serving_s == 2 * DAY and m["serving_s"] == 2 * DAY and m["jobs"] == 0
        assert m["makespan_s"] == 2 * DAY and 0 < m["utilization"] <= 1
        assert m["avg_serving_cards"] == pytest.approx(m["serving_card_hours"] * HOUR / (2 * DAY))
        assert all(s.end is not None and s.end <= 2 * DAY for s in replicas(r))  # all stopped at the end
    a, b = (summarize(r)["requests"] for r in runs.values())
    assert a == b > 0  # the load does not depend on the policy


def test_a_replica_that_never_starts_counts_its_wait_until_it_was_stopped():
    # the queue's only node is taken by a never-preempted job for the whole period
    c = cluster(1)
    tree = queues(c, {"a": 8})
    blocker = job("blocker", "a", 8, priority_class="high")
    blocker.preemptible = False
    r = Twin(
        c,
        tree,
        [(blocker, DAY)],
        get_policy("wanka"),  # the high-priority job goes first
        SimConfig(services_until_s=DAY),
        NO_OVERHEADS,
        services=[service(lo=1, hi=1, peak=1, trough=1, priority_class="low")],
    ).run()
    m = summarize(r)
    assert m["replica_starts"] == 0 and m["demand_covered"] == 0
    assert m["p90_replica_wait_s"] == pytest.approx(DAY)  # submitted at 0, stopped with the period


def test_changes_against_nothing_are_not_shown_as_no_change():
    from wanka.sim.metrics import change_text

    assert change_text(10, 12) == "+20.0%" and change_text(0, 0) == "+0.0%" and change_text(0, 5) == "from 0"


def test_a_job_that_cannot_start_beside_a_replica_starts_when_the_services_period_ends():
    # one node; a never-preempted one-card replica leaves 7 cards; the 8-card job waits for the
    # period's end, then runs: the run ends (it once spun for ever on the autoscaler's ticks)
    c = cluster(1)
    tree = queues(c, {"a": 8})
    svc = service(lo=1, hi=1, peak=1, trough=1, priority_class="high")
    r = run(c, tree, [(job("big", "a", 8, submit=HOUR), HOUR)], [svc], policy="fifo", serving_s=DAY)
    big = next(s for s in r.stats if s.job.id == "big")
    assert big.first_start == DAY and big.end == DAY + HOUR
    assert summarize(r)["utilization"] <= 1.0


def test_utilization_stays_within_the_cluster_when_the_last_job_is_rejected():
    c = cluster(1)
    tree = queues(c, {"a": 8})
    jobs = [(job("ok", "a", 1), 600.0), (job("too-big", "a", 64, submit=DAY), HOUR)]
    r = run(c, tree, jobs, [service(lo=1, hi=1, peak=1, trough=1)], policy="fifo", serving_s=DAY)
    m = summarize(r)
    assert m["jobs"] == 1 and m["jobs_unschedulable"] == 1
    assert 0 < m["utilization"] <= 1.0 and m["avg_serving_cards"] <= c.total_cards


@pytest.mark.parametrize("policy", ["fifo", "tiresias", "wanka"])
def test_a_replica_without_cards_runs_under_every_order(policy):
    c = cluster()
    svc = service(cards=0, lo=1, hi=3, peak=20, trough=5)
    r = run(c, queues(c, {"a": 16}), [(job("j", "a", 1), DAY)], [svc], policy=policy)
    m = summarize(r)
    assert m["replica_starts"] >= 1 and m["serving_card_hours"] == 0 and m["demand_covered"] > 0.9


def test_replica_ids_of_two_services_never_collide_nor_take_a_jobs_id():
    c = cluster()
    tree = queues(c, {"ml": 8, "ml-prod": 8})
    svcs = [service("prod-chat", "ml", peak=1, trough=1), service("chat", "ml-prod", peak=1, trough=1)]
    taken = job("ml/prod-chat/replica-1", "ml", 1)  # a trace may name a job anything
    r = run(c, tree, [(taken, HOUR)], svcs)
    ids = [s.job.id for s in r.stats]
    assert len(ids) == len(set(ids)) and len(replicas(r)) == 2


def test_scaling_down_keeps_the_guaranteed_replicas_even_while_one_waits():
    # min 2 within quota, peak 4: after the peak the two extras go, not a waiting guaranteed one
    c = cluster()
    svc = service(lo=2, hi=4, target=10, peak=40, trough=5)
    r = run(c, queues(c, {"a": 8, "b": 8}), [(job("j", "b", 1), DAY)], [svc], serving_s=DAY)
    at_end = [s for s in replicas(r) if s.end == DAY]  # those the period's end stopped
    assert sorted(s.job.preemptible for s in at_end) == [False, False]
