"""A Kubernetes cluster QHub does not manage."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config.cluster import ClusterBlock


class ExistingProvider(ClusterBlock):
    """An existing cluster reached through a kubeconfig. Node groups point at your nodes with `node_selector`."""

    implementation: ClassVar[str] = "qhubctl.providers.existing:Existing"
    managed_nodes: ClassVar[bool] = False
    destroys_cluster: ClassVar[bool] = False  # the user's cluster: destroy removes only the add-on release
    priced: ClassVar[bool] = False  # qhubctl does not know the machines
    init_block: ClassVar[str] = ("  provider: existing\n  # kubeconfig context of your cluster; empty: the current "
                                 "context.\n  # kube_context: my-cluster\n")
    init_layout: ClassVar[Literal["cloud", "existing", "local"]] = "existing"
    network_policy_enforcer: ClassVar[str] = "the cluster's own network plugin"
    network_policy_turn_on: ClassVar[str] = (
        "a network plugin that enforces NetworkPolicy (Calico, Cilium, Antrea, or your cloud's policy option)")
    default_storage_class: ClassVar[str] = "the cluster's own"
    default_storage_class_fix: ClassVar[str] = (
        "mark exactly one StorageClass default (`kubectl annotate storageclass <name> "
        "storageclass.kubernetes.io/is-default-class=true`), or name one in storage.disk_storage_class")
    # often has an ingress controller of its own: QHub's Traefik only when the config asks for it
    ingress_controller: ClassVar[bool] = False
    autoscaled_by: ClassVar[str] = (
        "whatever your cluster runs: qhubctl manages no autoscaler there")

    provider: Literal["existing"] = Field(description="An existing cluster; qhubctl installs only the chart")
    kube_context: str | None = Field(None, description="kubeconfig context to use; empty: the current context")

