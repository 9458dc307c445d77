"""The Kubernetes backend: wanka decides, Kubernetes runs the pods.

Inventory: Node objects, followed by a watch (:mod:`._k8s_watch`). A node's cards are its
allocatable extended resource as the device plugins publish it (the catalog's ``k8s_resource``:
``huawei.com/Ascend910``, ``nvidia.com/gpu``, ``cambricon.com/mlu``, ...), its model read from the
labels that name it (``wanka.io/accelerator``, NVIDIA's ``nvidia.com/gpu.product``, Ascend's
``node.kubernetes.io/npu.chip.name``), its network domains from topology labels. NotReady nodes
fail the health check; nodes cordoned by someone else start out down; deleted ones leave.

Launch: each task of a run is one Pod (``wanka-JOB-RUN-TASK``) with ``schedulerName: wanka``, no
node, the argv as its command (no shell) and the environment contract of ARCHITECTURE.md. All of a
run's pods are created first, then each is bound with the Binding API (``pods/binding``) to the
node the core chose; if any creation or binding fails, every pod of the run is deleted: a gang is
bound whole or not at all. Names are fixed, so a launch repeated after a restart creates and binds
nothing twice (409); the uid of each pod wanka made is kept, so a pod a tenant made under such a
name, or with such labels, is never taken for wanka's.

Ending: pods carry the finalizer ``wanka.io/logs``. When a pod's container has ended, the server
reads its log (``pods/log``) and exit code into ``$WANKA_HOME/runs/JOB/RUN/`` (the server's alone),
then lets the pod go; so ``wanka logs`` and the exit codes outlive the pod, whose log files the
kubelet deletes with it. SIGTERM is the kubelet's graceful stop (``activeDeadlineSeconds``: SIGTERM,
the pod's grace period, SIGKILL; the pod kept until its end is read), SIGKILL a deletion with grace
0; pods on a node that is NotReady or gone are removed at once and count as lost, so the job
recovers from its checkpoint elsewhere.

Others' pods (``schedulerName: wanka``, PodGroups): :mod:`._k8s_foreign` and
:mod:`wanka.server.k8s_intake`; they are bound like wanka's, stopped by graceful deletion.

Adoption: the pod watch lists every pod whose ``spec.schedulerName`` is ``wanka`` at start, so a
restarted server sees the runs still going, and the records on disk say how ended ones ended.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wanka.backends import isolation
from wanka.backends._k8s_foreign import Claims, ForeignPods, Reporter
from wanka.backends._k8s_podgroups import PODGROUP, TENANT_LABEL
from wanka.backends._k8s_pods import (
    DEFAULT_TOPOLOGY_LABELS,
    DRAIN_TAINT,
    FINALIZER,
    LABEL_JOB,
    LABEL_RUN,
    LABEL_TASK,
    SCHEDULER,
    NodeInfo,
    api_message,
    main_container,
    namespace_for,
    node_info,
    pod_manifest,
    pod_name,
)
from wanka.backends._k8s_records import KEPT_LOG_MAX, RunRecords
from wanka.backends.base import (
    Backend,
    BackendUnavailable,
    Launch,
    TaskState,
    TaskStatus,
    inventory_spec,
    read_log,
    rendezvous_port,
)
from wanka.models.hardware import default_catalog

__all__ = ["TENANT_LABEL", "KubernetesBackend", "namespace_for"]

log = logging.getLogger("wanka.k8s")

STOP = {"spec": {"activeDeadlineSeconds": 1}}  # past for any running pod: the kubelet stops it
AT_ONCE = 8  # API calls side by side in a launch burst (the API server answers many at once)
LIVE_LOG_MAX = 16 * 2**20  # bytes of a running pod's log read through the API at most


class KubernetesBackend(ForeignPods, Backend):
    name = "kubernetes"
    inventory_may_change = True  # nodes join, leave, cordon and turn NotReady
    launches_per_tick = 512

    def __init__(
        self,
        home: Path,
        kubeconfig: str | None = None,
        namespace: str = "wanka",
        namespace_per_tenant: bool = False,
        pod_template: dict | None = None,
        topology_labels: tuple[str, ...] = DEFAULT_TOPOLOGY_LABELS,
        shared: Path | None = None,
        single_user: bool = False,
        task_uids: tuple[int, int] = (2_000_000, 2_099_999),
        grace_s: int = 10,
    ):
        from kubernetes import client, config

        self.home = Path(home)
        shared = Path(shared) if shared else self.home
        self.runs, self.checkpoints = self.home / "runs", shared / "checkpoints"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.records = RunRecords(self.runs)
        self.isolated = os.geteuid() == 0 and not single_user
        self.task_uids = task_uids
        if self.isolated:
            os.chmod(self.checkpoints, 0o711)
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise ValueError(f"--namespace: {namespace!r} is no namespace name (a DNS label: a-z, 0-9, -)")
        self.namespace, self.per_tenant = namespace, namespace_per_tenant
        self.template = pod_template or {}
        self.topology_labels = tuple(topology_labels)
        self.grace_s = grace_s
        self.catalog = default_catalog()
        cfg = client.Configuration()
        try:
            if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            else:  # running in a pod of the cluster: its service account
                config.load_incluster_config(client_configuration=cfg)
        except Exception as exc:
            raise ValueError(f"backend: no Kubernetes credentials ({exc})") from None
        cfg.connection_pool_maxsize = 2 * AT_ONCE
        api_client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(api_client)
        self.api = _Raw(self.core)
        self.custom = client.CustomObjectsApi(api_client)
        self.claims = Claims(self.home / "k8s-claims")
        self.reporter = Reporter(self.api, _Raw(self.custom))
        self.foreign_generation = 0  # bumped by every change to others' pods or PodGroups
        self._namespaces: set[str] = set()
        try:  # the namespaces wanka made (name -> uid): only those are a tenant's by their name
            self._made_namespaces: dict[str, str] = json.loads(
                (self.home / "k8s-namespaces.json").read_text()
            )
        except (OSError, ValueError):
            self._made_namespaces = {}
        self._launched: set[tuple[int, int]] = set()  # runs created here, maybe not yet watched
        self._reaping: set[str] = set()
        self._tasks: dict[tuple[int, int], dict[int, str]] = {}  # (job, run) -> task -> pod key
        self._node_infos: dict[str, NodeInfo] = {}  # kept by the node watch, one node per event
        self._foreign_pods: dict[str, tuple[int, int, int]] = {}  # others' pod -> (job, run, task)
        self._kept: set[str] = set()  # others' ended pods whose end is on record
        self._lock = threading.Lock()
        for job_id in list(self.claims.workloads):  # runs bound before a restart
            for run, pods in self.records.foreign_runs(job_id).items():
                self._index_foreign(job_id, run, pods)
        self._pool = ThreadPoolExecutor(max_workers=AT_ONCE, thread_name_prefix="k8s")
        from wanka.backends._k8s_watch import Informer

        try:
            self.nodes = Informer("nodes", self.core.list_node, self._node_event).start()
            # every pod for wanka: its own, and others' that name it their scheduler
            self.pods = Informer(
                "pods",
                self.core.list_pod_for_all_namespaces,
                self._pod_event,
                field_selector=f"spec.schedulerName={SCHEDULER}",
            ).start()
            self.namespace_objects = Informer(
                "namespaces", self.core.list_namespace, self._other_event
            ).start()
        except Exception as exc:
            raise ValueError(
                f"backend: the Kubernetes API server cannot be reached ({api_message(exc)})"
            ) from None
        self.podgroups = None  # without the CRD (`wanka k8s install`), others' pods come one by one
        try:
            self.podgroups = Informer(
                "podgroups",
                functools.partial(self.custom.list_cluster_custom_object, *PODGROUP),
                self._other_event,
            ).start()
        except Exception as exc:
            log.warning(
                "no PodGroups followed (%s): run `wanka k8s install` for gangs of others' pods",
                api_message(exc),
            )

    def close(self) -> None:
        for informer in (self.nodes, self.pods, self.namespace_objects, self.podgroups):
            if informer is not None:
                informer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- inventory -----------------------------------------------------------------------------

    def _infos(self) -> dict[str, NodeInfo]:
        """The nodes with cards wanka knows, as of the last node event (a copy)."""
        with self._lock:
            return dict(self._node_infos)

    def cluster_spec(self) -> dict:
        """Nodes with cards wanka knows, as pools of identical nodes (model, cards, CPUs, memory);
        NotReady nodes and nodes cordoned outside wanka start out down."""
        infos = self._infos()
        if not infos:
            raise ValueError(
                "backend: Kubernetes reports no node with an accelerator resource wanka knows "
                "(allocatable huawei.com/Ascend910, nvidia.com/gpu, ...)"
            )
        pools: dict[tuple, list[str]] = {}
        for info in sorted(infos.values(), key=lambda i: i.name):
            pools.setdefault((info.model, info.cards, info.cpus, info.memory_gib), []).append(info.name)
        depth = max((len(i.domains) for i in infos.values()), default=0)
        domains = {i.name: list(i.domains) for i in infos.values() if depth and len(i.domains) == depth}
        tiers = [label.rsplit("/", 1)[-1] for label in self.topology_labels[::-1][:depth]] if domains else []
        states = {i.name: "down" for i in infos.values() if not i.ready or i.cordoned_by_others}
        return inventory_spec("kubernetes", "Kubernetes", pools, tiers, domains, states)

    def unhealthy_nodes(self, nodes: list[str]) -> dict[str, str]:
        """NotReady nodes (the kubelet stopped reporting, or says so), and nodes cordoned outside
        wanka."""
        infos = self._infos()
        out = {}
        for name in nodes:
            info = infos.get(name)
            if info is None:
                continue  # left the cluster: the inventory takes it away
            if not info.ready:
                out[name] = "NotReady in Kubernetes"
            elif info.cordoned_by_others:
                out[name] = "cordoned in Kubernetes"
        return out

    def _node_event(self, kind: str, obj: dict) -> None:
        # one node at a time: a cluster's kubelets update their nodes every few seconds, and
        # reading all 1,250 again on each would cost the launches their time
        name = obj["metadata"]["name"]
        info = None if kind == "DELETED" else node_info(obj, self.catalog, self.topology_labels)
        with self._lock:
            if info is None:
                self._node_infos.pop(name, None)
            else:
                self._node_infos[name] = info
        self.on_change()

    def node_address(self, node: str) -> str:
        info = self._node_infos.get(node)
        return info.address if info else node

    def free_port(self, node: str) -> int:
        return rendezvous_port(local=self.node_address(node) in ("127.0.0.1", "localhost"))

    def checkpoint_dir(self, job_id: int) -> str:
        return str(self.checkpoints / str(job_id))

    def run_dir(self, job_id: int, run: int) -> Path:
        return self.records.run_dir(job_id, run)

    def set_node_state(self, node: str, state: str, reason: str) -> None:
        """A wanka drain cordons the node and taints it ``wanka.io/drain:NoSchedule`` (so other
        schedulers keep off too, and wanka knows the cordon is its own); undrain lifts both."""
        current = self.nodes.get(node)
        if current is None:
            return
        taints = [t for t in (current.get("spec") or {}).get("taints") or () if t.get("key") != DRAIN_TAINT]
        draining = state == "draining"
        if draining:
            taints.append({"key": DRAIN_TAINT, "value": "true", "effect": "NoSchedule"})
        body = {"spec": {"unschedulable": draining or None, "taints": taints or None}}
        try:
            self.api.patch_node(node, body)
        except Exception as exc:
            raise BackendUnavailable(f"cordon {node}: {api_message(exc)}") from None

    # --- launch --------------------------------------------------------------------------------

    def launch(self, launch: Launch) -> None:
        error = self.launch_many([launch]).get(launch.job_id)
        if error is not None:
            raise error

    def launch_many(self, launches: list[Launch]) -> dict[int, Exception | None]:
        """Every run's pods created and bound, runs side by side (AT_ONCE API calls at a time):
        one after another, each call's ~5 ms round trip would cap a burst near 100 pods/s. Each
        run gets its own outcome (:meth:`_launch_or_error`)."""
        if not launches:
            return {}
        results = self._pool.map(self._launch_or_error, launches)
        return dict(zip((lc.job_id for lc in launches), results, strict=True))

    def _launch_or_error(self, launch: Launch) -> Exception | None:
        """None, or why not: ValueError for a run Kubernetes refused (the job fails with the
        reason), BackendUnavailable for an API server that did not answer (tried again later)."""
        try:
            self._launch(launch)
            return None
        except (ValueError, BackendUnavailable) as exc:
            return exc
        except Exception as exc:
            if _refused(exc):
                return ValueError(f"Kubernetes refused the pods: {api_message(exc)}")
            return BackendUnavailable(f"Kubernetes: {api_message(exc)}")

    def _launch(self, launch: Launch) -> None:
        from kubernetes.client.rest import ApiException

        if launch.job_id in self.claims.workloads:
            return self._bind_foreign(launch)
        namespace = self._namespace(launch.tenant)
        account = None
        if self.isolated:
            account = isolation.launch_account(self.home, launch.tenant, launch.tenant_id, self.task_uids)
        isolation.private_dir(Path(launch.checkpoint_dir), account)
        isolation.private_dir(self.run_dir(launch.job_id, launch.run).parent, None)
        isolation.private_dir(self.run_dir(launch.job_id, launch.run), None)
        pods = []
        for task in launch.tasks:
            info = self._node_infos.get(task.node)
            if info is None:
                raise ValueError(f"node {task.node} is not in the Kubernetes cluster any more")
            model = self.catalog.get(info.model)
            pods.append(
                pod_manifest(
                    launch,
                    task,
                    namespace=namespace,
                    resource=info.resource,
                    cards=len(task.devices) // max(1, model.devices_per_card),
                    visible_env=model.visible_devices_env,
                    template=self.template,
                    grace_s=self.grace_s,
                    run_as=(account.uid, account.gid) if account is not None else None,
                    base_env={"HOME": "/tmp", "TMPDIR": "/tmp"} if account is not None else {},
                )
            )
        self.records.mark_namespace(launch.job_id, launch.run, namespace)
        with self._lock:
            self._launched.add((launch.job_id, launch.run))
        try:
            for pod, task in zip(pods, launch.tasks, strict=True):
                name = pod["metadata"]["name"]
                try:
                    made = json.loads(self.api.create_namespaced_pod(namespace, pod))
                    self.records.mark_uid(launch.job_id, launch.run, task.index, made["metadata"]["uid"])
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    # a pod of that name exists: wanka's own from before a restart, or one a
                    # tenant made to be taken for it (its spec, its mounts): never bound then
                    there = json.loads(self.api.read_namespaced_pod(name, namespace))
                    if there["metadata"].get("uid") != self.records.uid(
                        launch.job_id, launch.run, task.index
                    ):
                        raise ValueError(f"a pod named {name} in {namespace} is not one wanka made") from None
            for pod, task in zip(pods, launch.tasks, strict=True):
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": pod["metadata"]["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": task.node},
                }
                try:
                    self.api.create_namespaced_pod_binding(pod["metadata"]["name"], namespace, binding)
                except ApiException as exc:
                    if exc.status != 409 or not self._bound_to(namespace, pod, task.node):
                        raise
        except Exception as exc:
            # all or nothing: no pod of a run that could not be bound whole stays behind (when
            # the API server cannot be reached, the launch is repeated later: same names, no twins)
            try:
                self._delete_run(launch.job_id, launch.run, len(launch.tasks), namespace)
            except Exception as cleanup:
                log.warning(
                    "pods of job %d run %d not deleted: %s", launch.job_id, launch.run, api_message(cleanup)
                )
            with self._lock:
                self._launched.discard((launch.job_id, launch.run))
            if isinstance(exc, ValueError):  # wanka's own refusal, with its reason
                raise
            if not _refused(exc):
                raise BackendUnavailable(f"Kubernetes: {api_message(exc)}") from None
            raise ValueError(f"Kubernetes refused the pods: {api_message(exc)}") from None

    # --- namespaces ----------------------------------------------------------------------------

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        obj = self.namespace_objects.get(namespace)
        return dict((obj or {}).get("metadata", {}).get("labels") or {})

    def _bound_to(self, namespace: str, pod: dict, node: str) -> bool:
        return (
            json.loads(self.api.read_namespaced_pod(pod["metadata"]["name"], namespace))
            .get("spec", {})
            .get("nodeName")
            == node
        )

    def _namespace(self, tenant: str) -> str:
        from kubernetes.client.rest import ApiException

        name = namespace_for(tenant, self.per_tenant, self.namespace)
        if name in self._namespaces:
            return name
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                # the tenant as a label where it is a valid label value (DNS-ish, 63 at most)
                "labels": {"wanka.io/managed": "true"}
                | (
                    {TENANT_LABEL: tenant}
                    if re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", tenant)
                    else {}
                ),
                "annotations": {"wanka.io/tenant": tenant},
            },
        }
        try:
            made = json.loads(self.api.create_namespace(body))
            self._made_namespaces[name] = made["metadata"]["uid"]
            isolation.write_file(
                self.home / "k8s-namespaces.json", json.dumps(self._made_namespaces).encode()
            )
        except ApiException as exc:
            if exc.status != 409:
                raise BackendUnavailable(f"namespace {name}: {api_message(exc)}") from None
            if (
                self.per_tenant
                and not self.made_namespace(name)
                and self.namespace_labels(name).get(TENANT_LABEL) != tenant
            ):
                # someone else made it (a user who may create namespaces): the tenant's pods,
                # env and logs would be theirs to read
                raise ValueError(
                    f"namespace {name} exists and wanka did not make it: delete it, or label it "
                    f"{TENANT_LABEL}={tenant} if it is the tenant's"
                ) from None
        self._namespaces.add(name)
        return name

    def made_namespace(self, name: str) -> bool:
        """Whether the namespace ``name`` is the one wanka made (same uid: not one deleted and
        made again by someone else)."""
        obj = self.namespace_objects.get(name)
        uid = (obj or {}).get("metadata", {}).get("uid")
        return bool(uid) and self._made_namespaces.get(name) == uid

    def _delete_run(self, job_id: int, run: int, tasks: int, namespace: str) -> None:
        """Every pod wanka made for the run gone now: finalizer dropped, deleted with grace 0
        (a pod of the same name it did not make is left alone)."""
        for i in range(tasks):
            uid = self.records.uid(job_id, run, i)
            if uid:
                self._release(namespace, pod_name(job_id, run, i), uid)

    # --- status --------------------------------------------------------------------------------

    def _pod(self, job_id: int, run: int, task: int) -> dict | None:
        key = self._tasks.get((job_id, run), {}).get(task)
        return self.pods.get(key) if key else None

    def status(self, job_id: int, run: int, tasks: int) -> list[TaskStatus]:
        out = []
        for i in range(tasks):
            record = self.records.end(job_id, run, i)
            if record is not None:
                out.append(record)
                continue
            pod = self._pod(job_id, run, i)
            if pod is None:
                launched = (job_id, run) in self._launched
                out.append(TaskStatus(i, TaskState.RUNNING if launched else TaskState.ABSENT))
                continue
            out.append(_pod_status(i, pod) or TaskStatus(i, TaskState.RUNNING))
        return out

    def _ours(self, pod: dict) -> bool:
        """Whether wanka created ``pod`` for one of its runs: its labels, its name, the namespace
        the run was given and the uid the API server gave the pod wanka created. A look-alike —
        same labels and name, made by a tenant in its own namespace — is someone else's pod."""
        ids = _ids(pod)
        meta = pod["metadata"]
        return (
            ids is not None
            and meta.get("name") == pod_name(*ids)
            and meta.get("namespace") == self.records.namespace(*ids[:2])
            and bool(meta.get("uid"))
            and meta.get("uid") == self.records.uid(*ids)
        )

    def _other_event(self, kind: str, obj: dict) -> None:
        self.foreign_generation += 1
        self.on_change()

    def _pod_event(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        if not self._ours(pod):  # someone else's: waiting for wanka, or bound by it to a job's run
            self.foreign_generation += 1
            ids = self._foreign_pods.get(key)
            if ids is not None and kind != "DELETED" and key not in self._kept:
                ended = _pod_status(ids[2], pod)
                if ended is not None:
                    self._kept.add(key)
                    self._pool.submit(self._keep_end, pod, ids, ended)
            self.on_change()
            return
        job_id, run, task = _ids(pod)
        with self._lock:
            if kind == "DELETED":
                tasks = self._tasks.get((job_id, run), {})
                if tasks.get(task) == key:
                    del tasks[task]
                    if not tasks:
                        self._tasks.pop((job_id, run), None)
            else:
                self._tasks.setdefault((job_id, run), {})[task] = key
        if kind != "DELETED" and FINALIZER in (meta.get("finalizers") or ()):
            ended = _pod_status(task, pod)
            if ended is not None:
                with self._lock:
                    if key in self._reaping:
                        return
                    self._reaping.add(key)
                self._pool.submit(self._reap, pod, ended)
        self.on_change()

    def _reap(self, pod: dict, ended: TaskStatus) -> None:
        """An ended pod: its log and exit code kept on the server, then the pod let go."""
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}/{name}"
        try:
            job_id, run, task = _ids(pod)
            self.records.keep(
                job_id, run, task, ended, self._pod_log(ns, name, main_container(pod), KEPT_LOG_MAX)
            )
            self._release(ns, name, meta["uid"])
        except Exception:
            log.exception("keeping the end of pod %s failed; trying again on its next change", key)
        finally:
            with self._lock:
                self._reaping.discard(key)

    def _release(self, namespace: str, name: str, uid: str) -> None:
        """Drop wanka's finalizer and delete the pod (grace 0: it has ended, or must go now) —
        only the pod of that uid: another of the same name is not wanka's to touch."""
        from kubernetes.client.rest import ApiException

        drop = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "replace", "path": "/metadata/finalizers", "value": []},
        ]
        try:
            self.api.patch_namespaced_pod(name, namespace, drop)
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status != 422:  # 422: not that pod (the test failed), or no finalizers left
                raise
        try:
            self.api.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, body={"preconditions": {"uid": uid}}
            )
        except ApiException as exc:
            if exc.status not in (404, 409):  # 409: the precondition failed: another pod
                raise

    def _pod_log(self, namespace: str, name: str, container: str, limit: int) -> bytes:
        try:
            return self.api.read_namespaced_pod_log(name, namespace, container=container, limit_bytes=limit)
        except Exception:  # never ran on a kubelet (a fake node), or its node is gone
            return b""

    def signal(self, job_id: int, run: int, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: the kubelet's graceful stop — ``activeDeadlineSeconds`` set to 1 s, which has
        passed, so the kubelet sends SIGTERM, waits the pod's grace period and kills, and marks
        the pod Failed (DeadlineExceeded) *without deleting it*: a deleted pod's container, log
        and exit code are removed by the kubelet as soon as it stopped, before anyone can read
        them. Once they are kept, the pod is deleted. SIGKILL: deletion with grace 0. A pod whose
        node is NotReady or gone cannot be stopped there: it is recorded as lost and removed at
        once."""
        from kubernetes.client.rest import ApiException

        for task, key in list(self._tasks.get((job_id, run), {}).items()):
            pod = self.pods.get(key)
            if pod is None:
                continue
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            node = (pod.get("spec") or {}).get("nodeName")
            info = self._node_infos.get(node) if node else None
            if node and (info is None or not info.ready):
                lost = TaskStatus(task, TaskState.EXITED, None, time.time(), f"was lost with node {node}")
                self.records.keep(job_id, run, task, lost)
                if key in self._foreign_pods:
                    self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                else:
                    self._release(ns, name, pod["metadata"]["uid"])
                continue
            try:
                if key in self._foreign_pods:  # someone else's pod: a graceful deletion, its own grace
                    grace = {"grace_period_seconds": 0} if sig == signal.SIGKILL else {}
                    if sig != signal.SIGKILL:  # its log so far: the kubelet removes it with the pod
                        self._keep_log(pod, job_id, run, task)
                    self.api.delete_namespaced_pod(name, ns, **grace)
                elif sig == signal.SIGKILL:
                    self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                else:  # the kubelet's graceful stop, the pod (its log, its exit code) kept
                    self.api.patch_namespaced_pod(name, ns, STOP)
            except ApiException as exc:
                if exc.status not in (404, 422):  # 422: a deadline below 1 s was set already
                    raise BackendUnavailable(f"stop pod {name}: {api_message(exc)}") from None

    def logs(self, job_id: int, run: int, task: int, offset: int, limit: int) -> tuple[bytes, int]:
        """Kept output once the pod ended; before, the pod's log through the API server (the
        first LIVE_LOG_MAX bytes, or the last with a negative offset)."""
        path = self.records.log_path(job_id, run, task)
        if path.exists():
            return read_log(path, offset, limit)
        pod = self._pod(job_id, run, task)
        if pod is None:
            return b"", max(offset, 0)
        want = LIVE_LOG_MAX if offset < 0 else min(LIVE_LOG_MAX, offset + limit)
        data = self._pod_log(pod["metadata"]["namespace"], pod["metadata"]["name"], main_container(pod), want)
        start = max(0, len(data) + offset) if offset < 0 else offset
        chunk = data[start : start + limit]
        return chunk, start + len(chunk)


class _Raw:
    """The official client's calls answered as the raw bytes: its typed models cost ~10x more to
    build than the JSON, and a response must be read whole for its connection to go back to the
    pool (one left unread means a new TLS handshake for the next call)."""

    def __init__(self, api):
        self._api = api

    def __getattr__(self, name: str):
        fn = getattr(self._api, name)

        def call(*args, **kwargs) -> bytes:
            resp = fn(*args, _preload_content=False, **kwargs)
            try:
                return resp.data
            finally:
                resp.release_conn()

        return call


def _ids(pod: dict) -> tuple[int, int, int] | None:
    """(job, run, task) of a pod wanka created, from its labels; None for any other."""
    labels = pod["metadata"].get("labels") or {}
    try:
        return int(labels[LABEL_JOB]), int(labels[LABEL_RUN]), int(labels[LABEL_TASK])
    except (KeyError, ValueError):
        return None


def _pod_status(index: int, pod: dict) -> TaskStatus | None:
    """An ended pod's task status (None while it runs or waits to start)."""
    status = pod.get("status") or {}
    running = False
    for c in status.get("containerStatuses") or ():
        if c.get("name") != main_container(pod):
            continue
        state = c.get("state") or {}
        done = state.get("terminated")
        if done is not None:
            return TaskStatus(index, TaskState.EXITED, done.get("exitCode"), _seconds(done.get("finishedAt")))
        running = "running" in state
    meta = pod["metadata"]
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
        # the kubelet is done with it (it deletes with grace 0 once every container stopped), or
        # it was killed outright, before its container showed an end
        return TaskStatus(index, TaskState.EXITED, None, _seconds(meta["deletionTimestamp"]), "was stopped")
    if status.get("phase") == "Failed" and not running:
        # refused by the kubelet (OutOf<resource>, NodeAffinity). Not a pod past its
        # activeDeadlineSeconds whose container still runs its SIGTERM handler: kubelet v1.20
        # posts that phase before it stops the container, whose grace period is its own
        why = status.get("reason") or "Failed"
        return TaskStatus(
            index,
            TaskState.EXITED,
            None,
            None,
            f"was refused by the node: {why} {status.get('message', '')}".strip(),
        )
    return None


def _seconds(stamp: str | None) -> float | None:
    if not stamp:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _refused(exc: Exception) -> bool:
    """An answer from the API server that says no (4xx), not one that never came or a 5xx."""
    from kubernetes.client.rest import ApiException

    return isinstance(exc, ApiException) and exc.status is not None and 400 <= exc.status < 500
