"""What every `cluster:` block has in common: the facts about its provider that the rest of qhubctl reads.

A provider is described once, by its block's class in qhubctl/config/<provider>.py: the fields of its `cluster:`
block, and these class variables. The provider registry (qhubctl.config.model.CLUSTER_BLOCKS), `qhubctl init`,
`qhubctl cost`, the chart values, status and the NetworkPolicy check derive what they need from them, so no other
module lists provider names.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from qhubctl.config.base import Base


class ClusterBlock(Base):
    """Base of every provider's `cluster:` block. Subclasses declare `provider: Literal["<name>"]` and the class
    variables without a default below."""

    # The implementation `qhubctl cluster` uses: "<module>:<class>", imported when needed, and the pip extra that
    # brings its cloud SDK (None: no extra needed).
    implementation: ClassVar[str]
    sdk_extra: ClassVar[str | None] = None
    # Instance type of each standard node group when the config does not name one.
    default_instances: ClassVar[dict[str, str]] = {}
    # Whether GPU nodes need an explicit accelerator type in the node group (gpu.type).
    gpu_type_required: ClassVar[bool] = False
    # Whether qhubctl's provider makes (and labels) the nodes; false: the user's own nodes, found by node_selector.
    managed_nodes: ClassVar[bool] = True
    # Whether `qhubctl cluster destroy` deletes the cluster itself; false: the cluster is the user's and stays, and
    # destroy removes only the add-on release qhubctl installed on it (when the config opts in to one).
    destroys_cluster: ClassVar[bool] = True
    # No load-balancer controller: the chart exposes the hub, SSH and Jitsi media on NodePorts instead.
    node_ports: ClassVar[bool] = False
    # Where a user reaches those NodePorts (status output).
    node_address: ClassVar[str] = "<a node's address>"
    # `qhubctl cost`: whether qhubctl can price the cluster's nodes at all, and whether they cost nothing.
    priced: ClassVar[bool] = True
    free: ClassVar[bool] = False
    # `qhubctl init`: the cluster block it writes ({region}, {k8s} and {project} are filled in), and which
    # node_groups and platform sections go with it.
    init_block: ClassVar[str]
    init_layout: ClassVar[Literal["cloud", "existing", "local"]] = "cloud"
    # NetworkPolicies: who enforces them on this provider's clusters, and what to turn on where nobody does
    # (`qhubctl check`, `qhubctl cluster create`).
    network_policy_enforcer: ClassVar[str]
    network_policy_turn_on: ClassVar[str]
    # Storage: the default StorageClass this provider's clusters have (the chart's claims use it when the config
    # names none), and how to get it back when `qhubctl check` finds none (or more than one).
    default_storage_class: ClassVar[str]
    default_storage_class_fix: ClassVar[str]
    # Parts of the qhub-cluster-addons chart `qhubctl cluster create` installs on this provider's clusters
    # (qhubctl.addons): "cluster-autoscaler", "storage-class", "nvidia-device-plugin" (the last only when a GPU
    # group exists). Empty: the cloud runs them itself, or the cluster is not qhubctl's.
    cluster_addons: ClassVar[tuple[str, ...]] = ()
    # Whether QHub's Traefik (qhub-cluster-addons) is the cluster's ingress controller when the config does not say
    # (ingress.controller.enabled), and the annotations of its LoadBalancer Service (the cloud's load balancer).
    ingress_controller: ClassVar[bool] = True
    ingress_service_annotations: ClassVar[dict[str, str]] = {}
    # What scales the node groups (`qhubctl status`).
    autoscaled_by: ClassVar[str]

    @classmethod
    def provider_name(cls) -> str:
        """The value of `provider` that picks this block."""
        return str(get_args(cls.model_fields["provider"].annotation)[0])

    @classmethod
    def default_region(cls) -> str:
        """The region `qhubctl init` writes: the block's own default; empty for providers without regions."""
        field = cls.model_fields.get("region")
        return str(field.default) if field is not None and isinstance(field.default, str) else ""

    @property
    def every_group_on_real_node(self) -> bool:
        """Every node group's pods run on the local cluster's one real node (provider local, real_node)."""
        return False
