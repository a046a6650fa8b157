"""Block storage on EKS: the EBS CSI driver as the EKS managed add-on `aws-ebs-csi-driver`.

EKS clusters have no working volume provisioner of their own (the in-tree EBS plugin is gone), so qhubctl creates
the add-on with its IRSA role `<project>-ebs-csi-driver` (AWS's AmazonEBSCSIDriverPolicy), after the node groups
(its controller needs a node to run on). Its configuration values:
- `controller.k8sTagClusterId: <cluster>`: every volume it makes is tagged `kubernetes.io/cluster/<cluster>=owned`,
  which is how `cluster destroy` finds the volumes of claims (teardown);
- `node.tolerateAllTaints: true`: its node DaemonSet also runs on the tainted user, worker and GPU groups, so a
  volume can attach on any node.
Its version is EKS's default for the cluster's Kubernetes version (providers.eks_addon_versions), moved by `cluster
create` and `qhubctl upgrade` when that default changes. The default StorageClass that uses it (gp3, encrypted) is
in the cluster add-on chart (qhubctl.addons). The add-on goes with the cluster when EKS deletes it; the role is
deleted with the project's other roles.
"""

from __future__ import annotations

import json
from typing import Any

from qhubctl.providers import eks_addon_versions as versions
from qhubctl.providers import eks_netpol
from qhubctl.providers.aws import iam
from qhubctl.providers.aws.account import Account, Observed
from qhubctl.providers.base import Action

ADDON = "aws-ebs-csi-driver"
KIND = eks_netpol.KIND  # "eks-addon": the plan shows `+ eks-addon aws-ebs-csi-driver`


def configuration(cluster: str) -> dict[str, Any]:
    return {"controller": {"k8sTagClusterId": cluster}, "node": {"tolerateAllTaints": True}}


def plan(acc: Account, seen: Observed, version: str) -> list[Action]:
    """Create the add-on at `version` (the wanted one), or put back its role and configuration when they differ and
    move it to `version`."""
    want_role = acc.role_name(iam.EBS_CSI_ROLE)
    addon = seen.ebs_addon
    if addon is None:
        return [Action("create", KIND, ADDON, versions.version_change(None, version),
                       detail=f"EBS volumes; IAM role {want_role}")]
    changes: dict[str, tuple[Any, Any]] = {}
    have_role = str(addon.get("serviceAccountRoleArn") or "").rsplit("/", 1)[-1] or None
    if have_role != want_role:
        changes["role"] = (have_role, want_role)
    have = eks_netpol.config_values(addon)
    want = configuration(acc.cluster_name)
    if have != want:
        changes["configuration"] = (json.dumps(have, sort_keys=True), json.dumps(want, sort_keys=True))
    changes.update(versions.version_change(addon, version))
    return [Action("update", KIND, ADDON, changes)] if changes else []


def apply(acc: Account, action: Action) -> None:
    """Create or update the add-on at the version the plan chose, then wait until it has settled (DEGRADED counts:
    no node may have joined)."""
    eks = acc.client("eks")
    args = {"clusterName": acc.cluster_name, "addonName": ADDON, "resolveConflicts": "OVERWRITE",
            "serviceAccountRoleArn": iam.role_arn(acc, iam.EBS_CSI_ROLE),
            "configurationValues": json.dumps(configuration(acc.cluster_name), sort_keys=True),
            **versions.pinned(action)}
    if action.op == "create":
        eks.create_addon(**args, tags=dict(acc.tags))
    else:
        eks.update_addon(**args)
    eks_netpol.wait_settled(eks, acc.cluster_name, ADDON, acc.log)
