"""`qhubctl check`, storage part: the StorageClasses the deployment's volume claims use exist on the cluster.

The chart's own claims (hub database, the NFS server's disk, conda-store's databases) name the class in
global.storageClass, which qhubctl sets from storage.disk_storage_class (NFS storage) and otherwise leaves empty:
then Kubernetes gives them the cluster's default class, the one annotated
storageclass.kubernetes.io/is-default-class=true. With storage.type existing, the shared volume's claim names
storage.storage_class. A claim whose class is missing, or that needs a default the cluster does not have, stays
Pending forever and the pods using it never start; this check says so before a deploy, naming the field and the
provider's fix.

`needs` lists what the config's claims need, `decide` judges them against the cluster's classes (both pure,
unit-tested); `run_check` lists the StorageClasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qhubctl import kube
from qhubctl.config.model import CLUSTER_BLOCKS, QHubConfig
from qhubctl.errors import UserError

# The annotation that marks a class default; Kubernetes still honours the beta name some older clusters carry.
DEFAULT_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                       "storageclass.beta.kubernetes.io/is-default-class")


@dataclass(frozen=True)
class Need:
    """Claims that need one class: `name` empty means the cluster's default class."""

    field: str  # the config field that names it or could (empty: none can)
    name: str
    claims: str  # which claims, for the message


@dataclass(frozen=True)
class StorageClass:
    name: str
    provisioner: str
    default: bool


@dataclass(frozen=True)
class StorageVerdict:
    ok: bool
    lines: tuple[str, ...]
    summary: str
    fix: str = ""


def needs(cfg: QHubConfig) -> list[Need]:
    """What the deployment's claims need, in the order they are checked."""
    found: list[Need] = []
    if cfg.storage.type == "existing":
        found.append(Need("storage.storage_class", cfg.storage.storage_class, "the shared volume"))
    own = "the hub database, conda-store's databases" + (" and the NFS server's disk" if cfg.storage.type == "nfs"
                                                         else "")
    if cfg.storage.type == "nfs":
        found.append(Need("storage.disk_storage_class", cfg.storage.disk_storage_class or "", own))
    else:  # no field names their class: the chart leaves global.storageClass empty
        found.append(Need("", "", own))
    return found


def storage_class(obj: dict[str, Any]) -> StorageClass:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    default = any(str(annotations.get(a, "")).lower() == "true" for a in DEFAULT_ANNOTATIONS)
    return StorageClass(str(obj["metadata"]["name"]), str(obj.get("provisioner", "")), default)


def decide(wanted: list[Need], classes: list[StorageClass], provider: str) -> StorageVerdict:
    """Every named class must exist; a need without a name needs exactly one default class."""
    by_name = {c.name: c for c in classes}
    defaults = sorted(c.name for c in classes if c.default)
    have = ", ".join(sorted(by_name)) or "none"
    lines: list[str] = []
    problems: list[str] = []
    fixes: list[str] = []
    for need in wanted:
        if need.name:
            found = by_name.get(need.name)
            lines.append(f"{need.field} {need.name} ({need.claims}): "
                         + (f"found (provisioner {found.provisioner})" if found else "missing"))
            if not found:
                problems.append(f"{need.field} names StorageClass {need.name}, which the cluster does not have")
                fixes.append(f"create StorageClass {need.name} or set {need.field} to one the cluster has ({have})")
            continue
        where = f"the cluster's default class ({need.claims}" + (f", {need.field} not set)" if need.field else ")")
        if len(defaults) == 1:
            lines.append(f"{where}: {defaults[0]} (provisioner {by_name[defaults[0]].provisioner})")
            continue
        block = CLUSTER_BLOCKS[provider]
        lines.append(f"{where}: " + (f"{len(defaults)} defaults ({', '.join(defaults)})" if defaults else "none"))
        problems.append(f"the cluster has {len(defaults)} default StorageClasses ({', '.join(defaults)}); exactly "
                        "one must be marked default" if defaults else "the cluster has no default StorageClass")
        fixes.append(f"provider {provider} ({block.default_storage_class}): {block.default_storage_class_fix}")
    if problems:
        return StorageVerdict(False, tuple(lines), "volume claims would never bind: " + "; ".join(problems),
                              "; ".join(fixes))
    return StorageVerdict(True, tuple(lines), "storage classes: every volume claim of the deployment has its class")


class StorageClassError(UserError):
    """A class the deployment's claims need is missing (or the default is missing or not unique)."""

    def __init__(self, verdict: StorageVerdict) -> None:
        super().__init__(verdict.summary, hint=f"{verdict.fix} (docs/providers.md, Cluster add-ons)")
        self.problems = list(verdict.lines)


def run_check(api: Any, cfg: QHubConfig) -> StorageVerdict:
    """List the cluster's StorageClasses and judge them. Raises StorageClassError when a claim would not bind."""
    classes = [storage_class(o) for o in kube._items(api, "/apis/storage.k8s.io/v1/storageclasses")]
    verdict = decide(needs(cfg), classes, cfg.cluster.provider)
    if not verdict.ok:
        raise StorageClassError(verdict)
    return verdict
