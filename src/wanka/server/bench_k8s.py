"""`wanka bench k8s`: the Kubernetes backend against the kit's real API server (control plane,
no kubelet) with fake nodes of the 10,000-card preset's shape (1,250 x 8 Ascend cards).

Figures:

- inventory load: the backend's start (one LIST of nodes, one of pods, watches opened) and the
  cluster spec the server parses, median of ``repeats`` starts;
- following: a cordon made in Kubernetes until the backend reports the node unhealthy (the
  watch's latency), median of ``repeats``;
- decision to bound: each run's time from being handed to the backend (``launch_many``, as the
  control loop does with a tick's decisions) to its pod's binding accepted, median and p90;
- pods bound per second over the burst (goal ≥ 100/s on 2 cores; kube-scheduler managed ~30/s
  in a 5,000-node density run, kubernetes#56714).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

GOALS = {"pods_bound_per_s": 100.0}


def bench_k8s(nodes: int = 1250, cards: int = 8, pods: int = 1000, repeats: int = 5) -> dict:
    from wanka.backends import k8s_testbed
    from wanka.backends.base import Launch, TaskLaunch
    from wanka.models.cluster import parse_cluster

    why = k8s_testbed.available()
    if why:
        raise RuntimeError(f"no Kubernetes kit here: {why}")
    _Timed = _timed()
    with tempfile.TemporaryDirectory(prefix="wanka-bench-k8s-") as tmp:
        kit = k8s_testbed.KubeKit(Path(tmp) / "kit", node=False)
        t0 = time.perf_counter()
        kit.start()
        up = time.perf_counter() - t0
        try:
            kit.install()  # the PodGroup CRD, as an operator would have it
            t0 = time.perf_counter()
            names = kit.fake_cluster(nodes, cards)
            created = time.perf_counter() - t0
            loads, follows = [], []
            for i in range(repeats):
                t0 = time.perf_counter()
                b = _Timed(Path(tmp) / f"home{i}", kubeconfig=str(kit.kubeconfig), single_user=True)
                cluster = parse_cluster(b.cluster_spec(), "kubernetes")
                loads.append(time.perf_counter() - t0)
                assert len(cluster.node_names) == nodes
                node = names[i]
                t0 = time.perf_counter()
                kit.kube.patch(f"/api/v1/nodes/{node}", {"spec": {"unschedulable": True}})
                while node not in b.unhealthy_nodes([node]):
                    time.sleep(0.001)
                follows.append(time.perf_counter() - t0)
                kit.kube.patch(f"/api/v1/nodes/{node}", {"spec": {"unschedulable": None}})
                if i < repeats - 1:
                    b.close()
            # the burst: one single-card run per pod, spread over the nodes as a tick's decisions
            launches = [
                Launch(
                    job_id=j,
                    run=1,
                    name="bench",
                    argv=("python3", "-c", "pass"),
                    tasks=(TaskLaunch(0, "worker", names[j % nodes], (j // nodes % cards,), {"RANK": "0"}),),
                    checkpoint_dir=b.checkpoint_dir(j),
                    tenant="bench",
                    tenant_id=1,
                )
                for j in range(1, pods + 1)
            ]
            # one decision at a time, the cluster idle: the backend's own latency
            single = []
            for lc in launches[:20]:
                t0 = time.perf_counter()
                b.launch(lc)
                single.append(1000 * (time.perf_counter() - t0))
            # the rest as a burst, a tick's worth of decisions at a time
            handed: dict[int, float] = {}
            t0 = time.perf_counter()
            rest = launches[20:]
            for i in range(0, len(rest), b.launches_per_tick):
                chunk = rest[i : i + b.launches_per_tick]
                handed.update(dict.fromkeys((lc.job_id for lc in chunk), time.perf_counter()))
                errors = b.launch_many(chunk)
                bad = [e for e in errors.values() if e is not None]
                if bad:
                    raise RuntimeError(f"{len(bad)} launches failed: {bad[0]}")
            wall = time.perf_counter() - t0
            pods_now = kit.kube.get("/api/v1/namespaces/wanka/pods")["items"]
            bound = sum(1 for p in pods_now if p["spec"].get("nodeName"))
            burst = sorted(1000 * (b.bound_at[j] - handed[j]) for j in handed)
            b.close()
        finally:
            kit.stop()
    return {
        "nodes": nodes,
        "cards_per_node": cards,
        "kit_up_s": up,
        "fake_nodes_created_s": created,
        "inventory_load_s_median": statistics.median(loads),
        "inventory_load_s_max": max(loads),
        "cordon_seen_ms_median": 1000 * statistics.median(follows),
        "decision_to_bound_ms_median": statistics.median(single),
        "decision_to_bound_ms_p90": sorted(single)[int(0.9 * (len(single) - 1))],
        "pods": pods,
        "pods_bound": bound,
        "burst_pods": len(rest),
        "burst_s": wall,
        "pods_bound_per_s": len(rest) / wall,
        "burst_decision_to_bound_ms_median": statistics.median(burst),
        "burst_decision_to_bound_ms_p90": burst[int(0.9 * (len(burst) - 1))],
    }


def _timed():
    from wanka.backends.k8s import KubernetesBackend

    class Timed(KubernetesBackend):
        """Notes when each run's pods were bound (the end of its launch)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.bound_at: dict[int, float] = {}

        def _launch(self, launch):
            super()._launch(launch)
            self.bound_at[launch.job_id] = time.perf_counter()

    return Timed
