"""Declarative scheduling scenarios: a YAML file of nodes, queues and jobs, and the decisions expected.

name: …                      # what the scenario shows
policy: wanka                # a preset (or `policies: [fifo, slurm, …]`: each in turn);
                             # `config:` overrides fields (job_order: shortest, …)
now: 1000
cluster: {…}                 # a cluster spec, as `wanka cluster show` reads
node_states: {a-0001: down}  # optional
queues: {organisations: …}   # optional; default: one queue `default` that may use everything
running:  [{id, queue, cards, replicas, nodes: [node per task], start, time_limit_s, …}]
pending:  [{id, queue, cards, replicas, min_replicas, accelerators, priority_class, submit, …}]
expect:
  start: {job: [node, …] | any}   # exactly these jobs start (on exactly these nodes)
  stop: {job: reason}             # exactly these jobs stop
  resize: {job: replicas}
  resize_nodes: {job: [node, …]}  # a resized job's node per task, in any order
  tasks: {job: {role: tasks}}     # tasks per group of a started job
  same_domain: {job: tier}        # every task of a started job in one domain of that tier
  reservations: {job: start_time}
  on_loan: {job: reserved job}    # started jobs that run on nodes reserved for that job
  unschedulable: {job: "text in the reason"}
"""

from __future__ import annotations

from pathlib import Path

import yaml

from wanka.core import (
    PRIORITY_CLASSES,
    ClusterState,
    CycleResult,
    Job,
    JobKind,
    JobOrder,
    JobState,
    QueueTree,
    QueueUsage,
    Snapshot,
    TaskGroup,
    get_policy,
    run_cycle,
)
from wanka.core.state import GroupPlacement, Placement, take_cards
from wanka.models.cluster import parse_cluster
from wanka.models.quota import parse_queue_tree


def make_job(spec: dict, running: bool = False) -> Job:
    pc = PRIORITY_CLASSES[spec.get("priority_class", "normal")]
    groups = spec.get("groups") or [
        {
            "role": "worker",
            "replicas": spec.get("replicas", 1),
            "cards": spec.get("cards", 1),
            "accelerators": spec.get("accelerators", []),
            "min_replicas": spec.get("min_replicas"),
            "cpus": spec.get("cpus", 0),
            "memory_gib": spec.get("memory_gib", 0),
            "tasks_per_node": spec.get("tasks_per_node"),
        }
    ]
    job = Job(
        id=spec["id"],
        tenant=spec.get("tenant", spec.get("queue", "default")),
        queue=spec.get("queue", "default"),
        groups=tuple(
            TaskGroup(
                g.get("role", "worker"),
                g.get("replicas", 1),
                g.get("cards", 1),
                tuple(g.get("accelerators", [])),
                g.get("cpus", 0),
                g.get("memory_gib", 0),
                g.get("min_replicas"),
                g.get("tasks_per_node"),
            )
            for g in groups
        ),
        priority=pc.value,
        priority_class=pc.name,
        kind=JobKind(spec.get("kind", "training")),
        time_limit_s=spec.get("time_limit_s"),
        preemptible=spec.get("preemptible", pc.preemptible),
        checkpoint_interval_s=spec.get("checkpoint_interval_s"),
        submit_time=spec.get("submit", 0.0),
        attained_service=spec.get("attained", 0.0),
        last_checkpoint_time=spec.get("last_checkpoint"),
        preemptible_by=spec.get("on_loan_to"),
        service=spec.get("service"),
    )
    if running:
        job.state = JobState.RUNNING
        job.start_time = spec.get("start", 0.0)
    return job


def place_on(cluster, state: ClusterState, job: Job, node_names: list[str]) -> Placement:
    """A running job's placement on the named nodes (one name per task, groups in order)."""
    model = cluster.models[int(cluster.node_model[cluster.node_index[node_names[0]]])].id
    groups, i = [], 0
    taken: dict[int, int] = {}
    for g in job.groups:
        nodes, masks = [], []
        # an elastic job may run with fewer tasks than its full size: one node name per running task
        count = len(node_names) if len(job.groups) == 1 else g.replicas
        for _ in range(count):
            n = cluster.node_index[node_names[i]]
            i += 1
            mask = take_cards(state.free_mask[n] & ~taken.get(n, 0), g.cards, int(cluster.node_cards[n]))
            taken[n] = taken.get(n, 0) | mask
            nodes.append(n)
            masks.append(mask)
        groups.append(GroupPlacement(g.role, tuple(nodes), tuple(masks), g.cards, g.cpus, g.memory_gib))
    return Placement(model, tuple(groups))


def build(doc: dict) -> tuple[Snapshot, object]:
    cluster_doc = dict(doc["cluster"])
    if "node_states" in doc:
        cluster_doc["node_states"] = doc["node_states"]
    cluster = parse_cluster(cluster_doc, doc.get("name", "scenario"))
    running = [make_job(j, running=True) for j in doc.get("running", [])]
    pending = [make_job(j) for j in doc.get("pending", [])]
    if "queues" in doc:
        tree = parse_queue_tree(doc["queues"], cluster)
    else:
        names = sorted({j.queue for j in running + pending} | {"default"})
        capacity = dict(
            zip(
                [m.id for m in cluster.models],
                (int(x) for x in cluster.cards_by_model(states=(0, 1, 2))),
                strict=True,
            )
        )
        tree = QueueTree.flat([m.id for m in cluster.models], capacity, names)
    state = ClusterState.empty(cluster)
    for job, spec in zip(running, doc.get("running", []), strict=True):
        job.placement = place_on(cluster, state, job, spec["nodes"])
        state.allocate(job.placement)
    now = doc.get("now", 0.0)
    usage = {q: QueueUsage(as_of=now, **u) for q, u in doc.get("usage", {}).items()}
    snapshot = Snapshot(now, cluster, state, tree, pending, running, usage)
    config = get_policy(doc.get("policy", "wanka"))
    overrides = dict(doc.get("config", {}))
    if "job_order" in overrides:
        overrides["job_order"] = JobOrder(overrides["job_order"])
    if overrides:
        config = config.with_(**overrides)
    return snapshot, config


def check(doc: dict, result: CycleResult, snapshot: Snapshot) -> None:
    expect = doc.get("expect", {})
    cluster = snapshot.cluster
    starts = {d.job_id: d for d in result.starts}
    if "start" in expect:
        assert set(starts) == set(expect["start"]), (
            f"started {sorted(starts)}, expected {sorted(expect['start'])}"
        )
        for job_id, nodes in expect["start"].items():
            if nodes != "any":
                got = sorted(cluster.node_names[n] for n in starts[job_id].placement.node_set())
                assert got == sorted(set(nodes)), f"{job_id} placed on {got}, expected {sorted(set(nodes))}"
    for job_id, per_role in expect.get("tasks", {}).items():
        got = {g.role: g.replicas for g in starts[job_id].placement.groups}
        assert got == per_role, f"{job_id} started with {got} tasks per group, expected {per_role}"
    for job_id, tier in expect.get("same_domain", {}).items():
        t = cluster.tiers.index(tier)
        domains = {
            cluster.domain_names[t][cluster.domain_of[t][n]] for n in starts[job_id].placement.node_set()
        }
        assert len(domains) == 1, f"{job_id} spans {sorted(domains)} at tier {tier}"
    if "stop" in expect:
        got = {d.job_id: d.reason.value for d in result.stops}
        assert got == expect["stop"], f"stopped {got}, expected {expect['stop']}"
    if "resize" in expect:
        got = {d.job_id: d.placement.num_tasks for d in result.resizes}
        assert got == expect["resize"], f"resized {got}, expected {expect['resize']}"
    resized = {d.job_id: d for d in result.resizes}
    for job_id, nodes in expect.get("resize_nodes", {}).items():
        got = sorted(cluster.node_names[n] for g in resized[job_id].placement.groups for n in g.nodes)
        assert got == sorted(nodes), f"{job_id} resized onto {got}, expected {sorted(nodes)}"
    if "on_loan" in expect:
        got = {d.job_id: d.preemptible_by for d in result.starts if d.preemptible_by is not None}
        assert got == expect["on_loan"], f"on loan {got}, expected {expect['on_loan']}"
    if "reservations" in expect:
        got = {r.job_id: r.start for r in result.reservations}
        assert got == expect["reservations"], f"reservations {got}, expected {expect['reservations']}"
        assert all(result.estimated_start(j) == t for j, t in got.items())
    if "unschedulable" in expect:
        assert set(result.unschedulable) == set(expect["unschedulable"]), result.unschedulable
        for job_id, text in expect["unschedulable"].items():
            assert text in result.unschedulable[job_id], result.unschedulable[job_id]
    if "order" in expect:
        assert result.order[: len(expect["order"])] == expect["order"], result.order


def run_file(path: Path) -> None:
    """Run the scenario under its ``policy``, or under each of its ``policies`` in turn."""
    doc = yaml.safe_load(path.read_text())
    for policy in doc.get("policies") or [doc.get("policy", "wanka")]:
        one = {**doc, "policy": policy}
        snapshot, config = build(one)
        result = run_cycle(snapshot, config)
        try:
            check(one, result, snapshot)
        except AssertionError as exc:
            raise AssertionError(f"under policy {policy}: {exc}") from None
