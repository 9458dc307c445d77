"""`wanka k8s`: what a Kubernetes cluster needs before `wanka server --backend kubernetes` takes
others' pods: Volcano's PodGroup CRD (``scheduling.volcano.sh/v1beta1``, as Volcano ships it, so
operators that emit PodGroups target wanka unchanged) and the ClusterRole the server's account
needs."""

from __future__ import annotations

import json

import typer

from wanka.cli.output import console, fail

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Kubernetes: install what wanka needs.")


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
    """Create (or update) the PodGroup CRD and the ClusterRole ``wanka-server``. Bind the role to
    the account the server runs as (a ClusterRoleBinding: docs/kubernetes.md)."""
    from wanka.backends._k8s_podgroups import CLUSTER_ROLE, PODGROUP_CRD

    if print_only:
        console.print_json(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": [PODGROUP_CRD, CLUSTER_ROLE]})
        )
        return
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        config.load_kube_config(config_file=kubeconfig)
    except Exception as exc:
        fail(f"--kubeconfig: no Kubernetes credentials ({exc})")
    extensions, rbac = client.ApiextensionsV1Api(), client.RbacAuthorizationV1Api()
    crd = (
        extensions.create_custom_resource_definition,
        extensions.replace_custom_resource_definition,
        extensions.read_custom_resource_definition,
    )
    role = (rbac.create_cluster_role, rbac.replace_cluster_role, rbac.read_cluster_role)
    for what, (create, replace, read), body in (
        ("CustomResourceDefinition", crd, PODGROUP_CRD),
        ("ClusterRole", role, CLUSTER_ROLE),
    ):
        name = body["metadata"]["name"]
        try:
            create(body, _preload_content=False).release_conn()
            console.print(f"{what} {name} created")
        except ApiException as exc:
            if exc.status != 409:
                fail(f"{what} {name}: {exc.reason} ({exc.status}): {(exc.body or '')[:300]}")
            current = json.loads(read(name, _preload_content=False).data)
            updated = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            replace(name, updated, _preload_content=False).release_conn()
            console.print(f"{what} {name} updated")
        except Exception as exc:  # no connection
            fail(f"the Kubernetes API server cannot be reached: {exc}")
