"""DigitalOcean Kubernetes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config._cloud import CloudProvider


class DigitalOceanProvider(CloudProvider):
    """A new DOKS cluster created by `qhubctl cluster create`."""

    default_instances: ClassVar[dict[str, str]] = {
        "general": "g-4vcpu-16gb", "user": "g-4vcpu-16gb", "worker": "g-4vcpu-16gb", "gpu": "gpu-h100x1-80gb",
    }
    implementation: ClassVar[str] = "qhubctl.providers.digitalocean:DigitalOcean"
    sdk_extra: ClassVar[str | None] = "digitalocean"
    init_block: ClassVar[str] = '  provider: digitalocean\n  region: {region}\n  kubernetes_version: "{k8s}"\n'
    network_policy_enforcer: ClassVar[str] = "Cilium, which DOKS runs on every cluster and which cannot be turned off"
    network_policy_turn_on: ClassVar[str] = (
        "DOKS's Cilium: it is always on, so look at `kubectl -n kube-system get daemonset cilium` and ask "
        "DigitalOcean support if it is missing or not ready")
    default_storage_class: ClassVar[str] = "do-block-storage, DOKS's block storage CSI class"
    default_storage_class_fix: ClassVar[str] = (
        "DOKS marks do-block-storage default on every cluster; if the mark is gone: `kubectl annotate "
        "storageclass do-block-storage storageclass.kubernetes.io/is-default-class=true`")
    autoscaled_by: ClassVar[str] = (
        "DOKS's cluster autoscaler (auto_scale set on every node pool by `qhubctl cluster create`)")

    provider: Literal["digitalocean"] = Field(description="DigitalOcean Kubernetes (DOKS)")
    region: str = Field("nyc3", pattern=r"^[a-z]{3}[0-9]$", description="DigitalOcean region slug, e.g. nyc3")
