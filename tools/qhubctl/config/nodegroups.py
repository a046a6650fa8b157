"""Node group settings. Labels and taints follow qhubctl.nodegroups, the one shared definition."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, field_validator, model_validator

from qhubctl import nodegroups as ng
from qhubctl.config.base import Base, FieldProblem

_MinCount = Annotated[int, Field(ge=0, le=1000)]
_MaxCount = Annotated[int, Field(ge=1, le=1000)]


def _filled(value: Any) -> Any:
    if value is None:
        raise ValueError("a node group count is filled in from the group's defaults while the whole config is "
                         "validated (QHubConfig)")
    return value


# A count the file may leave out or write as null; the config fills in the group's default (nodegroups.DEFAULT_SCALE)
# before the group is validated (fill_defaults), so a validated group always holds a number.
MinNodes = Annotated[int, BeforeValidator(_filled, json_schema_input_type=_MinCount | None)]
MaxNodes = Annotated[int, BeforeValidator(_filled, json_schema_input_type=_MaxCount | None)]

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
    min_nodes: MinNodes = Field(None, ge=0, le=1000,  # type: ignore[assignment]  # filled in by fill_defaults
                                description="Smallest node count (general: at least 1)")
    max_nodes: MaxNodes = Field(None, ge=1, le=1000,  # type: ignore[assignment]  # filled in by fill_defaults
                                description="Largest node count for the autoscaler")
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
        if self.min_nodes > self.max_nodes:
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


_COUNT: TypeAdapter[int] = TypeAdapter(int)


def _count(value: Any) -> int | None:
    """A count as written, read the way validation will read it; None when absent or not a number."""
    try:
        return None if value is None else _COUNT.validate_python(value)
    except ValidationError:
        return None


def fill_defaults(groups: Any, instances: dict[str, str], managed: bool) -> Any:
    """The node_groups block as written, before validation, completed: the default groups that are missing added,
    counts left out set from nodegroups.DEFAULT_SCALE, the provider's instance type and a GPU for groups that name
    none, in a stable order (standard groups first). Anything that is not a mapping is left for validation to
    report."""
    if not isinstance(groups, dict):
        return groups
    out: dict[Any, Any] = {}
    names = [g for g in ng.STANDARD_GROUPS if g in groups or g in ng.DEFAULT_GROUPS]
    names += sorted((g for g in groups if g not in ng.STANDARD_GROUPS), key=str)
    for name in names:
        group = groups.get(name, {})
        if not isinstance(group, dict):
            out[name] = group
            continue
        group = dict(group)
        lo, hi = ng.DEFAULT_SCALE.get(name, ng.CUSTOM_SCALE)
        given_min, given_max = _count(group.get("min_nodes")), _count(group.get("max_nodes"))
        if group.get("min_nodes") is None:
            group["min_nodes"] = lo if given_max is None else min(lo, given_max)
        if group.get("max_nodes") is None:
            group["max_nodes"] = max(hi, given_min or 0, 1)
        if managed and group.get("instance_type") is None and name in instances:
            group["instance_type"] = instances[name]
        if name == ng.GPU and group.get("gpu") is None and managed and instances:
            group["gpu"] = {}  # one GPU of the provider's default type (GPUSpec's defaults)
        out[name] = group
    return out
