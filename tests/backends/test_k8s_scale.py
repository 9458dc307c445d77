"""The Kubernetes backend's inventory at the 10,000-card preset's shape: 1,250 fake nodes x 8 cards
on the kit's real API server (control plane only), listed once and then followed by the watch."""

from __future__ import annotations

import pytest

from tests.server.conftest import wait_for
from wanka.backends import k8s_testbed
from wanka.backends.k8s import KubernetesBackend
from wanka.models.cluster import parse_cluster

pytestmark = pytest.mark.skipif(
    k8s_testbed.available() is not None, reason=f"real Kubernetes kit unavailable: {k8s_testbed.available()}"
)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    k = k8s_testbed.KubeKit(tmp_path_factory.mktemp("k8s-scale"), node=False).start()
    try:
        yield k
    finally:
        k.stop()


def test_1250_nodes_of_8_cards_are_listed_with_their_topology_and_followed(kit, tmp_path):
    names = kit.fake_cluster(1250)
    b = KubernetesBackend(tmp_path / "home", kubeconfig=str(kit.kubeconfig), single_user=True)
    try:
        spec = b.cluster_spec()
        cluster = parse_cluster(spec, "kubernetes")
        assert len(cluster.node_names) == 1250 and int(cluster.node_cards.sum()) == 10_000
        assert spec["pools"][0]["accelerator"] == "ascend-910b3"
        assert spec["tiers"] == ["rack", "block"]  # innermost first
        assert spec["node_domains"][names[40]] == ["block-0/rack-1", "block-0"]
        assert spec["node_domains"][names[-1]] == ["block-4/rack-39", "block-4"]
        assert b.unhealthy_nodes(names) == {}

        # followed: a cordon outside wanka, a node gone, a node joining — no new LIST
        kit.kube.patch(f"/api/v1/nodes/{names[7]}", {"spec": {"unschedulable": True}})
        kit.kube.delete(f"/api/v1/nodes/{names[8]}")
        kit.fake_cluster(1, prefix="late-")
        wait_for(lambda: b.unhealthy_nodes(names) == {names[7]: "cordoned in Kubernetes"})
        wait_for(lambda: len(parse_cluster(b.cluster_spec(), "kubernetes").node_names) == 1250)
        after = {n for p in b.cluster_spec()["pools"] for n in p["node_names"]}
        assert names[8] not in after and "late-00000" in after
        assert b.nodes.lists == 1
    finally:
        b.close()
