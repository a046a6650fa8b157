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
        False,
        description="The cluster has a real node (containerd, kubelet, kube-proxy; needs root) beside the simulated "
        "groups, and every node group's pods run on it (`qhubctl init local` writes true); false: simulated nodes "
        "only, where nothing really runs (a machine has room for one real node)",
    )
