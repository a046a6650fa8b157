"""A local development cluster."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config.base import Base


class LocalProvider(Base):
    """A local test cluster on this machine: one real node beside kwok-simulated node groups."""

    default_instances: ClassVar[dict[str, str]] = {}
    gpu_type_required: ClassVar[bool] = False
    managed_nodes: ClassVar[bool] = True

    provider: Literal["local"] = Field(description="A local cluster for development and tests")
    kube_context: str | None = Field(None, description="kubeconfig context to use; empty: the current context")
    real_node: bool = Field(
        True,
        description="Run a real node (containerd, kubelet, kube-proxy; needs root) beside the simulated groups; "
        "a machine has room for one, so a second local cluster sets this to false",
    )
