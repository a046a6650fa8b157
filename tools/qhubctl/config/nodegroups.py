"""Node group settings. Labels and taints follow qhubctl.nodegroups, the one shared definition."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from qhubctl import nodegroups as ng
from qhubctl.config.base import Base, FieldProblem

_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class TaintSpec(Base):
    """An extra node taint; pods of the group get the matching toleration."""

    key: str = Field(pattern=_LABEL_KEY, description="Taint key")
    value: str = Field("", pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$", description="Taint value")
    effect: ng.Effect = Field("NoSchedule", description="NoSchedule, PreferNoSchedule or NoExecute")

    @field_validator("key")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == ng.LABEL:
            raise ValueError(f"{ng.LABEL} taints are set by QHub itself; choose another key")
        return value

    def taint(self) -> ng.Taint:
        return ng.Taint(self.key, self.value, self.effect)


class GPUSpec(Base):
    """GPUs on every node of the group."""

    type: str | None = Field(
        None, pattern=r"^[a-z0-9-]+$", description="Accelerator type where the cloud needs one (GCP: nvidia-tesla-t4)"
    )
    count: int = Field(1, ge=1, le=16, description="GPUs per node")


class NodeGroup(Base):
    """One group of nodes. `general`, `user` and `worker` always exist; `gpu` and custom groups are optional."""

    instance_type: str | None = Field(
        None, min_length=1, description="Machine type; empty: the provider's default for this group"
    )
    min_nodes: int | None = Field(None, ge=0, le=1000, description="Smallest node count (general: at least 1)")
    max_nodes: int | None = Field(None, ge=1, le=1000, description="Largest node count for the autoscaler")
    spot: bool = Field(False, description="Use spot/preemptible machines (cheaper, can be reclaimed)")
    disk_size_gb: int = Field(100, ge=20, le=16384, description="Boot disk size per node in GB")
    labels: dict[str, str] = Field(
        default_factory=dict, description=f"Extra node labels ({ng.LABEL} is always set to the group name)"
    )
    taints: list[TaintSpec] = Field(default_factory=list, description="Extra taints (QHub's own are always added)")
    gpu: GPUSpec | None = Field(None, description="GPUs per node; the gpu group needs this")
    node_selector: dict[str, str] | None = Field(
        None,
        description=f"Provider existing only: labels your nodes of this group carry (default {ng.LABEL}=<name>)",
    )

    @field_validator("labels", "node_selector")
    @classmethod
    def _label_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        import re

        for key in value or {}:
            if not re.match(_LABEL_KEY, key):
                raise ValueError(f"{key!r} is not a valid label key")
        return value

    @field_validator("labels")
    @classmethod
    def _label_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        if ng.LABEL in value:
            raise ValueError(f"{ng.LABEL} is set by QHub to the group name; remove it from labels")
        return value

    @model_validator(mode="after")
    def _min_le_max(self) -> NodeGroup:
        if self.min_nodes is not None and self.max_nodes is not None and self.min_nodes > self.max_nodes:
            raise FieldProblem([("min_nodes", f"{self.min_nodes} is larger than max_nodes ({self.max_nodes})")])
        return self

    def placement(self, name: str) -> ng.GroupPlacement:
        return ng.placement(
            name,
            gpu=self.gpu is not None,
            extra_taints=tuple(t.taint() for t in self.taints),
            extra_labels=self.labels,
            node_selector=self.node_selector,
        )


def fill_defaults(groups: dict[str, NodeGroup], instances: dict[str, str], managed: bool) -> dict[str, NodeGroup]:
    """Add the default groups that are missing and fill scale and instance defaults, in a stable order."""
    out: dict[str, NodeGroup] = {}
    names = [g for g in ng.STANDARD_GROUPS if g in groups or g in ng.DEFAULT_GROUPS]
    names += sorted(g for g in groups if g not in ng.STANDARD_GROUPS)
    for name in names:
        group = groups.get(name) or NodeGroup()
        lo, hi = ng.DEFAULT_SCALE.get(name, (0, 2))
        updates: dict[str, object] = {}
        if group.min_nodes is None:
            updates["min_nodes"] = lo if group.max_nodes is None else min(lo, group.max_nodes)
        if group.max_nodes is None:
            updates["max_nodes"] = max(hi, group.min_nodes or 0, 1)
        if managed and group.instance_type is None and name in instances:
            updates["instance_type"] = instances[name]
        if name == ng.GPU and group.gpu is None and managed and instances:
            updates["gpu"] = GPUSpec()
        out[name] = group.model_copy(update=updates)
    return out
