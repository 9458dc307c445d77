"""Properties of multi-group and elastic gangs (issue 14, items 1 and 7): a gang whose minimum fits
its quota starts, trimmed as a whole; a gang that fits one network domain is placed in one."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanka.core import (
    POLICIES,
    Cluster,
    ClusterState,
    FlavorQuota,
    Job,
    NodeRecord,
    QueueNode,
    QueueTree,
    Snapshot,
    TaskGroup,
    get_policy,
    run_cycle,
)
from wanka.core.state import GroupPlacement, Placement, take_cards
from wanka.models.hardware import default_catalog

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# the cases below are rarer among the draws (CPUs binding, more leaves than a tier's tries): more
# examples, ~10 ms each
MORE = settings(SETTINGS, max_examples=500)


def leaves_cluster(sizes: list[int], cpus: list[int] | None = None) -> Cluster:
    """Leaves of ``sizes`` 8-card nodes (``cpus``: each node's CPUs, in node order; none declared
    when omitted)."""
    acc = default_catalog().get("h100")
    records = [
        NodeRecord(f"l{leaf}n{i}", acc, 8, (f"leaf{leaf}",), memory_gib=1024 if cpus else 0)
        for leaf, size in enumerate(sizes)
        for i in range(size)
    ]
    if cpus:
        records = [replace(r, cpus=c) for r, c in zip(records, cpus, strict=True)]
    return Cluster("c", ("node", "leaf", "cluster"), records)


def fits_exactly(nodes: list[tuple[int, int]], tasks: list[tuple[int, int]]) -> bool:
    """Whether the tasks (cards, CPUs) fit the nodes' free (cards, CPUs): an exhaustive search,
    for the few tasks and nodes of these properties."""
    tasks = sorted(tasks, reverse=True)

    @cache
    def place(i: int, room: tuple[tuple[int, int], ...]) -> bool:
        if i == len(tasks):
            return True
        cards, cpus = tasks[i]
        for k, (c, p) in enumerate(room):
            if c >= cards and p >= cpus and (k == 0 or room[k - 1] != (c, p)):
                rest = (*room[:k], (c - cards, p - cpus), *room[k + 1 :])
                if place(i + 1, tuple(sorted(rest))):
                    return True
        return False

    return place(0, tuple(sorted(nodes)))


@st.composite
def gangs(draw, elastic: bool) -> tuple[TaskGroup, ...]:
    groups = []
    for i in range(draw(st.integers(2, 3))):
        replicas = draw(st.integers(1, 4))
        low = draw(st.integers(1, replicas)) if elastic and draw(st.booleans()) else None
        groups.append(TaskGroup(f"g{i}", replicas, draw(st.sampled_from([1, 2, 4, 8])), min_replicas=low))
    return tuple(groups)


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@SETTINGS
def test_an_elastic_gang_whose_minimum_fits_its_quota_starts_trimmed_to_it(data, policy) -> None:
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    cluster = leaves_cluster(sizes)
    total = 8 * sum(sizes)
    groups = data.draw(gangs(elastic=True))
    job = Job("j", "t", "team", groups)
    if job.min_cards > total:
        return
    nominal = data.draw(st.integers(job.min_cards, total))
    tree = QueueTree(
        [
            QueueNode("cluster", None, {"h100": FlavorQuota(total)}),
            QueueNode("team", "cluster", {"h100": FlavorQuota(nominal, borrowing_limit=0)}),
        ],
        ["h100"],
    )
    result = run_cycle(
        Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, [job], []), get_policy(policy)
    )
    assert [d.job_id for d in result.starts] == ["j"], result.unschedulable
    placement = result.starts[0].placement
    assert placement.total_cards <= nominal
    for spec, got in zip(groups, placement.groups, strict=True):
        assert spec.gang_min <= got.replicas <= spec.replicas


def fits_by_ffd(free: list[int], groups: tuple[TaskGroup, ...]) -> bool:
    """Whether the tasks fit the free cards (first-fit decreasing: exact for power-of-two sizes)."""
    room = sorted(free, reverse=True)
    for cards in sorted((g.cards for g in groups for _ in range(g.replicas)), reverse=True):
        for i, r in enumerate(room):
            if r >= cards:
                room[i] -= cards
                break
        else:
            return False
    return True


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@SETTINGS
def test_a_gang_that_fits_one_leaf_is_placed_in_one_leaf(data, policy) -> None:
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=4))
    cluster = leaves_cluster(sizes)
    state = ClusterState.empty(cluster)
    busy = []
    for n in range(cluster.num_nodes):  # random load, held by running jobs of another queue
        used = data.draw(st.sampled_from([0, 0, 2, 4, 6, 8]))
        if used:
            mask = take_cards(state.free_mask[n], used, 8)
            placement = Placement("h100", (_group(n, mask, used),))
            state.allocate(placement)
            busy.append(Job(f"b{n}", "o", "team", (TaskGroup("w", 1, used),), placement=placement))
    for job in busy:
        job.state = job.state.RUNNING
        job.start_time = 0.0
    groups = data.draw(gangs(elastic=False))
    job = Job("j", "t", "team", groups, priority=0)
    tree = QueueTree.flat(["h100"], {"h100": 8 * cluster.num_nodes}, ["team"])
    result = run_cycle(Snapshot(0.0, cluster, state, tree, [job], busy), get_policy(policy))
    leaf_fits = any(
        fits_by_ffd(
            [int(state.free_cards[n]) for n in range(cluster.num_nodes) if cluster.domain_of[1][n] == d],
            groups,
        )
        for d in range(cluster.domain_count(1))
    )
    if leaf_fits:
        assert_in_one_leaf(cluster, result)


def assert_in_one_leaf(cluster: Cluster, result) -> None:
    """Job ``j`` started, all its tasks in one leaf."""
    starts = [d for d in result.starts if d.job_id == "j"]
    assert starts, "a gang that fits one leaf must start"
    leaves = {int(cluster.domain_of[1][n]) for n in starts[0].placement.node_set()}
    assert len(leaves) == 1, f"split over leaves {sorted(leaves)} though one leaf holds it"


def _group(node: int, mask: int, cards: int, cpus: int = 0):
    return GroupPlacement("w", (node,), (mask,), cards, cpus)


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@MORE
def test_a_gang_that_fits_one_leaf_in_cards_and_cpus_is_placed_in_one_leaf(data, policy) -> None:
    """Item 7's kind where CPUs bind and leaves outnumber the domains a tier's search tries: leaves
    that cannot hold the gang together (their CPUs in crumbs too small for two of its tasks) must
    not use up the tries before the leaf that holds it."""
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=4, max_size=7))
    cpus = [data.draw(st.sampled_from([8, 12, 16, 32])) for _ in range(sum(sizes))]
    cluster = leaves_cluster(sizes, cpus)
    state = ClusterState.empty(cluster)
    busy = []
    for n in range(cluster.num_nodes):  # random load, held by running jobs of another tenant
        used = data.draw(st.sampled_from([0, 0, 2, 4, 6, 8]))
        if used:
            used_cpus = data.draw(st.integers(0, cpus[n]))
            mask = take_cards(state.free_mask[n], used, 8)
            placement = Placement("h100", (_group(n, mask, used, used_cpus),))
            state.allocate(placement)
            group = TaskGroup("w", 1, used, cpus=used_cpus)
            busy.append(Job(f"b{n}", "o", "team", (group,), placement=placement, start_time=0.0))
    for job in busy:
        job.state = job.state.RUNNING
    groups = tuple(
        TaskGroup(
            f"g{i}",
            data.draw(st.integers(1, 3)),
            data.draw(st.sampled_from([0, 1, 2, 4, 8])),
            cpus=data.draw(st.sampled_from([1, 4, 8])),
        )
        for i in range(data.draw(st.integers(2, 3)))
    )
    job = Job("j", "t", "team", groups, priority=0)
    tree = QueueTree.flat(["h100"], {"h100": 8 * cluster.num_nodes}, ["team"])
    result = run_cycle(Snapshot(0.0, cluster, state, tree, [job], busy), get_policy(policy))
    tasks = [(g.cards, g.cpus) for g in groups for _ in range(g.replicas)]
    leaf_fits = any(
        fits_exactly(
            [
                (int(state.free_cards[n]), int(state.free_cpus[n]))
                for n in range(cluster.num_nodes)
                if cluster.domain_of[1][n] == d
            ],
            tasks,
        )
        for d in range(cluster.domain_count(1))
    )
    if leaf_fits:
        assert_in_one_leaf(cluster, result)


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@SETTINGS
def test_a_gang_passes_more_leaves_than_a_tier_tries_that_cannot_hold_it(data, policy) -> None:
    """Item 7's kind against the bounded search: five to twenty smaller leaves come first
    (tightest first), then a larger one. Where the gang's tasks do not pack into a small leaf
    (mixed sizes: a 4-card master and 6-card workers take a node each) but do into the large one,
    it lands there whole."""
    small, large = data.draw(st.integers(1, 3)), data.draw(st.integers(2, 4))
    cluster = leaves_cluster([small] * data.draw(st.integers(5, 20)) + [large])
    groups = tuple(
        TaskGroup(f"g{i}", data.draw(st.integers(1, 3)), data.draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8])))
        for i in range(data.draw(st.integers(2, 3)))
    )
    tasks = [(g.cards, 0) for g in groups for _ in range(g.replicas)]
    if fits_exactly([(8, 0)] * small, tasks) or not fits_exactly([(8, 0)] * large, tasks):
        return  # a small leaf holds it (any may win), or none does
    tree = QueueTree.flat(["h100"], {"h100": 8 * cluster.num_nodes}, ["team"])
    job = Job("j", "t", "team", groups)
    result = run_cycle(
        Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, [job], []), get_policy(policy)
    )
    assert_in_one_leaf(cluster, result)


@given(data=st.data(), policy=st.sampled_from(sorted(POLICIES)))
@MORE
def test_an_elastic_gang_that_fits_whole_on_an_empty_cluster_starts_whole(data, policy) -> None:
    """Item 1's kind, counted in tasks: an elastic gang starts at its largest size that fits, also
    where its elastic group's tasks hold no cards (data loaders on CPUs)."""
    sizes = data.draw(st.lists(st.integers(1, 2), min_size=1, max_size=2))
    cpus = [data.draw(st.sampled_from([8, 16, 32])) for _ in range(sum(sizes))]
    cluster = leaves_cluster(sizes, cpus)
    groups = []
    count = data.draw(st.integers(2, 3))
    for i in range(count):
        replicas = data.draw(st.integers(1 if i < count - 1 else 2, 4))
        # the last group elastic: the gang has room to grow
        low = data.draw(st.integers(1, replicas)) if i == count - 1 or data.draw(st.booleans()) else None
        cards, task_cpus = data.draw(st.sampled_from([0, 0, 1, 4, 8])), data.draw(st.sampled_from([1, 4, 8]))
        groups.append(TaskGroup(f"g{i}", replicas, cards, cpus=task_cpus, min_replicas=low))
    job = Job("j", "t", "team", tuple(groups))
    whole = [(g.cards, g.cpus) for g in groups for _ in range(g.replicas)]
    if not fits_exactly([(8, c) for c in cpus], whole):
        return
    tree = QueueTree.flat(["h100"], {"h100": 8 * cluster.num_nodes}, ["team"])
    result = run_cycle(
        Snapshot(0.0, cluster, ClusterState.empty(cluster), tree, [job], []), get_policy(policy)
    )
    assert [d.job_id for d in result.starts] == ["j"], result.unschedulable
    got = [g.replicas for g in result.starts[0].placement.groups]
    assert got == [g.replicas for g in groups], "it fits whole, so it starts whole"


@given(data=st.data(), policy=st.sampled_from(["slurm", "wanka"]))
@SETTINGS
def test_a_waiting_minimum_takes_running_elastic_surplus_before_anything_whole_stops(data, policy) -> None:
    """Issue 14, item 2's kind: tasks above a running elastic job's minimum are lent, not owned. A
    waiting job (no lower rank) whose minimum fits the surplus starts now, and only shrinks make
    its room: no job is stopped whole."""
    sizes = data.draw(st.lists(st.integers(1, 2), min_size=1, max_size=3))
    cluster = leaves_cluster(sizes)
    total = 8 * sum(sizes)
    tree = QueueTree.flat(["h100"], {"h100": total}, ["team"])
    state, running, used = ClusterState.empty(cluster), [], 0
    while used < total:  # elastic 1-card-task jobs fill the cluster at full size
        replicas = min(data.draw(st.integers(2, 8)), total - used)
        low = data.draw(st.integers(1, replicas))
        job = Job(
            f"e{len(running)}", "t", "team", (TaskGroup("w", replicas, 1, min_replicas=low),), priority=100
        )
        free = [n for n in range(cluster.num_nodes) for _ in range(int(state.free_cards[n]))][:replicas]
        taken: dict[int, int] = {}
        masks = []
        for n in free:  # one card each, distinct on a shared node
            masks.append(take_cards(state.free_mask[n] & ~taken.get(n, 0), 1, 8))
            taken[n] = taken.get(n, 0) | masks[-1]
        job.placement = Placement("h100", (GroupPlacement("w", tuple(free), tuple(masks), 1),))
        state.allocate(job.placement)
        job.state, job.start_time = job.state.RUNNING, float(len(running))
        running.append(job)
        used += replicas
    surplus = sum(j.groups[0].replicas - j.groups[0].gang_min for j in running)
    if surplus == 0:
        return
    need = data.draw(st.integers(1, surplus))
    waiting = Job(
        "w", "t", "team", (TaskGroup("w", need + 2, 1, min_replicas=need),), priority=100, submit_time=50
    )
    result = run_cycle(Snapshot(100.0, cluster, state, tree, [waiting], running), get_policy(policy))
    assert [d.job_id for d in result.starts] == ["w"], "its minimum fits the surplus"
    assert not result.stops, "nothing whole is stopped while surplus remains"
    assert all(d.shrink for d in result.resizes)
    by_id = {j.id: j for j in running}
    for d in result.resizes:
        spec = by_id[d.job_id].groups[0]
        assert spec.gang_min <= d.placement.num_tasks < by_id[d.job_id].placement.num_tasks
