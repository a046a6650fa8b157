"""The one definition of QHub node groups: names, the label that selects them, their taints and tolerations.

The chart mapping (qhubctl.values) and the cluster providers (qhubctl.providers) both build on these functions,
so a node created by a provider and a pod placed by the chart always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Every node of a node group carries this label with the group's name as value.
LABEL = "qhub.dev/node-group"
# The local cluster's real node carries this label and a NoSchedule taint of the same key, value "true".
REAL_NODE_LABEL = "qhub.dev/real-node"
# GPU nodes carry this taint in addition to the group taint, and expose this extended resource.
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "present"
GPU_RESOURCE = "nvidia.com/gpu"

Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
EFFECTS: tuple[str, ...] = ("NoSchedule", "PreferNoSchedule", "NoExecute")

GENERAL = "general"
USER = "user"
WORKER = "worker"
GPU = "gpu"
# The groups QHub itself places workloads on, in a stable order.
STANDARD_GROUPS: tuple[str, ...] = (GENERAL, USER, WORKER, GPU)
# Groups that exist unless the config removes them; gpu is optional.
DEFAULT_GROUPS: tuple[str, ...] = (GENERAL, USER, WORKER)
# What runs where (for docs and status output).
PURPOSE: dict[str, str] = {
    GENERAL: "hub, proxy, gateway API, conda-store server, NFS, ssh (always on)",
    USER: "JupyterLab servers",
    WORKER: "Dask schedulers and workers",
    GPU: "GPU JupyterLab servers and workers",
}
# Smallest and largest default node counts per group (the one table: config defaults, `qhubctl init`'s files and
# the local cluster's simulated groups come from it); CUSTOM_SCALE for groups of other names.
DEFAULT_SCALE: dict[str, tuple[int, int]] = {GENERAL: (1, 1), USER: (0, 5), WORKER: (0, 5), GPU: (0, 2)}
CUSTOM_SCALE: tuple[int, int] = (0, 2)


@dataclass(frozen=True)
class Taint:
    """A node taint; `toleration()` gives the pod-side toleration that matches it exactly."""

    key: str
    value: str
    effect: Effect = "NoSchedule"

    def as_node_taint(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


@dataclass(frozen=True)
class GroupPlacement:
    """Labels and taints of a group's nodes, and the pod nodeSelector/tolerations that target them."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)

    def tolerations(self) -> list[dict[str, str]]:
        return [t.toleration() for t in self.taints]

    def chart_values(self) -> dict[str, object]:
        """The `global.nodeGroups.<name>` entry of the chart's values."""
        return {"nodeSelector": dict(sorted(self.node_selector.items())), "tolerations": self.tolerations()}


def group_taints(
    name: str, *, gpu: bool = False, extra: tuple[Taint, ...] = (), qhub_taints: bool = True
) -> tuple[Taint, ...]:
    """Taints of a group's nodes: none on general, `qhub.dev/node-group=<name>:NoSchedule` on every other group,
    plus `nvidia.com/gpu=present:NoSchedule` on GPU groups, plus the user's extra taints. With `qhub_taints`
    false (nodes QHub does not manage) only the extra taints."""
    taints: list[Taint] = []
    if not qhub_taints:
        return tuple(extra)
    if name != GENERAL:
        taints.append(Taint(LABEL, name))
    if gpu:
        taints.append(Taint(GPU_TAINT_KEY, GPU_TAINT_VALUE))
    taints.extend(t for t in extra if t not in taints)
    return tuple(taints)


def group_labels(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a group's nodes: the user's extra labels plus `qhub.dev/node-group=<name>` (which wins)."""
    return {**(extra or {}), LABEL: name}


def placement(
    name: str,
    *,
    gpu: bool = False,
    extra_taints: tuple[Taint, ...] = (),
    extra_labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
) -> GroupPlacement:
    """Placement of one group. `node_selector` replaces the default `{qhub.dev/node-group: <name>}` selector: the
    nodes are then the user's own (an existing cluster), so only their own taints (`extra_taints`) apply."""
    managed = node_selector is None
    return GroupPlacement(
        name=name,
        labels=group_labels(name, extra_labels),
        taints=group_taints(name, gpu=gpu, extra=extra_taints, qhub_taints=managed),
        node_selector=dict(node_selector) if node_selector is not None else {LABEL: name},
    )
