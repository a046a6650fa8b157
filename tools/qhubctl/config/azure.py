"""Azure AKS."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config._cloud import CloudProvider


class AzureProvider(CloudProvider):
    """A new AKS cluster created by `qhubctl cluster create`."""

    default_instances: ClassVar[dict[str, str]] = {
        "general": "Standard_D4s_v5", "user": "Standard_D4s_v5", "worker": "Standard_D4s_v5",
        "gpu": "Standard_NC4as_T4_v3",
    }
    implementation: ClassVar[str] = "qhubctl.providers.azure:Azure"
    sdk_extra: ClassVar[str | None] = "azure"
    init_block: ClassVar[str] = '  provider: azure\n  region: {region}\n  kubernetes_version: "{k8s}"\n'
    network_policy_enforcer: ClassVar[str] = (
        "Cilium (networkProfile networkPolicy and networkDataplane cilium, set by `qhubctl cluster create`)")
    network_policy_turn_on: ClassVar[str] = (
        "an AKS network policy engine (networkProfile.networkPolicy cilium, calico or azure): `qhubctl cluster "
        "create` sets it, or `az aks update -g <group> -n <cluster> --network-policy calico`")
    default_storage_class: ClassVar[str] = "default, AKS's Azure Disk CSI class"
    default_storage_class_fix: ClassVar[str] = (
        "AKS marks its class `default` default on every cluster; if the mark is gone: `kubectl annotate "
        "storageclass default storageclass.kubernetes.io/is-default-class=true`")
    # AKS installs the NVIDIA driver on GPU agent pools (gpuProfile.driver defaults to Install) but runs NVIDIA's
    # device plugin only on its managed GPU pools (gpuProfile.nvidia.managementMode Managed, a preview qhubctl does
    # not ask for): without the plugin a GPU node advertises no nvidia.com/gpu, so the release brings it.
    cluster_addons: ClassVar[tuple[str, ...]] = ("nvidia-device-plugin",)
    autoscaled_by: ClassVar[str] = (
        "AKS's cluster autoscaler (enableAutoScaling set on every agent pool by `qhubctl cluster create`)")

    provider: Literal["azure"] = Field(description="Microsoft Azure (AKS)")
    region: str = Field("eastus", pattern=r"^[a-z][a-z0-9]+$", description="Azure region name, e.g. eastus")
    resource_group: str | None = Field(
        None, pattern=r"^[-\w.()]{1,89}[-\w()]$", description="Resource group; empty: '<project_name>-rg'"
    )
