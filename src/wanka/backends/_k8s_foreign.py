"""The Kubernetes backend's half of others' work (PodGroups and lone pods with ``schedulerName:
wanka``): which of them wait, which wanka job each became, binding them where the core placed
the job, and saying on their objects how they fare. The server's half (jobs from workloads,
tenants from namespaces) is :mod:`wanka.server.k8s_intake`."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from wanka.backends import isolation
from wanka.backends._k8s_podgroups import (
    GROUP_ANNOTATION,
    PODGROUP,
    Workload,
    pending,
    workload_of_group,
    workload_of_pod,
)

log = logging.getLogger("wanka.k8s")

# wanka's job states as a PodGroup's phase (Volcano's: Pending, Inqueue, Running, Completed)
PHASES = {
    "pending": "Pending",
    "held": "Pending",
    "admitted": "Inqueue",
    "running": "Running",
    "succeeded": "Completed",
    "failed": "Completed",
    "cancelled": "Completed",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Claims:
    """Which wanka job each workload became: one file per workload (``uid`` -> job id) under the
    server's home, so a restarted server binds and follows the same pods and never makes a
    second job of one workload. Removed when the job ended."""

    def __init__(self, root: Path):
        self.root = root
        isolation.private_dir(root, None)
        self.jobs: dict[str, int] = {}
        for entry in os.scandir(root):
            try:
                self.jobs[entry.name] = int(json.loads(Path(entry.path).read_text())["job"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        self.workloads: dict[int, str] = {j: k for k, j in self.jobs.items()}

    def add(self, key: str, job_id: int, workload: Workload) -> None:
        """Record that ``workload`` became ``job_id``, with the pods admitted (uid -> the task
        group's role): those, and only those, are bound for its first run."""
        roles = {name: role for role, names in workload.pods_by_role().items() for name in names}
        doc = {
            "job": job_id,
            "kind": workload.kind,
            "namespace": workload.namespace,
            "name": workload.name,
            "pods": {t.uid: roles[t.pod] for t in workload.tasks},
        }
        isolation.write_file(self.root / _safe(key), json.dumps(doc).encode())
        self.jobs[key], self.workloads[job_id] = job_id, key

    def pods(self, job_id: int) -> dict[str, str]:
        """The admitted pods of the job's workload: uid -> the task group's role."""
        return dict((self.info(job_id) or {}).get("pods") or {})

    def info(self, job_id: int) -> dict | None:
        key = self.workloads.get(job_id)
        if key is None:
            return None
        try:
            return json.loads((self.root / _safe(key)).read_text())
        except (OSError, ValueError):
            return None

    def drop(self, job_id: int) -> None:
        key = self.workloads.pop(job_id, None)
        if key is not None:
            self.jobs.pop(key, None)
            (self.root / _safe(key)).unlink(missing_ok=True)


def _safe(key: str) -> str:
    """A uid as a file name (uids are [0-9a-f-]; anything else is refused outright)."""
    if not key or not all(c in "0123456789abcdef-" for c in key) or len(key) > 64:
        raise ValueError(f"{key!r} is no Kubernetes uid")
    return key


def waiting_work(pods: list[dict], groups, catalog, ours) -> list[Workload]:
    """Every workload with pods waiting for wanka: a PodGroup's pending pods (once its PodGroup
    exists), each lone pending pod. ``groups``: the PodGroup informer (None without the CRD);
    ``ours(pod)``: whether wanka created the pod itself."""
    by_group: dict[tuple[str, str], list[dict]] = {}
    out = []
    for pod in pods:
        meta = pod["metadata"]
        if ours(pod) or not pending(pod) or "wanka.io/job" in (meta.get("labels") or {}):
            continue  # wanka's own, not waiting, or a look-alike of wanka's own (never taken)
        group = (meta.get("annotations") or {}).get(GROUP_ANNOTATION)
        if group:
            by_group.setdefault((meta.get("namespace", ""), group), []).append(pod)
        else:
            out.append(workload_of_pod(pod, catalog))
    for (ns, name), members in by_group.items():
        pg = groups.get(f"{ns}/{name}") if groups is not None else None
        if pg is not None:
            out.append(workload_of_group(pg, members, catalog))
    return out


class Reporter:
    """Says on the Kubernetes objects how wanka sees a workload: the PodGroup's ``status.phase``
    and a condition, each pending pod's ``PodScheduled`` condition (the reason it waits, as
    kube-scheduler writes ``Unschedulable``), and Events (``Scheduled`` on binding,
    ``FailedScheduling`` while it waits). Only changes are written."""

    def __init__(self, api, custom):
        self.api, self.custom = api, custom
        self.said: dict[str, tuple[str, str]] = {}  # workload key -> (phase, message) last written

    def workload(
        self, key: str, kind: str, namespace: str, name: str, pods: list[str], state: str, message: str
    ) -> None:
        phase = PHASES.get(state, "Pending")
        if self.said.get(key) == (phase, message):
            return
        self.said[key] = (phase, message)
        waiting = phase in ("Pending", "Inqueue")
        if kind == "PodGroup":
            condition = {
                "type": "Unschedulable" if waiting else "Scheduled",
                "status": "True",
                "reason": "Waiting" if waiting else state.capitalize(),
                "message": message[:1000],
                "lastTransitionTime": now_iso(),
                "transitionID": f"wanka-{int(time.time() * 1000)}",
            }
            body = {"status": {"phase": phase, "conditions": [condition]}}
            try:
                self.custom.patch_namespaced_custom_object_status(
                    PODGROUP[0], PODGROUP[1], namespace, PODGROUP[2], name, body
                )
            except Exception as exc:
                log.warning("PodGroup %s/%s: status not written (%s)", namespace, name, exc)
        if waiting:
            for pod in pods:
                self._pod_waits(namespace, pod, message)

    def _pod_waits(self, namespace: str, pod: str, message: str) -> None:
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"wanka: {message}"[:1000],
            "lastTransitionTime": now_iso(),
        }
        try:
            self.api.patch_namespaced_pod_status(pod, namespace, {"status": {"conditions": [condition]}})
            self.event(namespace, pod, "FailedScheduling", f"wanka: {message}", "Warning")
        except Exception as exc:
            log.info("pod %s/%s: condition not written (%s)", namespace, pod, exc)

    def event(self, namespace: str, pod: str, reason: str, message: str, kind: str = "Normal") -> None:
        """An Event about ``pod``, from the scheduler ``wanka`` (as kube-scheduler writes its)."""
        now = now_iso()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{pod[:200]}.", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace},
            "reason": reason,
            "message": message[:1000],
            "type": kind,
            "source": {"component": "wanka"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.create_namespaced_event(namespace, body)
        except Exception as exc:
            log.info("event on %s/%s not written (%s)", namespace, pod, exc)
