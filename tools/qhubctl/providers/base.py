"""The provider interface: what `qhubctl cluster` asks of every place a cluster can live.

A provider keeps no state file. It looks at the cloud (resources carry QHub's tags or labels), compares what it
finds with what the config asks for, and returns a `Plan`: an ordered list of `Action`s, printed like a diff.
`apply` carries a plan out; running `plan` again afterwards gives an empty plan. `destroy` finds everything the
cluster owns by the same tags, removes it, waits until it is gone, and finds nothing the second time.

The node-group part of planning is the same everywhere and lives here as pure functions (`desired_groups`,
`diff_groups`), so it is tested without any cloud.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from qhubctl import nodegroups as ng
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError

Log = Callable[[str], None]
Op = Literal["create", "update", "replace", "delete"]

# Tags/labels on every resource qhubctl creates; destroy and plan find resources by them.
TAG_PROJECT = "qhub.dev/project"
TAG_MANAGED_BY = "qhub.dev/managed-by"
MANAGED_BY = "qhubctl"

_SIGN = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}


@dataclass(frozen=True)
class Action:
    """One change: `op` on the resource `kind`/`name`; `changes` maps a field to (observed, desired)."""

    op: Op
    kind: str
    name: str
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    detail: str = ""

    def lines(self) -> list[str]:
        head = f"{_SIGN[self.op]} {self.kind} {self.name}"
        if self.detail:
            head += f" ({self.detail})"
        out = [head]
        for key, (old, new) in self.changes.items():
            out.append(f"    {key}: {_show(old)} -> {_show(new)}")
        return out


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={v}" for k, v in sorted(value.items())) + "}" if value else "{}"
    if isinstance(value, (list, tuple, frozenset, set)):
        items = sorted(str(v) for v in value)
        return "[" + ", ".join(items) + "]"
    return str(value)


@dataclass
class Plan:
    """What apply would do, in the order it would do it; `notes` say what it leaves alone and why (no action)."""

    provider: str
    cluster: str
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def render(self) -> str:
        if not self.actions:
            lines = [f"cluster {self.cluster} ({self.provider}): no changes, the cloud matches the config"]
        else:
            lines = [f"cluster {self.cluster} ({self.provider}): {len(self.actions)} change(s)"]
        for action in self.actions:
            lines += action.lines()
        return "\n".join(lines + [f"note: {line}" for line in self.notes])

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


@dataclass(frozen=True)
class AddonFacts:
    """Cloud facts for the cluster add-on release: names qhubctl gave and roles the cloud made."""

    cluster_name: str
    region: str = ""
    # IAM role ARN of an add-on's service account (IRSA), by add-on ("cluster-autoscaler")
    roles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupSpec:
    """A node group in provider-neutral terms: what the config asks for, or what a cloud reports."""

    name: str
    instance_type: str | None
    min_nodes: int
    max_nodes: int
    spot: bool = False
    disk_size_gb: int = 100
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: frozenset[ng.Taint] = frozenset()
    gpu_count: int = 0
    gpu_type: str | None = None


# Fields a managed node group can change in place; any other difference means a new group (replace).
IN_PLACE_FIELDS = ("min_nodes", "max_nodes", "labels", "taints")
REPLACE_FIELDS = ("instance_type", "spot", "disk_size_gb", "gpu_count", "gpu_type")


def desired_groups(cfg: QHubConfig) -> list[GroupSpec]:
    """The node groups of a config with QHub's labels and taints (qhubctl.nodegroups), in config order."""
    specs: list[GroupSpec] = []
    for name, group in cfg.node_groups.items():
        place = group.placement(name)
        specs.append(GroupSpec(
            name=name,
            instance_type=group.instance_type,
            min_nodes=group.min_nodes,
            max_nodes=group.max_nodes,
            spot=group.spot,
            disk_size_gb=group.disk_size_gb,
            labels=dict(place.labels),
            taints=frozenset(place.taints),
            gpu_count=group.gpu.count if group.gpu else 0,
            gpu_type=group.gpu.type if group.gpu else None,
        ))
    return specs


def diff_groups(
    desired: Iterable[GroupSpec],
    observed: Mapping[str, GroupSpec],
    *,
    kind: str = "nodegroup",
    compare: Iterable[str] = IN_PLACE_FIELDS + REPLACE_FIELDS,
    replace_fields: Iterable[str] = REPLACE_FIELDS,
) -> list[Action]:
    """Actions that turn the observed groups into the desired ones: create missing, update what can change in
    place, replace what cannot, delete groups QHub owns that the config no longer has. `compare` limits the
    fields to those a provider can observe."""
    actions: list[Action] = []
    wanted = list(desired)
    names = {g.name for g in wanted}
    fields = tuple(compare)
    replacing = set(replace_fields)
    for spec in wanted:
        have = observed.get(spec.name)
        if have is None:
            detail = f"{spec.instance_type or 'default'}, {spec.min_nodes}..{spec.max_nodes} nodes"
            if spec.spot:
                detail += ", spot"
            if spec.gpu_count:
                detail += f", {spec.gpu_count} GPU"
            actions.append(Action("create", kind, spec.name, detail=detail))
            continue
        changes = {f: (_norm(getattr(have, f)), _norm(getattr(spec, f))) for f in fields
                   if _norm(getattr(have, f)) != _norm(getattr(spec, f))}
        if not changes:
            continue
        op: Op = "replace" if replacing & set(changes) else "update"
        actions.append(Action(op, kind, spec.name, changes=changes))
    for name in sorted(set(observed) - names):
        actions.append(Action("delete", kind, name))
    return actions


def _norm(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(sorted(value.items()))
    if isinstance(value, (set, frozenset, list, tuple)):
        return frozenset(value)
    return value


def owner_tags(cfg: QHubConfig) -> dict[str, str]:
    """Tags every created resource carries: the user's extra tags, then QHub's (which win)."""
    extra = dict(getattr(cfg.cluster, "tags", {}) or {})
    return {**extra, TAG_PROJECT: cfg.project_name, TAG_MANAGED_BY: MANAGED_BY}


def wait_until(check: Callable[[], bool], what: str, *, timeout: float = 1800, first: float = 1.0,
               most: float = 15.0, log: Log | None = None) -> None:
    """Poll `check` with a growing delay until it returns true; QHubError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = first
    said = False
    while not check():
        if time.monotonic() > deadline:
            raise QHubError(f"timed out after {timeout:.0f}s waiting for {what}",
                            hint="the cloud may still be working on it; run the command again to resume")
        if log and not said:
            log(f"  waiting for {what} ...")
            said = True
        time.sleep(delay)
        delay = min(delay * 1.5, most)


class Provider(ABC):
    """One place a cluster can live. Construct with the validated config; no cloud call happens until a method
    is called."""

    name: str = ""
    # The cloud's own add-ons this provider creates and keeps at their wanted versions (EKS managed add-ons);
    # `addon_plan` brings them there. Empty where qhubctl manages none.
    managed_addons: tuple[str, ...] = ()

    def __init__(self, cfg: QHubConfig, log: Log = print) -> None:
        self.cfg = cfg
        self.log = log

    @property
    def cluster_name(self) -> str:
        return self.cfg.project_name

    @abstractmethod
    def check_credentials(self) -> str:
        """Who we are on the cloud (account, identity) - or a UserError saying what is wrong with the login."""

    @abstractmethod
    def plan(self) -> Plan:
        """Desired (config) against observed (cloud): the actions apply would take."""

    @abstractmethod
    def apply(self, plan: Plan) -> None:
        """Carry out a plan made by `plan()`, waiting for each resource to become ready."""

    @abstractmethod
    def destroy_plan(self) -> Plan:
        """Every resource destroy would remove (delete actions only), found by tags."""

    @abstractmethod
    def destroy(self, plan: Plan) -> None:
        """Remove what `destroy_plan()` found, waiting until it is gone. Safe to run when nothing is left."""

    @abstractmethod
    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig (as data) for the cluster that needs no cloud CLI."""

    def addon_plan(self) -> Plan:
        """Only the changes that bring the `managed_addons` of the running cluster to their wanted versions and
        settings (`qhubctl upgrade` applies it with `apply`); empty where there are none or no cluster exists."""
        return Plan(self.name, self.cluster_name)

    def addon_facts(self) -> AddonFacts:
        """What the cluster add-on chart needs from the cloud (qhubctl.addons): the cluster's name, region and the
        IAM roles of the add-ons' service accounts. Providers without add-ons need nothing from it."""
        return AddonFacts(self.cluster_name)
