"""Invariants of the scheduling cycle over random clusters, quota trees and workloads."""

from __future__ import annotations

import copy
import itertools
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanka.core import (
    POLICIES,
    PRIORITY_CLASSES,
    Cluster,
    ClusterState,
    FlavorQuota,
    Job,
    JobKind,
    NodeRecord,
    NodeState,
    QueueNode,
    QueueTree,
    QuotaUsage,
    Snapshot,
    Start,
    Stop,
    TaskGroup,
    get_policy,
    run_cycle,
)
from wanka.core.placement import FreeArrays, GroupRequest, place_gang
from wanka.core.quota import UNLIMITED, add_usage, available
from wanka.models.hardware import default_catalog

MODELS = ["h100", "ascend-910b3", "mlu590"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clusters(draw) -> Cluster:
    catalog = default_catalog()
    pools = draw(st.integers(1, 2))
    records = []
    for p in range(pools):
        acc = catalog.get(MODELS[p])
        nodes = draw(st.integers(1, 8))
        cards = draw(st.sampled_from([4, 8]))
        per_leaf = draw(st.integers(1, 4))
        for i in range(nodes):
            state = draw(st.sampled_from([NodeState.UP] * 6 + [NodeState.DRAINING, NodeState.DOWN]))
            records.append(
                NodeRecord(
                    f"p{p}-{i}",
                    acc,
                    cards,
                    (f"p{p}-leaf{i // per_leaf}",),
                    cpus=64,
                    memory_gib=512,
                    pool=f"p{p}",
                    state=state,
                )
            )
    return Cluster("random", ("node", "leaf", "cluster"), records)


@st.composite
def queue_trees(draw, cluster: Cluster) -> QueueTree:
    flavors = [m.id for m in cluster.models]
    capacity = cluster.cards_by_model(states=tuple(NodeState))
    nodes = [
        QueueNode("cluster", None, {f: FlavorQuota(int(c)) for f, c in zip(flavors, capacity, strict=True)})
    ]
    for o in range(draw(st.integers(1, 3))):
        org_q, leaves = {}, []
        leaf_count = draw(st.integers(1, 2))
        leaf_quotas = [{} for _ in range(leaf_count)]
        for f, cap in zip(flavors, capacity, strict=True):
            org_nominal = draw(st.integers(0, int(cap)))
            remaining = org_nominal
            for lq in leaf_quotas:
                n = draw(st.integers(0, remaining))
                remaining -= n
                lq[f] = _quota(draw, n)
            org_q[f] = _quota(draw, org_nominal)
        nodes.append(QueueNode(f"org{o}", "cluster", org_q, weight=draw(st.sampled_from([1.0, 2.0]))))
        for i, lq in enumerate(leaf_quotas):
            leaves.append(QueueNode(f"org{o}-q{i}", f"org{o}", lq))
        nodes.extend(leaves)
    return QueueTree(nodes, flavors)


def _quota(draw, nominal: int) -> FlavorQuota:
    borrow = draw(st.one_of(st.none(), st.integers(0, 16)))
    lend = draw(st.one_of(st.none(), st.integers(0, nominal)))
    return FlavorQuota(nominal, borrow, lend)


@st.composite
def jobs(draw, tree: QueueTree, prefix: str, now: float) -> list[Job]:
    leaves = [n for n in tree.names if tree.is_leaf(n)]
    out = []
    for i in range(draw(st.integers(0, 12))):
        cards = draw(st.sampled_from([0, 1, 2, 4, 8]))  # 0: a CPU-only task (data loaders)
        replicas = draw(st.integers(1, 4))
        elastic = draw(st.booleans())
        accept = draw(st.sampled_from([(), (MODELS[0],), (MODELS[1],), ("nvidia", "huawei")]))
        pc = PRIORITY_CLASSES[draw(st.sampled_from(list(PRIORITY_CLASSES)))]
        kind = draw(st.sampled_from([JobKind.TRAINING, JobKind.TRAINING, JobKind.INFERENCE]))
        out.append(
            Job(
                id=f"{prefix}{i}",
                tenant="t",
                queue=draw(st.sampled_from(leaves)),
                groups=(
                    TaskGroup(
                        "w",
                        replicas,
                        cards,
                        accept,
                        # 40 of a node's 64 CPUs: such tasks cannot share a node
                        cpus=draw(st.sampled_from([4, 40] if cards == 0 else [0, 4, 4, 40])),
                        memory_gib=0,
                        min_replicas=1 if elastic else None,
                        tasks_per_node=draw(st.sampled_from([None, None, 1, 2])),
                    ),
                    # now and then a gang of two groups (a master beside its workers)
                    *draw(
                        st.sampled_from(
                            [
                                (),
                                (),
                                (),
                                (TaskGroup("m", 1, draw(st.sampled_from([1, 2, 4])), accept, cpus=4),),
                            ]
                        )
                    ),
                ),
                priority=pc.value,
                priority_class=pc.name,
                kind=kind,
                time_limit_s=draw(st.one_of(st.none(), st.floats(60, 10_000))),
                preemptible=pc.preemptible,
                checkpoint_interval_s=draw(st.one_of(st.none(), st.just(300.0))),
                submit_time=now - draw(st.floats(0, 1000)),
                attained_service=draw(st.sampled_from([0.0, 1e6])),
            )
        )
    return out


def apply(snapshot: Snapshot, result) -> tuple[ClusterState, list[Job], list[Job]]:
    """Carry the decisions out the way the twin or the server would: stops first, then starts."""
    state = snapshot.state.copy()
    running = {j.id: j for j in snapshot.running}
    pending = {j.id: j for j in snapshot.pending}
    for d in result.decisions:
        if isinstance(d, Stop):
            job = running.pop(d.job_id)
            state.release(job.placement)
            job.placement = None
            job.start_time = None
            pending[job.id] = job
    for d in result.decisions:
        if isinstance(d, Start):
            job = pending.pop(d.job_id)
            state.allocate(d.placement)  # raises if any card is already taken
            job.placement = d.placement
            job.start_time = snapshot.now
            job.preemptible_by = d.preemptible_by
            running[job.id] = job
        elif not isinstance(d, Stop):  # Resize
            job = running[d.job_id]
            state.release(job.placement)
            state.allocate(d.placement)
            job.placement = d.placement
    return state, list(pending.values()), list(running.values())


def check_invariants(snapshot: Snapshot, result, state: ClusterState, running: list[Job]) -> None:
    cluster, tree = snapshot.cluster, snapshot.queues
    # cards: the masks agree with the counts, and nobody holds a card twice (allocate would have raised)
    for n in range(cluster.num_nodes):
        assert state.free_mask[n].bit_count() == state.free_cards[n] >= 0
    jobs_by_id = {j.id: j for j in [*snapshot.pending, *snapshot.running]}
    started = {d.job_id for d in result.starts}
    assert not started & {r.job_id for r in result.reservations}, "a job started and still reserved for"
    for d in [*result.starts, *result.resizes]:  # a job grown or shrunk keeps the rules it started by
        job = jobs_by_id[d.job_id]
        model = cluster.model_index[d.placement.model]
        for spec, g in zip(job.groups, d.placement.groups, strict=True):
            assert spec.gang_min <= g.replicas <= spec.replicas, (
                "gang is all-or-nothing (down to its minimum)"
            )
            assert g.cards_per_task == spec.cards
            assert all(m.bit_count() == spec.cards for m in g.masks)
            if spec.tasks_per_node:
                assert max(Counter(g.nodes).values()) <= spec.tasks_per_node, "tasks_per_node exceeded"
            if job.kind is JobKind.INFERENCE:
                assert len(set(g.nodes)) == len(g.nodes), f"{job.id}: replicas of a group share a node"
            for node in g.nodes:
                assert cluster.node_state[node] == NodeState.UP, "new work only on UP nodes"
                assert cluster.node_model[node] == model
        if job.groups[0].accelerators:
            acc = cluster.models[model]
            assert any(a in (acc.id, acc.vendor) for a in job.groups[0].accelerators)
    # quotas: no subtree above nominal + borrowing limit; no node lends more than it may
    usage = QuotaUsage(tree)
    for job in running:
        add_usage(
            usage, tree.index[job.queue], tree.flavor_index[job.placement.model], job.placement.total_cards
        )
    for i, name in enumerate(tree.names):
        for k in range(len(tree.flavors)):
            limit = tree.borrowing_limit[i][k]
            if limit < UNLIMITED:
                assert usage.total[i][k] <= tree.nominal[i][k] + limit, (
                    f"{name} above nominal + borrowing limit"
                )
            # no over-admission anywhere (Kueue: a negative `available` means over-admission): every
            # node's guaranteed part stayed its own, and no pool lent more than its members' lending limits
            assert available(usage, i, k) >= 0, f"{name}: more lent than lending limits allow"


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@SETTINGS
def test_cycles_keep_every_invariant(data, policy: str) -> None:
    cluster = data.draw(clusters())
    tree = data.draw(queue_trees(cluster))
    state, pending, running = ClusterState.empty(cluster), [], []
    now = 1000.0
    for step in range(3):
        pending = pending + data.draw(jobs(tree, f"s{step}-", now))
        snapshot = Snapshot(now, cluster, state, tree, pending, running)
        before = (
            state.free_cards.copy(),
            list(state.free_mask),
            copy.deepcopy([j.placement for j in running]),
        )
        result = run_cycle(snapshot, get_policy(policy))
        # the core never mutates its snapshot
        assert np.array_equal(before[0], state.free_cards) and before[1] == state.free_mask
        assert before[2] == [j.placement for j in running]
        # same input, same decisions
        assert run_cycle(snapshot, get_policy(policy)).decisions == result.decisions
        state, pending, running = apply(snapshot, result)
        check_invariants(snapshot, result, state, running)
        # unschedulable jobs are dropped by the caller, as the server would reject them
        pending = [j for j in pending if j.id not in result.unschedulable]
        now += 600.0


@given(data=st.data())
@SETTINGS
def test_queue_under_nominal_gets_its_cards_back_within_one_cycle(data) -> None:
    """Owner A lends everything; borrower B fills the cluster with preemptible jobs; A submits work
    that fits its nominal quota: after one cycle A's job runs. At every level of the tree (issue 14,
    item 3): A's work may come from a team queue whose own nominal is smaller (the rest is A's pool
    its queues share), and B's jobs may sit in team queues of their own."""
    catalog = default_catalog()
    nodes = data.draw(st.integers(2, 6))
    cluster = Cluster(
        "c",
        ("node", "leaf", "cluster"),
        [NodeRecord(f"n{i}", catalog.get("h100"), 8, (f"leaf{i // 2}",)) for i in range(nodes)],
    )
    total = nodes * 8
    a_nominal = data.draw(st.integers(8, total - 8))
    queues = [
        QueueNode("cluster", None, {"h100": FlavorQuota(total)}),
        QueueNode("a", "cluster", {"h100": FlavorQuota(a_nominal)}),
        QueueNode("b", "cluster", {"h100": FlavorQuota(total - a_nominal)}),
    ]
    a_queue = "a"
    if data.draw(st.booleans()):  # A's work comes from a team queue with less nominal of its own
        queues.append(QueueNode("a-team", "a", {"h100": FlavorQuota(data.draw(st.integers(0, a_nominal)))}))
        a_queue = "a-team"
    b_queues = ["b"]
    if data.draw(st.booleans()):  # B's borrowers sit in team queues of B
        split = data.draw(st.integers(0, total - a_nominal))
        queues += [
            QueueNode("b-x", "b", {"h100": FlavorQuota(split)}),
            QueueNode("b-y", "b", {"h100": FlavorQuota(0)}),
        ]
        b_queues = ["b-x", "b-y"]
    tree = QueueTree(queues, ["h100"])
    b_cards = data.draw(st.sampled_from([1, 2, 4, 8]))
    b_jobs = [
        Job(
            f"b{i}",
            "tb",
            b_queues[i % len(b_queues)],
            (TaskGroup("w", 1, b_cards),),
            priority=PRIORITY_CLASSES["low"].value,
            submit_time=0.0,
        )
        for i in range(total // b_cards)
    ]
    snap = Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, b_jobs, [])
    state, _, running = apply(snap, run_cycle(snap, get_policy("wanka")))
    assert sum(j.placement.total_cards for j in running) == total  # B borrowed the whole cluster
    for j in running:
        j.last_checkpoint_time = data.draw(st.floats(0, 50))
    a_cards = data.draw(st.sampled_from([c for c in (1, 2, 4, 8, 16) if c <= a_nominal]))
    replicas, per_task = (a_cards // 8, 8) if a_cards > 8 else (1, a_cards)
    a_job = Job("a-job", "ta", a_queue, (TaskGroup("w", replicas, per_task),), submit_time=90.0)
    snap2 = Snapshot(100.0, cluster, state, tree, [a_job], running)
    result = run_cycle(snap2, get_policy("wanka"))
    if not _fits_without_undercutting(tree, running, replicas, per_task, nodes):
        assert not result.stops, "nobody is reclaimed when the owner's job cannot start that way"
        return  # B's team queue within its own nominal holds what the job would need
    assert [d.job_id for d in result.starts] == ["a-job"]
    assert all(d.reason.value == "reclaimed" for d in result.stops)
    freed = sum(j.placement.total_cards for j in running if j.id in {d.job_id for d in result.stops})
    assert freed < a_cards + 8, (
        "no more borrowed work is evicted than the owner needs (plus one node's slack)"
    )


def _fits_without_undercutting(
    tree: QueueTree, running: list[Job], replicas: int, per_task: int, nodes: int
) -> bool:
    """Could ``replicas`` tasks of ``per_task`` cards be freed, on as many nodes, by stopping only
    jobs whose every queue up to B still borrows when each is stopped? The borrowers' jobs are all
    one size; on each node the cheapest are those of a queue with no nominal of its own."""
    held: dict[str, int] = {}
    for j in running:
        held[j.queue] = held.get(j.queue, 0) + j.placement.total_cards
    budget = {q: h - tree.nominal[tree.index[q]][0] for q, h in held.items()}
    budget_b = sum(held.values()) - tree.nominal[tree.index["b"]][0]
    size = running[0].placement.total_cards
    on: dict[int, list[str]] = {}
    for j in running:
        on.setdefault(j.placement.groups[0].nodes[0], []).append(j.queue)
    for chosen in itertools.combinations(range(nodes), replicas):
        take = dict.fromkeys(budget, 0)
        for n in chosen:
            queues = sorted(on.get(n, []), key=lambda q: tree.nominal[tree.index[q]][0])
            for q in queues[: -(-per_task // size)]:  # enough of them to free per_task cards
                take[q] += size
        # each queue, and B, gives victims only while it still borrows: the last may take it
        # below its nominal by at most its own size (Kueue's rule, reclaim's fallback)
        if (
            all(t == 0 or t - size < budget[q] for q, t in take.items())
            and sum(take.values()) - size < budget_b
        ):
            return True
    return False


@st.composite
def mixed_nodes(draw) -> Cluster:
    """One model, nodes of differing cards, CPUs and memory, all up."""
    acc = default_catalog().get("h100")
    records = [
        NodeRecord(
            f"n{i}",
            acc,
            draw(st.sampled_from([2, 4, 8])),
            (f"leaf{i // 2}",),
            cpus=draw(st.sampled_from([16, 32, 64])),
            memory_gib=draw(st.sampled_from([64, 256, 512])),
            pool="p",
        )
        for i in range(draw(st.integers(1, 6)))
    ]
    return Cluster("mixed", ("node", "leaf", "cluster"), records)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster=mixed_nodes(),
    replicas=st.integers(1, 12),
    cards=st.integers(0, 8),
    cpus=st.sampled_from([0, 8, 24, 48, 96]),
    memory=st.sampled_from([0, 32, 200, 600]),
)
def test_a_job_judged_able_to_run_starts_on_an_empty_cluster_and_one_judged_never_does_not(
    cluster, replicas, cards, cpus, memory
):
    """Issue 14, item 8's kind: "never fits" is judged on every resource a task asks for, so the
    verdict agrees with what placement does on the empty cluster (the whole cluster a queue's)."""
    from wanka.core import check_feasibility

    tree = QueueTree.flat(["h100"], {"h100": int(cluster.node_cards.sum())}, ["q"])
    job = Job("j", tenant="q", queue="q", groups=(TaskGroup("worker", replicas, cards, (), cpus, memory),))
    if cards == 0 and cpus == 0 and memory == 0:
        return  # asks for nothing a node counts
    verdict = check_feasibility(cluster, tree, job)
    result = run_cycle(
        Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, [job], []), get_policy("fifo")
    )
    started = [d.job_id for d in result.starts]
    assert (started == ["j"]) == verdict.ok, (verdict.reason, result.unschedulable)
    if not verdict.ok and job.min_cards <= verdict.largest_cards:  # refused for more than its cards:
        assert "cards in all" not in verdict.reason, verdict.reason  # a card count is no help
    elif not verdict.ok:
        assert f"largest request that could fit: {verdict.largest_cards} cards in all" in verdict.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster=mixed_nodes(),
    groups=st.lists(
        st.tuples(
            st.one_of(st.integers(1, 6), st.integers(17, 40)),  # replicas (past the search's 32 tasks)
            st.integers(0, 8),  # cards
            st.sampled_from([0, 8, 24, 40]),  # cpus
            st.sampled_from([0, 32, 200]),  # memory
            st.sampled_from([None, None, 1, 2]),  # tasks_per_node
        ),
        min_size=2,
        max_size=3,
    ),
    kind=st.sampled_from([JobKind.TRAINING, JobKind.INFERENCE]),
)
def test_a_gang_of_several_groups_is_refused_exactly_when_it_cannot_be_placed_on_the_empty_cluster(
    cluster, groups, kind
):
    """Issue 14, item 8, for gangs whose groups share the nodes (and an inference job's replicas, one
    per node): a job refused as never fitting could not have been placed either, so the refusal never
    turns away one that would run; and one not refused is placed on the empty cluster, so it does
    not wait forever (below 32 tasks the arrangement search is complete; past it, the placer the
    cycle uses is asked on the empty nodes)."""
    from wanka.core import check_feasibility

    tree = QueueTree.flat(["h100"], {"h100": int(cluster.node_cards.sum())}, ["q"])
    specs = tuple(
        TaskGroup(f"g{i}", replicas, cards, (), cpus, memory, tasks_per_node=per_node)
        for i, (replicas, cards, cpus, memory, per_node) in enumerate(groups)
    )
    if all(g.cards == g.cpus == g.memory_gib == 0 for g in specs):
        return  # asks for nothing a node counts
    job = Job("j", tenant="q", queue="q", groups=specs, kind=kind)
    verdict = check_feasibility(cluster, tree, job)
    free = FreeArrays(
        cluster.node_cards.astype(np.int32).copy(),
        cluster.node_cpus.astype(np.int32).copy(),
        cluster.node_memory.astype(np.int32).copy(),
        None,
    )
    reqs = [
        GroupRequest(
            g.role,
            g.replicas,
            g.gang_min,
            g.cards,
            g.cpus,
            g.memory_gib,
            kind is JobKind.INFERENCE,
            g.tasks_per_node or 0,
        )
        for g in specs
    ]
    placed = place_gang(
        cluster, free, np.ones(cluster.num_nodes, dtype=bool), "h100", reqs, choose_cards=False
    )
    assert (placed is not None) == verdict.ok, f"verdict {verdict}, placement {placed}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster=mixed_nodes(),
    shapes=st.lists(
        st.tuples(
            st.integers(1, 12),  # replicas
            st.integers(0, 8),  # cards
            st.sampled_from([0, 8, 48, 96]),  # cpus
            st.sampled_from([0, 32, 600]),  # memory
            st.sampled_from(["worker", "ps"]),
            # a training job and an inference job of the same shape (its replicas one per node), in
            # either order
            st.sampled_from([(JobKind.TRAINING, JobKind.INFERENCE), (JobKind.INFERENCE, JobKind.TRAINING)]),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_a_verdict_shared_by_shape_is_the_jobs_own(cluster, shapes):
    """The pending index (and the server's submit check) judge a job once per shape and share the
    verdict: it must be the verdict the job gets alone, whichever job of its shape came first (a
    CPU-only gang of 12 took the verdict of a gang of 1, which fits, and waited forever)."""
    from wanka.core import PendingIndex, check_feasibility

    tree = QueueTree.flat(["h100"], {"h100": int(cluster.node_cards.sum())}, ["q"])
    jobs = [
        Job(
            f"j{i}-{k}",
            tenant="q",
            queue="q",
            groups=(TaskGroup(role, replicas, cards, (), cpus, memory),),
            kind=kind,
        )
        for i, (replicas, cards, cpus, memory, role, kinds) in enumerate(shapes)
        for k, kind in enumerate(kinds)
    ]
    index = PendingIndex(cluster, tree, get_policy("fifo").job_order, jobs)
    for job in jobs:
        alone = check_feasibility(cluster, tree, job)
        assert index.rejected.get(job.id, "") == ("" if alone.ok else alone.reason), job.groups
