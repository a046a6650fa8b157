"""`qhubctl cost`: what a config costs per month at rest, and what a given load would cost (simulated).

Prices come from the dated table tools/qhubctl/data/prices.yaml (its `as_of` and per-cloud `source` are printed
with every report); a user file given with --prices or QHUB_PRICES merges over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhubctl.config.model import CLUSTER_BLOCKS, QHubConfig
from qhubctl.errors import UserError


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class _Prices(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstanceShape(_Prices):
    """What an instance type has: vCPUs and memory in GiB (before the kubelet's system reservation)."""

    cpu: float = Field(gt=0)
    memory_gib: float = Field(gt=0)


class CloudPrices(_Prices):
    """One cloud's prices; in a --prices file every key is optional and merges over the built-in table."""

    source: str | None = None
    region: str | None = None
    control_plane: float | None = Field(None, ge=0)
    spot_factor: float | None = Field(None, gt=0, le=1)
    instances: dict[str, float] | None = None
    accelerators: dict[str, float] | None = None
    shapes: dict[str, InstanceShape] | None = None

    @field_validator("instances", "accelerators")
    @classmethod
    def _not_negative(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        bad = [k for k, v in (value or {}).items() if v < 0]
        if bad:
            raise ValueError(f"prices cannot be negative: {', '.join(bad)}")
        return value


class PriceFile(_Prices):
    """The shape of tools/qhubctl/data/prices.yaml and of a --prices file (misspelt keys are refused)."""

    as_of: str | date | None = None
    hours_per_month: float | None = Field(None, gt=0, le=744)
    clouds: dict[str, CloudPrices] | None = None


def _checked(path: Path, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UserError(f"{path}: a price file is a mapping like tools/qhubctl/data/prices.yaml")
    try:
        PriceFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                owner = {1: PriceFile, 3: CloudPrices, 5: InstanceShape}[len(err["loc"])]
                problems.append(f"{where}: unknown key (known: {', '.join(owner.model_fields)})")
            else:
                problems.append(f"{where}: {err['msg']}")
        raise UserError(f"{path}: {len(problems)} problem(s)\n  - " + "\n  - ".join(problems),
                        hint="keys and shape as in tools/qhubctl/data/prices.yaml") from None
    return data


def load_prices(override: Path | None = None) -> dict[str, Any]:
    table = yaml.safe_load(resources.files("qhubctl").joinpath("data/prices.yaml").read_text())
    path = override or (Path(os.environ["QHUB_PRICES"]) if os.environ.get("QHUB_PRICES") else None)
    if path:
        if not path.is_file():
            raise UserError(f"{path}: no such price file")
        try:
            extra = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read the price file: {exc}") from None
        table = _merge(table, _checked(path, extra))
        table["overridden_by"] = str(path)
    return table


@dataclass(frozen=True)
class GroupPrice:
    name: str
    instance_type: str | None
    hourly: float           # per node, spot discount and accelerators included
    min_nodes: int
    max_nodes: int

    @property
    def monthly_min(self) -> float:
        return self.hourly * self.min_nodes


@dataclass(frozen=True)
class Pricing:
    cloud: str
    as_of: str
    source: str
    hours_per_month: float
    control_plane_hourly: float
    groups: dict[str, GroupPrice]

    def baseline_monthly(self) -> float:
        return self.hours_per_month * (self.control_plane_hourly + sum(g.monthly_min for g in self.groups.values()))


def pricing(cfg: QHubConfig, table: dict[str, Any], cloud: str | None = None) -> Pricing:
    """Hourly prices of the config's node groups on `cloud` (default: the config's provider)."""
    cloud = cloud or cfg.cluster.provider
    block = CLUSTER_BLOCKS.get(cloud)
    if block is not None and not block.priced:
        clouds = "|".join(name for name, other in CLUSTER_BLOCKS.items() if other.priced and not other.free)
        raise UserError("an existing cluster's price is not known to qhubctl",
                        hint=f"pass --cloud {clouds} to price the node groups as on that cloud")
    entry = table["clouds"].get(cloud)
    if entry is None:
        raise UserError(f"no prices for {cloud} in the price table", hint="add them with --prices FILE")
    defaults: dict[str, str] = {}
    if cloud != cfg.cluster.provider and block is not None:  # priced as on another cloud: its default instances
        defaults = dict(block.default_instances)
    groups: dict[str, GroupPrice] = {}
    missing: list[str] = []
    for name, group in cfg.node_groups.items():
        itype = group.instance_type if cloud == cfg.cluster.provider else (group.instance_type or defaults.get(name))
        if block is not None and block.free:
            hourly = 0.0
        elif itype is None or itype not in entry.get("instances", {}):
            missing.append(f"{name}: {itype}")
            continue
        else:
            hourly = float(entry["instances"][itype])
            if group.gpu and group.gpu.type:
                hourly += float(entry.get("accelerators", {}).get(group.gpu.type, 0.0)) * group.gpu.count
            if group.spot:
                hourly *= float(entry.get("spot_factor", 1.0))
        groups[name] = GroupPrice(name, itype, hourly, group.min_nodes, group.max_nodes)
    if missing:
        raise UserError(f"no {cloud} price for the instance type of node group(s) {', '.join(missing)}",
                        hint=f"add them under clouds.{cloud}.instances in a file passed with --prices")
    return Pricing(cloud, str(table.get("as_of")), str(entry.get("source", "")), float(table["hours_per_month"]),
                   float(entry.get("control_plane", 0.0)), groups)

