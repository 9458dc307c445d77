"""Can a job ever run here? Checked at submit time and by the admit action."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wanka.core.cluster import Cluster
from wanka.core.hardware import normalise_name
from wanka.core.jobs import Job
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


def check_feasibility(cluster: Cluster, tree: QueueTree, job: Job) -> Feasibility:
    if job.queue not in tree.index:
        leaves = ", ".join(n for n in tree.names if tree.is_leaf(n))
        return Feasibility(False, f"unknown queue {job.queue!r}; queues: {leaves}")
    if not tree.is_leaf(job.queue):
        return Feasibility(
            False, f"queue {job.queue!r} is an organisation, not a team queue; submit to one of its queues"
        )
    flavors = resolve_flavors(cluster, [g.accelerators for g in job.groups])
    if not flavors:
        wanted = sorted({a for g in job.groups for a in g.accelerators})
        have = ", ".join(m.id for m in cluster.models)
        return Feasibility(False, f"no node offers {', '.join(wanted)}; this cluster has {have}")
    q = tree.index[job.queue]
    reasons, largest = [], 0
    biggest_task = max((g.cards for g in job.groups), default=0)
    for f in flavors:
        model = cluster.models[f]
        on_model = cluster.node_model == f
        node_max = int(cluster.node_cards[on_model].max())
        capacity = int(cluster.node_cards[on_model].sum())
        limit = min(capacity, potential_available(tree, q, tree.flavor_index[model.id]))
        largest = max(largest, limit)
        if biggest_task > node_max:
            reasons.append(
                f"a task asks for {biggest_task} cards; the largest {model.id} node has {node_max}"
            )
        elif job.min_cards > capacity:
            reasons.append(f"needs {job.min_cards} {model.id} cards; the cluster has {capacity}")
        elif job.min_cards > limit:
            reasons.append(
                f"needs {job.min_cards} {model.id} cards; queue {job.queue!r} may hold at most {limit}"
            )
        else:
            return Feasibility(True, "", largest)
    return Feasibility(
        False, "; ".join(reasons) + f" (largest request that could fit: {largest} cards)", largest
    )
