"""Can a job ever run here? Checked at submit time and by the admit action."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wanka.core.cluster import Cluster, NodeKinds
from wanka.core.hardware import normalise_name
from wanka.core.jobs import Job, JobKind
from wanka.core.placement import FreeArrays, GroupRequest, pack_minimums, place_gang
from wanka.core.quota import QueueTree, potential_available


@dataclass(frozen=True, slots=True)
class Feasibility:
    """``ok`` or the reason it is not, with the largest request (in cards, on the job's accepted
    models, in its queue) that this cluster could ever hold."""

    ok: bool
    reason: str = ""
    largest_cards: int = 0


def resolve_flavors(cluster: Cluster, accepted_per_group: Sequence[Sequence[str]]) -> tuple[int, ...]:
    """Model indices every group accepts; a name matches a model id, name or alias, or a vendor."""
    result: list[int] | None = None
    for accepted in accepted_per_group:
        if not accepted:
            matches = list(range(len(cluster.models)))
        else:
            keys = [normalise_name(a) for a in accepted]
            matches = []
            for key in keys:  # the job's order of preference
                for f, model in enumerate(cluster.models):
                    if f not in matches and (key in model.names() or key == normalise_name(model.vendor)):
                        matches.append(f)
        result = matches if result is None else [f for f in result if f in matches]
    return tuple(result or ())


def check_feasibility(cluster: Cluster, tree: QueueTree, job: Job, time_limit: bool = True) -> Feasibility:
    """Whether ``job`` could ever run in its queue on this cluster, or the reason it never can.
    ``time_limit=False`` leaves out :func:`check_time_limit` (for verdicts shared by job shape)."""
    if job.queue not in tree.index:
        leaves = ", ".join(n for n in tree.names if tree.is_leaf(n))
        return Feasibility(False, f"unknown queue {job.queue!r}; queues: {leaves}")
    if not tree.is_leaf(job.queue):
        return Feasibility(
            False, f"queue {job.queue!r} is an organisation, not a team queue; submit to one of its queues"
        )
    q = tree.index[job.queue]
    too_long = check_time_limit(tree, job) if time_limit else None
    if too_long is not None:
        return too_long
    flavors = resolve_flavors(cluster, [g.accelerators for g in job.groups])
    if not flavors:
        wanted = sorted({a for g in job.groups for a in g.accelerators})
        have = ", ".join(m.id for m in cluster.models)
        if all(resolve_flavors(cluster, [g.accelerators]) for g in job.groups):  # each alone is offered
            asks = "; ".join(f"{g.role!r} {', '.join(g.accelerators)}" for g in job.groups if g.accelerators)
            return Feasibility(
                False, f"a job runs on one accelerator model, and no model suits every group ({asks})"
            )
        return Feasibility(False, f"no node offers {', '.join(wanted)}; this cluster has {have}")
    reasons, largest = [], 0
    for f in flavors:
        model = cluster.models[f]
        kinds = cluster.node_kinds(f)
        limit = min(kinds.total(kinds.cards), potential_available(tree, q, tree.flavor_index[model.id]))
        largest = max(largest, limit)
        why = _never_on_nodes(job, kinds, model.id) or _no_arrangement(cluster, job, f, model.id)
        if why:
            reasons.append(why)
        elif job.min_cards > limit:
            reasons.append(
                f"needs {job.min_cards} {model.id} cards; queue {job.queue!r} may hold at most {limit}"
            )
        else:
            return Feasibility(True, "", largest)
    # the largest card request helps only a job that asks for more cards than that (not one that
    # asks for no cards, nor one refused for its CPUs or memory)
    hint = f" (largest request that could fit: {largest} cards in all)" if job.min_cards > largest else ""
    return Feasibility(False, "; ".join(reasons) + hint, largest)


def check_time_limit(tree: QueueTree, job: Job) -> Feasibility | None:
    """The refusal of a time limit above the queue's maximum (Slurm's MaxTime), else None. Apart
    from :func:`check_feasibility`'s shape-keyed verdicts, since limits vary job by job."""
    q = tree.index.get(job.queue)
    most = None if q is None else tree.max_time_limit[q]
    if most is not None and job.time_limit_s is not None and job.time_limit_s > most:
        return Feasibility(
            False, f"time limit {job.time_limit_s:g} s exceeds the maximum of queue {job.queue!r}, {most:g} s"
        )
    return None


def _never_on_nodes(job: Job, kinds: NodeKinds, model: str) -> str:
    """Why no set of ``model`` nodes could ever hold the job's tasks, judged on every resource a
    task asks for (cards, CPUs, memory) together on one node, and on the CPUs and memory of all
    those nodes for the gang's minimum; "" when they could. Over the model's node shapes, each
    counted as often as nodes have it."""
    cards, cpus, memory = kinds.cards, kinds.cpus, kinds.memory
    for g in job.groups:
        fits = (cards >= g.cards) & (cpus >= g.cpus) & (memory >= g.memory_gib)
        if not fits.any():
            for asked, have, unit in (
                (g.cards, cards, "cards"),
                (g.cpus, cpus, "CPUs"),
                (g.memory_gib, memory, "GiB of memory"),
            ):
                most = int(have.max())
                if asked > most:
                    return (
                        f"a task of {g.role!r} asks for {asked} {unit}; the largest {model} node has {most}"
                    )
            return (
                f"no {model} node has {g.cards} cards, {g.cpus} CPUs and {g.memory_gib} GiB "
                f"together, as a task of {g.role!r} asks"
            )
    if job.min_cards > kinds.total(cards):
        return f"needs {job.min_cards} {model} cards; the cluster has {kinds.total(cards)}"
    spread = job.kind is JobKind.INFERENCE  # replicas one per node (placement's spreading)
    together = np.zeros(len(cards), dtype=np.int64)  # per node shape: tasks of all groups, at most
    for g in job.groups:  # how many of the group's tasks the nodes hold at most, each on one node
        room = [
            have // need for have, need in ((cards, g.cards), (cpus, g.cpus), (memory, g.memory_gib)) if need
        ]
        limit = 1 if spread else g.tasks_per_node
        if limit:
            room.append(np.full(len(cards), limit))
        if not room:  # asks for nothing a node counts: no bound from this group
            together = None
            continue
        own = np.minimum.reduce(room)
        if together is not None:
            together = together + own
        most = kinds.total(own)
        if g.gang_min > most:
            per_node = f", {limit} per node at most" if limit else ""
            return (
                f"{g.role!r} needs {g.gang_min} tasks at once; the {model} nodes hold at most "
                f"{most} of them (cards, CPUs and memory per node{per_node})"
            )
    if len(job.groups) > 1 and together is not None:
        # the groups share the nodes: a node holds at most as many tasks of any mix as its resource
        # holds of the smallest ask for it (and no more than each group's own room, summed)
        for have, asks in (
            (cards, [g.cards for g in job.groups]),
            (cpus, [g.cpus for g in job.groups]),
            (memory, [g.memory_gib for g in job.groups]),
        ):
            if min(asks) > 0:
                together = np.minimum(together, have // min(asks))
        tasks, most = sum(g.gang_min for g in job.groups), kinds.total(together)
        if tasks > most:
            return (
                f"its groups need {tasks} tasks at once; the {model} nodes hold at most {most} of them "
                f"together (cards, CPUs and memory per node)"
            )
    for asked, have, unit in (
        (sum(g.gang_min * g.cpus for g in job.groups), kinds.total(cpus), "CPUs"),
        (sum(g.gang_min * g.memory_gib for g in job.groups), kinds.total(memory), "GiB of memory"),
    ):
        if asked > have:
            return f"needs {asked} {unit} on {model} nodes; the cluster has {have}"
    return ""


def _no_arrangement(cluster: Cluster, job: Job, flavor: int, model: str) -> str:
    """For a gang of several groups small enough to search exhaustively: why no arrangement of its
    groups' minimums fits the empty ``model`` nodes together ("" when one does, or the search could
    not finish: only a complete search refuses). The per-node bounds of :func:`_never_on_nodes`
    miss groups of different sizes (workers of 6 cards each need a node of their own, and a master
    of 3 then fits beside neither, on two 8-card nodes)."""
    if len(job.groups) < 2:
        return ""
    spread = job.kind is JobKind.INFERENCE
    reqs = [
        GroupRequest(
            g.role, g.gang_min, g.gang_min, g.cards, g.cpus, g.memory_gib, spread, g.tasks_per_node or 0
        )
        for g in job.groups
    ]
    empty = FreeArrays(cluster.node_cards.copy(), cluster.node_cpus.copy(), cluster.node_memory.copy(), None)
    usable = cluster.node_model == flavor
    found, complete = pack_minimums(empty, usable, reqs)
    if found is None and complete:
        return (
            f"no arrangement of its groups' tasks fits the {model} nodes together "
            f"(cards, CPUs and memory per node)"
        )
    # past the search's bounds (more tasks or nodes than it tries), the placer the cycle uses is
    # asked on the empty nodes: what it cannot place there it can never place on fewer free ones,
    # and a job waiting for that would wait for ever (under fifo, with its queue behind it)
    if not complete and place_gang(cluster, empty, usable, model, reqs, choose_cards=False) is None:
        return (
            f"no arrangement of its groups' tasks is found on the empty {model} nodes "
            f"(cards, CPUs and memory per node)"
        )
    return ""
