"""What the Kubernetes backend writes to the API server: node inventory read from Node objects,
and the Pod manifest of each task. Pure functions of their inputs (tested without a cluster)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from dataclasses import dataclass

from kubernetes.utils import parse_quantity

from wanka.backends.base import Launch, TaskLaunch
from wanka.backends.local import _catalog_id

SCHEDULER = "wanka"  # spec.schedulerName of every pod wanka binds (its own and others')
FINALIZER = "wanka.io/logs"  # held until the server read a finished pod's log and exit code
DRAIN_TAINT = "wanka.io/drain"  # a wanka drain: cordon + this NoSchedule taint
LABEL_JOB, LABEL_RUN, LABEL_TASK = "wanka.io/job", "wanka.io/run", "wanka.io/task"
# labels that name a node's accelerator model more exactly than its extended resource does
# (nvidia.com/gpu is every NVIDIA card): wanka's own, NVIDIA GPU feature discovery's, and the
# Ascend device plugin's chip name (e.g. 910B3)
MODEL_LABELS = ("wanka.io/accelerator", "nvidia.com/gpu.product", "node.kubernetes.io/npu.chip.name")
# Kueue's and the common network-topology label conventions, outermost level first
DEFAULT_TOPOLOGY_LABELS = (
    "network.topology.kubernetes.io/block",
    "network.topology.kubernetes.io/rack",
)
# the image of a task's container when no --pod-template names one: jobs' commands are mostly
# `python ...`; centres give their own (with their frameworks and drivers) in the template
DEFAULT_IMAGE = "python:3.11-slim"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A schedulable node as the inventory sees it."""

    name: str
    model: str  # catalog id
    resource: str  # the extended resource its cards are counted in
    cards: int
    cpus: int
    memory_gib: int
    address: str
    ready: bool
    cordoned_by_others: bool  # unschedulable, and not by a wanka drain
    domains: tuple[str, ...]  # topology domains, innermost first


def node_info(node: dict, catalog, topology_labels: tuple[str, ...]) -> NodeInfo | None:
    """The node's cards (the first catalog resource it has allocatable), or None when it has
    none wanka knows."""
    status, meta, spec = node.get("status") or {}, node["metadata"], node.get("spec") or {}
    allocatable = status.get("allocatable") or {}
    labels = meta.get("labels") or {}
    for resource, models in resources_of(catalog).items():
        cards = int(parse_quantity(allocatable.get(resource, "0")))
        if cards <= 0:
            continue
        model = _model(labels, models, catalog)
        break
    else:
        return None
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or ()}
    taints = {t.get("key") for t in spec.get("taints") or ()}
    return NodeInfo(
        name=meta["name"],
        model=model,
        resource=resource,
        cards=cards,
        cpus=int(parse_quantity(allocatable.get("cpu", "0"))),
        memory_gib=int(parse_quantity(allocatable.get("memory", "0")) / 2**30),
        address=addresses.get("InternalIP") or addresses.get("Hostname") or meta["name"],
        ready=conditions.get("Ready") == "True",
        cordoned_by_others=bool(spec.get("unschedulable")) and DRAIN_TAINT not in taints,
        domains=_domains(labels, topology_labels),
    )


def _domains(labels: dict[str, str], topology_labels: tuple[str, ...]) -> tuple[str, ...]:
    """A node's domains innermost first, each named by its path from the outermost (two blocks'
    racks may share a label value), up to the first level the node has no label for."""
    path, out = "", []
    for key in topology_labels:
        value = labels.get(key)
        if not value:
            break
        path = f"{path}/{value}" if path else value
        out.append(path)
    return tuple(reversed(out))


@functools.cache  # the catalog is read once; this runs for every node event
def resources_of(catalog) -> dict[str, list[str]]:
    """Extended resource name -> the catalog ids counted in it, in catalog order."""
    out: dict[str, list[str]] = {}
    for acc in catalog:
        out.setdefault(acc.k8s_resource, []).append(acc.id)
    return out


def _model(labels: dict[str, str], models: list[str], catalog) -> str:
    """The catalog id among ``models`` a node's labels name; else the resource's first model."""
    if len(models) == 1:
        return models[0]
    for label in MODEL_LABELS:
        value = labels.get(label)
        if not value:
            continue
        for candidate in (value, value.replace("-", " "), f"Ascend {value}"):
            found = _catalog_id(catalog, candidate)
            if found in models:
                return found
    return models[0]


def namespace_for(tenant: str, per_tenant: bool, shared: str) -> str:
    """The namespace a tenant's pods live in: ``shared``, or ``wanka-<tenant>`` (a DNS label: a
    name that is not one is lowered, cleaned and given a hash, so two tenants never share)."""
    if not per_tenant:
        return shared
    slug = _DNS_LABEL.sub("-", tenant.lower()).strip("-")
    if slug != tenant or len(slug) > 40:
        slug = f"{slug[:40].strip('-')}-{hashlib.sha256(tenant.encode()).hexdigest()[:8]}".strip("-")
    return f"wanka-{slug}"


def _literal(text: str) -> str:
    """``text`` as Kubernetes passes it on unchanged: the kubelet expands ``$(VAR)`` in a
    container's command, args and env values and reads ``$$`` as ``$``, so every ``$`` is doubled
    (a tenant's ``$(HOME)`` stays those seven characters)."""
    return text.replace("$", "$$")


def pod_name(job_id: int, run: int, task: int) -> str:
    return f"wanka-{job_id}-{run}-{task}"


def pod_manifest(
    launch: Launch,
    task: TaskLaunch,
    *,
    namespace: str,
    resource: str,
    cards: int,
    visible_env: str,
    template: dict,
    grace_s: int,
    run_as: tuple[int, int] | None,
    base_env: dict[str, str],
) -> dict:
    """The Pod of one task: the template's pod (image, volumes, mounts, node-level settings) with
    wanka's part laid over it — the argv as the command (no shell), the task's environment
    contract, its cards as the extended resource's request and limit, the checkpoint directory
    mounted at its own path, the labels and finalizer wanka follows it by, ``schedulerName:
    wanka`` (kube-scheduler leaves it alone) and no node: wanka binds it.

    Devices: the device plugin picks which of the node's cards the container gets and shows them
    numbered from 0, so the visibility variable says ``0..cards-1``."""
    pod = copy.deepcopy(template) if template else {}
    meta = pod.setdefault("metadata", {})
    meta.update(name=pod_name(launch.job_id, launch.run, task.index), namespace=namespace)
    meta["labels"] = {
        **(meta.get("labels") or {}),
        LABEL_JOB: str(launch.job_id),
        LABEL_RUN: str(launch.run),
        LABEL_TASK: str(task.index),
    }
    # user strings are annotations (any text is data there), never label values or names
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        "wanka.io/tenant": launch.tenant,
        "wanka.io/job-name": launch.name,
        "wanka.io/role": task.role,
    }
    meta["finalizers"] = [FINALIZER]
    spec = pod.setdefault("spec", {})
    spec.update(
        schedulerName=SCHEDULER,
        restartPolicy="Never",
        terminationGracePeriodSeconds=grace_s,
        automountServiceAccountToken=False,
        enableServiceLinks=False,
    )
    spec.pop("nodeName", None)
    containers = spec.setdefault("containers", [{}])
    main = containers[0]
    main.setdefault("name", "main")
    main.setdefault("image", DEFAULT_IMAGE)
    main["command"] = [_literal(a) for a in launch.argv]
    main.pop("args", None)
    env = {**base_env, **launch.user_env, **task.env}
    if visible_env in env:
        env[visible_env] = ",".join(str(i) for i in range(len(task.devices)))
    main["env"] = [e for e in main.get("env") or () if e.get("name") not in env] + [
        {"name": k, "value": _literal(v)} for k, v in env.items()
    ]
    if launch.workdir:
        main["workingDir"] = launch.workdir
    requests = {resource: str(cards)}
    if task.cpus:
        requests["cpu"] = str(task.cpus)
    if task.memory_gib:
        requests["memory"] = f"{task.memory_gib}Gi"
    main["resources"] = {"requests": dict(requests), "limits": {resource: str(cards)}}
    mounts = [m for m in main.get("volumeMounts") or () if m.get("name") != "wanka-checkpoint"]
    main["volumeMounts"] = [*mounts, {"name": "wanka-checkpoint", "mountPath": launch.checkpoint_dir}]
    volumes = [v for v in spec.get("volumes") or () if v.get("name") != "wanka-checkpoint"]
    spec["volumes"] = [
        *volumes,
        {"name": "wanka-checkpoint", "hostPath": {"path": launch.checkpoint_dir, "type": "Directory"}},
    ]
    if run_as is not None:  # the tenant's own uid, never root, no way up
        spec["securityContext"] = {
            **(spec.get("securityContext") or {}),
            "runAsUser": run_as[0],
            "runAsGroup": run_as[1],
            "runAsNonRoot": True,
        }
        main["securityContext"] = {
            **(main.get("securityContext") or {}),
            "runAsUser": run_as[0],
            "runAsGroup": run_as[1],
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        }
    return pod


def main_container(pod: dict) -> str:
    """The task's container: the first (the template's may have sidecars after it)."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0].get("name", "main")


def api_message(exc: Exception) -> str:
    """What the API server said (its Status message), on one line."""
    body = getattr(exc, "body", None)
    if body:
        try:
            text = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            text = str(body)
    else:
        text = str(getattr(exc, "reason", None) or exc)
    return " ".join(text.split())[:300]
