"""The node shapes `cost --simulate` gives each node group: what the group's instance type leaves to pods.

A cloud node's allocatable is its capacity minus the kubelet's system reservation. The reservation here is the
tiered scheme GKE and AKS publish (EKS reserves CPU the same way, memory by pod count):
- CPU: 6% of the first core, 1% of the second, 0.5% of the third and fourth, 0.25% of every further core;
- memory: 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, 2% of the rest, plus
  the 100 MiB eviction threshold.
DaemonSet pods are not subtracted. Instance shapes come from the price table (`clouds.<cloud>.shapes`). Groups
without an instance type (the local provider) keep the local cluster's standard shapes (providers.local).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qhubctl.config.model import QHubConfig
from qhubctl.cost import Pricing
from qhubctl.errors import UserError

CPU_TIERS = ((1.0, 0.06), (1.0, 0.01), (2.0, 0.005), (math.inf, 0.0025))  # (cores, share reserved)
MEMORY_TIERS = ((4.0, 0.25), (4.0, 0.20), (8.0, 0.10), (112.0, 0.06), (math.inf, 0.02))  # (GiB, share reserved)
EVICTION_MIB = 100


@dataclass(frozen=True)
class NodeShape:
    """What one node of a group offers pods in the simulation."""

    instance_type: str | None  # None: the local cluster's standard shape
    cpu_m: int                 # millicores
    memory_mib: int

    @property
    def cpu(self) -> str:
        return f"{self.cpu_m}m"

    @property
    def memory(self) -> str:
        return f"{self.memory_mib}Mi"

    def describe(self) -> str:
        size = f"{self.cpu_m / 1000:g} CPU / {self.memory_mib / 1024:.1f} GiB"
        if self.instance_type is None:
            return f"local standard shape, {size}"
        return f"{self.instance_type}, {size} allocatable"


def _reserved(amount: float, tiers: tuple[tuple[float, float], ...]) -> float:
    reserved, left = 0.0, amount
    for size, share in tiers:
        part = min(left, size)
        reserved += part * share
        left -= part
    return reserved


def allocatable(cpu: float, memory_gib: float) -> tuple[int, int]:
    """(millicores, MiB) a node of `cpu` vCPUs and `memory_gib` GiB leaves to pods."""
    cpu_m = math.floor(1000 * (cpu - _reserved(cpu, CPU_TIERS)))
    memory_mib = math.floor(1024 * (memory_gib - _reserved(memory_gib, MEMORY_TIERS))) - EVICTION_MIB
    return cpu_m, memory_mib


def node_shapes(cfg: QHubConfig, price: Pricing, table: dict[str, Any]) -> dict[str, NodeShape]:
    """Each node group's simulated shape: its priced instance type's allocatable, or the local standard shape."""
    from kubernetes.utils import parse_quantity

    from qhubctl.providers.local import local_groups

    standard = {g.name: g for g in local_groups(cfg)}
    known = table["clouds"][price.cloud].get("shapes") or {}
    shapes: dict[str, NodeShape] = {}
    missing: list[str] = []
    for name, group in price.groups.items():
        itype = group.instance_type
        if itype is None:
            local = standard[name]
            shapes[name] = NodeShape(None, int(parse_quantity(local.cpu) * 1000),
                                     int(parse_quantity(local.memory) / 2**20))
        elif itype in known:
            shape = known[itype]
            shapes[name] = NodeShape(itype, *allocatable(float(shape["cpu"]), float(shape["memory_gib"])))
        else:
            missing.append(f"{name}: {itype}")
    if missing:
        raise UserError(f"--simulate: no {price.cloud} shape (vCPUs, memory) for the instance type of node group(s) "
                        + ", ".join(missing),
                        hint=f"add them under clouds.{price.cloud}.shapes as `<type>: {{cpu: N, memory_gib: M}}` in a "
                             "file passed with --prices")
    return shapes
