"""A local development cluster."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config.cluster import ClusterBlock


class LocalProvider(ClusterBlock):
    """A local test cluster on this machine: one real node beside kwok-simulated node groups."""

    implementation: ClassVar[str] = "qhubctl.providers.local:Local"
    # No load-balancer controller: the real node answers the hub's, SSH's and Jitsi's NodePorts on this machine's
    # loopback address.
    node_ports: ClassVar[bool] = True
    node_address: ClassVar[str] = "127.0.0.1"
    free: ClassVar[bool] = True
    init_block: ClassVar[str] = ("  provider: local\n  # Every node group runs on the local cluster's real node "
                                 "(make cluster-up starts it).\n  real_node: true\n")
    init_layout: ClassVar[Literal["cloud", "existing", "local"]] = "local"
    network_policy_enforcer: ClassVar[str] = (
        "nobody: the local cluster's real node uses the containernetworking-plugins bridge CNI (bridge + "
        "host-local), which has no policy engine")
    network_policy_turn_on: ClassVar[str] = (
        "a network plugin that enforces NetworkPolicy (Calico, Cilium): the local cluster's bridge CNI "
        "(containernetworking-plugins bridge + host-local) never does, so this result is expected there")
    default_storage_class: ClassVar[str] = "local-path, the local cluster's real node provisioner"
    default_storage_class_fix: ClassVar[str] = (
        "the local cluster makes local-path and marks it default: start it with `qhubctl cluster create` (or "
        "`make cluster-up`); if the mark is gone: `kubectl annotate storageclass local-path "
        "storageclass.kubernetes.io/is-default-class=true`")
    # often has an ingress controller of its own: QHub's Traefik only when the config asks for it
    ingress_controller: ClassVar[bool] = False
    autoscaled_by: ClassVar[str] = (
        "the local cluster's simulated autoscaler (qhubctl.simautoscaler), between each group's min and max")

    provider: Literal["local"] = Field(description="A local cluster for development and tests")
    kube_context: str | None = Field(None, description="kubeconfig context to use; empty: the current context")
    real_node: bool = Field(
        False,
        description="The cluster has a real node (containerd, kubelet, kube-proxy; needs root) beside the simulated "
        "groups, and every node group's pods run on it (`qhubctl init local` writes true); false: simulated nodes "
        "only, where nothing really runs (a machine has room for one real node)",
    )

    @property
    def every_group_on_real_node(self) -> bool:
        return self.real_node
