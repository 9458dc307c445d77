"""Work that others put on the cluster for wanka: pods with ``schedulerName: wanka``, grouped into
gangs by Volcano's PodGroup (``scheduling.volcano.sh/v1beta1``: ``minMember``, ``queue``,
``priorityClassName``; a pod joins one with the annotation ``scheduling.k8s.io/group-name``).
Kubeflow's training operators and Volcano jobs create exactly these, so they run under wanka
unchanged. Pure functions of the objects (tested without a cluster); the CRD and RBAC that
``wanka k8s install`` applies are here too."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubernetes.utils import parse_quantity

from wanka.backends._k8s_pods import resources_of

PODGROUP = ("scheduling.volcano.sh", "v1beta1", "podgroups")  # group, version, plural
GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
TASK_LABEL = "volcano.sh/task-spec"  # a Volcano job's task name: the pod's role
TENANT_LABEL = "wanka.io/tenant"  # on a namespace: whose quota its pods spend
_ROLE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ForeignTask:
    pod: str  # name, in the workload's namespace
    uid: str
    role: str
    cards: int
    cpus: int
    memory_gib: int


@dataclass(frozen=True, slots=True)
class Workload:
    """A gang of others' pods waiting for wanka: a PodGroup's pending pods, or one pod alone."""

    key: str  # the PodGroup's uid (or the lone pod's): stable across a restart of either side
    kind: str  # PodGroup | Pod
    namespace: str
    name: str
    min_member: int
    queue: str
    priority_class: str
    resource: str  # the extended resource its cards are counted in ("" for none)
    tasks: tuple[ForeignTask, ...]
    problem: str = ""  # why it cannot become a job as it is (said on the objects, in words)

    def _groups(self) -> list[tuple[str, ForeignTask, list[str]]]:
        """(role, a task of the shape, its pods by name) per task group: one per role, a role
        whose pods differ in shape split as ROLE, ROLE-2, ..."""
        groups: dict[tuple, tuple[str, ForeignTask, list[str]]] = {}
        taken: dict[str, int] = {}
        for t in sorted(self.tasks, key=lambda t: t.pod):
            shape = (t.role, t.cards, t.cpus, t.memory_gib)
            if shape not in groups:
                taken[t.role] = taken.get(t.role, 0) + 1
                role = t.role if taken[t.role] == 1 else f"{t.role[:60]}-{taken[t.role]}"
                groups[shape] = (role, t, [])
            groups[shape][2].append(t.pod)
        return list(groups.values())

    def task_groups(self) -> list[dict]:
        """The job's task groups (JobSpec's), in the order their tasks are ranked."""
        return [
            {
                "role": role,
                "replicas": len(pods),
                "cards": t.cards,
                "cpus": t.cpus,
                "memory_gib": t.memory_gib,
            }
            for role, t, pods in self._groups()
        ]

    def pods_by_role(self) -> dict[str, list[str]]:
        """Pod names per task-group role, in the order that group's tasks are ranked."""
        return {role: pods for role, _, pods in self._groups()}


def pending(pod: dict) -> bool:
    """Waiting for a node: not bound, not being deleted, not ended."""
    return (
        not (pod.get("spec") or {}).get("nodeName")
        and not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def _task(pod: dict, catalog) -> tuple[ForeignTask, str, str]:
    """The pod as a task, its accelerator resource, and a problem in words (or "")."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    known = resources_of(catalog)
    cards: dict[str, int] = {}
    cpus = memory = 0.0
    for c in spec.get("containers") or ():
        res = c.get("resources") or {}
        asked = {**(res.get("requests") or {}), **(res.get("limits") or {})}  # extended: limits
        for name, value in asked.items():
            try:
                amount = parse_quantity(value)
            except ValueError:
                return (
                    ForeignTask(meta["name"], meta.get("uid", ""), "worker", 0, 0, 0),
                    "",
                    f"{name}: {value!r} is no quantity",
                )
            if name in known:
                cards[name] = cards.get(name, 0) + int(amount)
        requests = res.get("requests") or {}
        try:
            cpus += float(parse_quantity(requests.get("cpu", "0")))
            memory += float(parse_quantity(requests.get("memory", "0")))
        except ValueError:
            return (
                ForeignTask(meta["name"], meta.get("uid", ""), "worker", 0, 0, 0),
                "",
                "cpu or memory: no quantity",
            )
    problem = ""
    if len(cards) > 1:
        problem = (
            f"pod {meta['name']} asks for {len(cards)} kinds of accelerator ({', '.join(cards)}); one per pod"
        )
    resource = next(iter(cards), "")
    role = (meta.get("labels") or {}).get(TASK_LABEL) or "worker"
    role = _ROLE.sub("-", role).strip("-.")[:64] or "worker"
    task = ForeignTask(
        meta["name"],
        meta.get("uid", ""),
        role,
        cards.get(resource, 0),
        int(-(-cpus // 1)),  # whole CPUs, rounded up
        int(-(-memory // 2**30)),  # whole GiB, rounded up
    )
    return task, resource, problem


def workload_of_group(group: dict, pods: list[dict], catalog) -> Workload:
    """A PodGroup and its pending pods (all in its namespace)."""
    meta, spec = group["metadata"], group.get("spec") or {}
    tasks, resources, problems = [], set(), []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        task, resource, problem = _task(pod, catalog)
        tasks.append(task)
        if resource:
            resources.add(resource)
        if problem:
            problems.append(problem)
    try:
        min_member = max(1, int(spec.get("minMember") or 1))
    except (TypeError, ValueError):
        min_member, problems = 1, [*problems, f"minMember {spec.get('minMember')!r} is no number"]
    if len(resources) > 1:
        problems.append(
            f"its pods ask for different accelerators ({', '.join(sorted(resources))}); one per gang"
        )
    if len(tasks) < min_member:
        problems.append(f"{len(tasks)} of its minMember {min_member} pods exist: waiting for the rest")
    return Workload(
        key=meta.get("uid", ""),
        kind="PodGroup",
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        min_member=min_member,
        queue=str(spec.get("queue") or ""),
        priority_class=str(spec.get("priorityClassName") or ""),
        resource=next(iter(resources), ""),
        tasks=tuple(tasks),
        problem="; ".join(problems),
    )


def workload_of_pod(pod: dict, catalog) -> Workload:
    """A pod with no PodGroup: a gang of one."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    task, resource, problem = _task(pod, catalog)
    return Workload(
        key=meta.get("uid", ""),
        kind="Pod",
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        min_member=1,
        queue=(meta.get("labels") or {}).get("wanka.io/queue", ""),
        priority_class=str(spec.get("priorityClassName") or ""),
        resource=resource,
        tasks=(task,),
        problem=problem,
    )


# --- what `wanka k8s install` applies --------------------------------------------------------------

PODGROUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.volcano.sh"},
    "spec": {
        "group": "scheduling.volcano.sh",
        "names": {
            "kind": "PodGroup",
            "listKind": "PodGroupList",
            "plural": "podgroups",
            "singular": "podgroup",
            "shortNames": ["pg", "podgroup-v1beta1"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "minMember", "type": "integer", "jsonPath": ".spec.minMember"},
                    {"name": "Queue", "type": "string", "jsonPath": ".spec.queue"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "minMember": {"type": "integer", "format": "int32", "minimum": 0},
                                    "minResources": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "minTaskMember": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                    },
                                    "priorityClassName": {"type": "string"},
                                    "queue": {"type": "string"},
                                },
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "running": {"type": "integer"},
                                    "succeeded": {"type": "integer"},
                                    "failed": {"type": "integer"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                },
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}

# what the server's account needs (a ClusterRole; bind it to the account the server runs as)
CLUSTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "wanka-server"},
    "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create"]},
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["get", "list", "watch", "create", "delete", "patch"],
        },
        {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["scheduling.volcano.sh"],
            "resources": ["podgroups"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["scheduling.volcano.sh"],
            "resources": ["podgroups/status"],
            "verbs": ["patch", "update"],
        },
    ],
}


def install_objects(api_client=None) -> list[str]:
    """Create, or replace when they exist, :data:`PODGROUP_CRD` and :data:`CLUSTER_ROLE` (the
    client's default configuration unless ``api_client``); returns what was done, a line each.
    Raises RuntimeError naming the object and the API server's answer."""
    import json

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    crd = (
        extensions.create_custom_resource_definition,
        extensions.replace_custom_resource_definition,
        extensions.read_custom_resource_definition,
    )
    role = (rbac.create_cluster_role, rbac.replace_cluster_role, rbac.read_cluster_role)
    done = []
    for what, (create, replace, read), body in (
        ("CustomResourceDefinition", crd, PODGROUP_CRD),
        ("ClusterRole", role, CLUSTER_ROLE),
    ):
        name = body["metadata"]["name"]
        try:
            create(body, _preload_content=False).release_conn()
            done.append(f"{what} {name} created")
        except ApiException as exc:
            if exc.status != 409:
                raise RuntimeError(
                    f"{what} {name}: {exc.reason} ({exc.status}): {(exc.body or '')[:300]}"
                ) from None
            current = json.loads(read(name, _preload_content=False).data)
            version = current["metadata"]["resourceVersion"]
            replace(
                name,
                {**body, "metadata": {**body["metadata"], "resourceVersion": version}},
                _preload_content=False,
            ).release_conn()
            done.append(f"{what} {name} updated")
        except Exception as exc:  # no connection
            raise RuntimeError(f"the Kubernetes API server cannot be reached: {exc}") from None
    return done
