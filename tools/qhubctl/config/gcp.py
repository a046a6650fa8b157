"""Google GKE."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config._cloud import CloudProvider


class GCPProvider(CloudProvider):
    """A new GKE cluster created by `qhubctl cluster create`."""

    default_instances: ClassVar[dict[str, str]] = {
        "general": "e2-standard-4", "user": "e2-standard-4", "worker": "e2-standard-4", "gpu": "n1-standard-8",
    }
    gpu_type_required: ClassVar[bool] = True
    implementation: ClassVar[str] = "qhubctl.providers.gcp:GCP"
    sdk_extra: ClassVar[str | None] = "gcp"
    init_block: ClassVar[str] = ('  provider: gcp\n  # Your GCP project id (replace it).\n  project: {project}\n'
                                 '  region: {region}\n  kubernetes_version: "{k8s}"\n')
    network_policy_enforcer: ClassVar[str] = (
        "GKE Dataplane V2 (networkConfig.datapathProvider ADVANCED_DATAPATH, set by `qhubctl cluster create`)")
    network_policy_turn_on: ClassVar[str] = (
        "GKE Dataplane V2 (new clusters) or network policy enforcement: `qhubctl cluster create` turns it on, or "
        "`gcloud container clusters update <cluster> --update-addons=NetworkPolicy=ENABLED` then "
        "`--enable-network-policy`")
    default_storage_class: ClassVar[str] = "standard-rwo, GKE's Persistent Disk CSI class"
    default_storage_class_fix: ClassVar[str] = (
        "GKE marks standard-rwo default on every cluster; if the mark is gone: `kubectl annotate storageclass "
        "standard-rwo storageclass.kubernetes.io/is-default-class=true`")
    autoscaled_by: ClassVar[str] = (
        "GKE's cluster autoscaler (autoscaling set on every node pool by `qhubctl cluster create`)")

    provider: Literal["gcp"] = Field(description="Google Cloud Platform (GKE)")
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="GCP project ID")
    region: str = Field("us-central1", pattern=r"^[a-z]+-[a-z]+[0-9]$", description="GCP region, e.g. us-central1")
    release_channel: Literal["UNSPECIFIED", "RAPID", "REGULAR", "STABLE"] = Field(
        "UNSPECIFIED", description="GKE release channel; UNSPECIFIED keeps the version you pin"
    )
