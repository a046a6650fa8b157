"""What every cloud provider block has in common."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from qhubctl.config.base import DEFAULT_K8S, SUPPORTED_K8S, Base, KubernetesVersion


class CloudProvider(Base):
    """Common fields of managed-Kubernetes providers. Subclasses set `provider` and the default instance types."""

    # Instance type of each standard node group when the config does not name one.
    default_instances: ClassVar[dict[str, str]] = {}
    # Whether GPU nodes need an explicit accelerator type in the node group (gpu.type).
    gpu_type_required: ClassVar[bool] = False
    managed_nodes: ClassVar[bool] = True

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
