"""The Kubernetes backend's half of others' work (PodGroups and lone pods with ``schedulerName:
wanka``): which of them wait, which wanka job each became, binding them where the core placed
the job, and saying on their objects how they fare. The server's half (jobs from workloads,
tenants from namespaces) is :mod:`wanka.server.k8s_intake`."""

from __future__ import annotations

import contextlib
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
from wanka.backends._k8s_pods import api_message, main_container
from wanka.backends._k8s_records import KEPT_LOG_MAX
from wanka.backends.base import Launch, TaskStatus

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


class ForeignPods:
    """The Kubernetes backend's methods for others' pods (mixed into
    :class:`wanka.backends.k8s.KubernetesBackend`, whose API client, caches and records they use)."""

    def foreign_work(self) -> list[Workload]:
        """Others' workloads with pods waiting for wanka (:func:`waiting_work`)."""
        return waiting_work(self.pods.snapshot(), self.podgroups, self.catalog, self._ours)

    def _index_foreign(self, job_id: int, run: int, pods: dict[str, str]) -> None:
        with self._lock:
            self._tasks[(job_id, run)] = {int(t): key for t, key in pods.items()}
            for t, key in pods.items():
                self._foreign_pods[key] = (job_id, run, int(t))

    def _bind_foreign(self, launch: Launch) -> None:
        """Bind a workload's waiting pods to the nodes the core chose for its job's tasks, role by
        role in name order — only pods of the shape (cards, CPUs, memory) the job was admitted
        with, and on the first run only the very pods admitted (a bigger pod slipped into the
        PodGroup later is not bound in their place). All or none: pods bound before a failure
        are deleted (a pod of a gang must not run alone; their owner makes them again)."""
        from kubernetes.client.rest import ApiException

        key = self.claims.workloads[launch.job_id]
        work = next((w for w in self.foreign_work() if w.key == key), None)
        if work is None:
            raise ValueError(
                "its pods are no longer waiting in Kubernetes (deleted, or bound by another scheduler)"
            )
        # the first run binds the pods admitted, each in its role; a later one (after a
        # preemption) those its owner made again — of the shapes admitted, whatever else waits
        admitted = self.claims.pods(launch.job_id) if launch.run == 1 else None
        used: set[str] = set()
        pods = {}
        for task in launch.tasks:
            info = self._node_infos.get(task.node)
            per_card = self.catalog.get(info.model).devices_per_card if info else 1
            shape = (len(task.devices) // per_card, task.cpus, task.memory_gib)
            fits = [
                t
                for t in sorted(work.tasks, key=lambda t: t.pod)
                if t.uid not in used
                and (t.cards, t.cpus, t.memory_gib) == shape
                and (admitted is None or admitted.get(t.uid) == task.role)
            ]
            if not fits:
                raise ValueError(
                    f"no pod of {work.kind} {work.name} waits for task {task.index} ({task.role}, "
                    f"{shape[0]} cards): the pods admitted were deleted or changed"
                )
            used.add(fits[0].uid)
            pods[task.index] = (fits[0].pod, task.node)
        record = {str(t): f"{work.namespace}/{name}" for t, (name, _) in pods.items()}
        self.records.mark_foreign(launch.job_id, launch.run, record)
        self._index_foreign(launch.job_id, launch.run, record)
        bound = []
        try:
            for name, node in pods.values():
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                }
                try:
                    self.api.create_namespaced_pod_binding(name, work.namespace, binding)
                except ApiException as exc:
                    if exc.status != 409 or not self._bound_to(
                        work.namespace, {"metadata": {"name": name}}, node
                    ):
                        raise
                bound.append(name)
        except Exception as exc:
            for name in bound:
                with contextlib.suppress(ApiException):
                    self.api.delete_namespaced_pod(name, work.namespace, grace_period_seconds=0)
            raise ValueError(
                f"Kubernetes refused a binding of {work.kind} {work.name}: {api_message(exc)}"
            ) from None
        for name, node in pods.values():
            self.reporter.event(
                work.namespace,
                name,
                "Scheduled",
                f"Successfully assigned {work.namespace}/{name} to {node} (wanka job {launch.job_id})",
            )

    def _keep_end(self, pod: dict, ids: tuple[int, int, int], ended: TaskStatus) -> None:
        """Someone else's pod of a wanka job ended: its log and exit code on record (the pod
        stays: it is its owner's to delete)."""
        meta = pod["metadata"]
        job_id, run, task = ids
        try:
            log_now = None
            if not meta.get("deletionTimestamp"):  # stopped by wanka: its log was kept then
                log_now = self._pod_log(meta["namespace"], meta["name"], main_container(pod), KEPT_LOG_MAX)
            self.records.keep(job_id, run, task, ended, log_now)
        except Exception:
            log.exception("keeping the end of pod %s/%s failed", meta["namespace"], meta["name"])
            self._kept.discard(f"{meta['namespace']}/{meta['name']}")

    def _keep_log(self, pod: dict, job_id: int, run: int, task: int) -> None:
        """The log of someone else's pod as it is now, kept before wanka deletes the pod."""
        meta = pod["metadata"]
        data = self._pod_log(meta["namespace"], meta["name"], main_container(pod), KEPT_LOG_MAX)
        self.records.keep(job_id, run, task, log=data)


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
