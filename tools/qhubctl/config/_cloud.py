"""What every cloud provider block has in common."""

from __future__ import annotations

from pydantic import Field, field_validator

from qhubctl.config.base import DEFAULT_K8S, SUPPORTED_K8S, KubernetesVersion
from qhubctl.config.cluster import ClusterBlock


class CloudProvider(ClusterBlock):
    """Common fields of managed-Kubernetes providers. Subclasses set `provider`, the default instance types and the
    other facts of ClusterBlock."""

    region: str = Field(description="Region the cluster runs in")
    kubernetes_version: KubernetesVersion = Field(
        DEFAULT_K8S, description=f"Kubernetes minor version, one of {', '.join(SUPPORTED_K8S)}"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags/labels on every cloud resource")

    @field_validator("kubernetes_version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_K8S:
            raise ValueError(f"Kubernetes {value} is not supported; use one of {', '.join(SUPPORTED_K8S)}")
        return value
