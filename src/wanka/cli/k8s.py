"""`wanka k8s`: what a Kubernetes cluster needs before `wanka server --backend kubernetes` takes
others' pods: Volcano's PodGroup CRD (``scheduling.volcano.sh/v1beta1``, as Volcano ships it, so
operators that emit PodGroups target wanka unchanged) and the ClusterRole the server's account
needs."""

from __future__ import annotations

import json

import typer

from wanka.cli.output import console, fail

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Kubernetes: install the PodGroup CRD and the server's ClusterRole.",
)


@app.callback()
def k8s() -> None:
    """Kubernetes: install the PodGroup CRD and the server's ClusterRole."""


@app.command("install")
def install(
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="The kubeconfig (default $KUBECONFIG)."),
    print_only: bool = typer.Option(
        False, "--print", help="Print the manifests (JSON) instead of applying them."
    ),
) -> None:
    """Create (or update) the PodGroup CRD and the ClusterRole wanka-server. Bind the role to the
    account the server runs as (a ClusterRoleBinding: docs/kubernetes.md)."""
    from wanka.backends._k8s_podgroups import CLUSTER_ROLE, PODGROUP_CRD

    if print_only:
        console.print_json(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": [PODGROUP_CRD, CLUSTER_ROLE]})
        )
        return
    from kubernetes import config

    from wanka.backends._k8s_podgroups import install_objects

    try:
        config.load_kube_config(config_file=kubeconfig)
    except Exception as exc:
        fail(f"--kubeconfig: no Kubernetes credentials ({exc})")
    try:
        for line in install_objects():
            console.print(line)
    except RuntimeError as exc:
        fail(str(exc))
