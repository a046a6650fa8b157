"""A Kubernetes cluster QHub does not manage."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config.base import Base


class ExistingProvider(Base):
    """An existing cluster reached through a kubeconfig. Node groups point at your nodes with `node_selector`."""

    default_instances: ClassVar[dict[str, str]] = {}
    gpu_type_required: ClassVar[bool] = False
    managed_nodes: ClassVar[bool] = False

    provider: Literal["existing"] = Field(description="An existing cluster; qhubctl installs only the chart")
    kube_context: str | None = Field(None, description="kubeconfig context to use; empty: the current context")

