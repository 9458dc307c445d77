"""A real Kubernetes v1.20 on this machine for tests and benchmarks: the project's kit
(``../shared/k8s``: etcd, kube-apiserver, kube-controller-manager and, with a node, containerd +
kubelet, all on 127.0.0.1 under one state directory, stopped by their pids). Needs root and the
kit's packages (``k8s_install.sh``, which ``.ci/setup`` runs).

The kit is found at ``$WANKA_K8S_KIT``, else at ``shared/k8s`` beside the project or any
directory above it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the project (src/wanka/backends/ -> .)
BIN = Path(os.environ.get("K8S_KIT_BIN_DIR", "/var/cache/wanka-k8s/v1.20.2"))


def kit_dir() -> Path | None:
    """The kit's directory, or None."""
    if os.environ.get("WANKA_K8S_KIT"):
        return Path(os.environ["WANKA_K8S_KIT"])
    for parent in ROOT.parents:
        if (parent / "shared" / "k8s" / "k8s_up.sh").exists():
            return parent / "shared" / "k8s"
    return None


def available() -> str | None:
    """Why the kit cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the kit starts kubelet and containerd as root"
    kit = kit_dir()
    if kit is None or not (kit / "k8s_up.sh").exists():
        return "the Kubernetes kit (shared/k8s beside the project, or $WANKA_K8S_KIT) is missing"
    for path in (BIN / "kube-apiserver", BIN / "kubelet", Path("/usr/bin/etcd"), Path("/usr/bin/containerd")):
        if not path.exists():
            return f"{path} is missing (run {kit / 'k8s_install.sh'})"
    return None


def kit_module():
    """The kit's ``k8s_kit`` (a small standard-library client: fake nodes, FakeKubelet, advertise)."""
    kit = str(kit_dir())
    if kit not in sys.path:
        sys.dont_write_bytecode = True  # the kit's directory may be read-only
        sys.path.insert(0, kit)
    return importlib.import_module("k8s_kit")


class KubeKit:
    """One kit under ``state``: :meth:`start` (about 18 s with a node, 6 s without), :meth:`stop`."""

    def __init__(
        self,
        state: Path,
        node: bool = True,
        controllers: str | None = None,
        node_resources: str = "huawei.com/Ascend910=8",
    ):
        self.state, self.node = Path(state), node
        self.environ = {**os.environ, "K8S_NODE_RESOURCES": node_resources}
        if controllers is not None:  # e.g. '*,-nodeipam': with node-lifecycle (NotReady after 40 s)
            self.environ["K8S_KCM_CONTROLLERS"] = controllers
        self.kit = kit_module()
        self.env: dict[str, str] = {}
        self.kube = None

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def node_name(self) -> str:
        return self.env.get("K8S_NODE_NAME", "")

    def start(self) -> KubeKit:
        argv = ["bash", str(kit_dir() / "k8s_up.sh"), str(self.state), *(["--kubelet"] if self.node else [])]
        out = subprocess.run(argv, env=self.environ, capture_output=True, text=True, timeout=400)
        if out.returncode != 0:
            raise RuntimeError(f"k8s_up.sh failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
        self.env = self.kit.read_env(str(self.state))
        self.kube = self.kit.Kube.from_state(str(self.state))
        return self

    def stop(self) -> None:
        out = subprocess.run(
            ["bash", str(kit_dir() / "k8s_down.sh"), str(self.state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:  # a process survived: say so (the script names it)
            raise RuntimeError(f"k8s_down.sh failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")

    def install(self) -> list[str]:
        """`wanka k8s install` on this kit."""
        from kubernetes import client, config

        from wanka.backends._k8s_podgroups import install_objects

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            return install_objects(api)

    def host_template(self, project_dir: Path = ROOT) -> dict:
        """A pod template that runs this machine's Python (and the project's venv) in the kit's
        ``docker.io/local/host:1`` image, as ``--pod-template`` takes it."""
        pod = self.kit.host_python_pod("template", [], project_dir=str(project_dir))
        pod["spec"]["containers"][0].pop("command", None)
        pod["metadata"] = {"labels": {"app.kubernetes.io/managed-by": "wanka"}}
        return pod

    def fake_cluster(
        self,
        nodes: int,
        cards: int = 8,
        prefix: str = "fake-",
        rack: int = 32,
        racks_per_block: int = 8,
        resource: str = "huawei.com/Ascend910",
        chip: str = "910B3",
    ) -> list[str]:
        """``nodes`` fake nodes of ``cards`` cards (the 10,000-card preset's shape: 1,250 x 8),
        labelled with their chip and their rack and block (``rack`` nodes a rack, the Kueue-style
        topology labels the backend reads by default). Returns their names."""
        names = []
        for start in range(0, nodes, rack):
            r = start // rack
            labels = {
                "node.kubernetes.io/npu.chip.name": chip,
                "network.topology.kubernetes.io/block": f"block-{r // racks_per_block}",
                "network.topology.kubernetes.io/rack": f"rack-{r}",
            }
            names += self.kit.create_fake_nodes(
                self.kube, min(rack, nodes - start), prefix=prefix, resources={resource: str(cards)},
                start=start, workers=8, labels=labels,
            )  # fmt: skip
        return names
