"""The version of each EKS managed add-on qhubctl creates (`vpc-cni`, providers.eks_netpol; `aws-ebs-csi-driver`,
providers.aws.ebs_csi): the one place that chooses it, and how a plan carries it to CreateAddon/UpdateAddon.

The wanted version is EKS's default version of the add-on for a Kubernetes version: of DescribeAddonVersions'
entries (all pages), the `addonVersions` item whose `compatibilities` item for that `clusterVersion` has
`defaultVersion: true`; when no item is marked default, the highest version compatible with it. Versions are
compared by their numbers in order (`v1.41.0-eksbuild.1` -> 1, 41, 0, 1), so v1.9.0 < v1.10.0 and eksbuild.2 <
eksbuild.10. The plan asks for the config's Kubernetes version (it upgrades the cluster before its add-ons), so a
raised `kubernetes_version`, or EKS moving its default, shows as `~ eks-addon <name>` with `version: old -> new`;
a new add-on's plan shows `version: (none) -> v...`. apply passes exactly that version as `addonVersion`.

Only forward: a change is planned only when the wanted version sorts strictly higher than the installed one. EKS
cannot downgrade an add-on, so one that is newer (updated by hand, or EKS's default lagging behind) is left as it
is, and the plan says so in a note (`vpc-cni v1.20.1 is newer than EKS's default v1.19.0 for Kubernetes 1.33: left
as it is`). AWS advises moving vpc-cni one minor version at a time; qhubctl moves it straight to the wanted version
(EKS accepts that) and notes a move that skips minor versions (same major, minor more than one higher), with how to
step by hand instead. It does not step through the minors itself: each step would be its own update, and a plan
must be carried out by one apply (`cluster create` checks that the plan is empty afterwards).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from qhubctl.errors import UserError
from qhubctl.providers.base import Action

FIELD = "version"  # the plan's change of an add-on's version: (observed, wanted)
# Add-ons AWS advises to move one minor version at a time (the VPC CNI's update guide).
ONE_MINOR_AT_A_TIME = frozenset({"vpc-cni"})


def version_key(version: str) -> tuple[int, ...]:
    """The numbers of an add-on version in order, compared as numbers (`v1.41.0-eksbuild.1` -> (1, 41, 0, 1))."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def wanted(eks: Any, addon: str, kubernetes_version: str) -> str:
    """EKS's default version of `addon` for `kubernetes_version`, else the highest compatible one; a UserError when
    EKS offers none for that Kubernetes version."""
    compatible: list[str] = []
    defaults: list[str] = []
    pages = eks.get_paginator("describe_addon_versions").paginate(addonName=addon,
                                                                  kubernetesVersion=kubernetes_version)
    for page in pages:
        for entry in page.get("addons") or []:
            if entry.get("addonName") != addon:
                continue
            for item in entry.get("addonVersions") or []:
                for compat in item.get("compatibilities") or []:
                    if compat.get("clusterVersion") == kubernetes_version:
                        compatible.append(item["addonVersion"])
                        if compat.get("defaultVersion"):
                            defaults.append(item["addonVersion"])
    if not compatible:
        raise UserError(f"EKS offers no version of the add-on {addon} for Kubernetes {kubernetes_version}",
                        hint="set cluster.kubernetes_version to a version EKS supports in this region (`aws eks "
                             f"describe-addon-versions --addon-name {addon}` lists its versions)")
    return max(defaults or compatible, key=version_key)


def version_change(addon: Mapping[str, Any] | None, want: str) -> dict[str, tuple[str | None, str]]:
    """The plan's version change of an add-on (observed, wanted): (None, wanted) for a new one; nothing unless the
    wanted version sorts higher than the installed one (EKS does not downgrade; `note` says why nothing moves)."""
    have = (addon or {}).get("addonVersion")
    if have and version_key(have) >= version_key(want):
        return {}
    return {FIELD: (have, want)}


def note(name: str, addon: Mapping[str, Any] | None, want: str, kubernetes_version: str) -> str | None:
    """What a plan says beside its actions about an installed add-on's version: newer than the wanted one (left as
    it is), or a vpc-cni move that skips minor versions; None otherwise."""
    have = (addon or {}).get("addonVersion")
    if not have:
        return None
    old, new = version_key(have), version_key(want)
    if old > new:
        return (f"{name} {have} is newer than EKS's default {want} for Kubernetes {kubernetes_version}: left as it "
                "is (EKS does not downgrade an add-on)")
    if name in ONE_MINOR_AT_A_TIME and len(old) > 1 and len(new) > 1 and old[0] == new[0] and new[1] - old[1] > 1:
        return (f"{name} {have} -> {want} skips minor versions, which qhubctl does in one update; AWS advises one "
                "minor at a time: to step, first update it by hand to each minor's latest between them (`aws eks "
                f"describe-addon-versions --addon-name {name} --kubernetes-version {kubernetes_version}` lists them)")
    return None


def pinned(action: Action) -> dict[str, str]:
    """CreateAddon/UpdateAddon's `addonVersion` argument for a plan's action: the version the plan chose; none when
    the plan keeps the add-on's version (an update of its settings only)."""
    change = action.changes.get(FIELD)
    return {"addonVersion": change[1]} if change else {}
