"""NetworkPolicy enforcement on EKS: the VPC CNI add-on with its network policy agent.

EKS clusters run the Amazon VPC CNI, which ignores NetworkPolicies unless its network policy agent is on (the
`aws-network-policy-agent` container of the aws-node DaemonSet, VPC CNI 1.14 or later). qhubctl installs the
CNI as an EKS managed add-on with the configuration value `enableNetworkPolicy: "true"`, which turns the agent on
and keeps it on across add-on upgrades. The add-on uses the node role's AmazonEKS_CNI_Policy (providers.aws.iam). An
existing cluster's add-on gets the value added to its own configuration values (the others are kept).
`qhubctl check` proves the result on the running cluster. The add-on's version is pinned like the EBS CSI driver's
(providers.eks_addon_versions: EKS's default for the cluster's Kubernetes version).
"""

from __future__ import annotations

import json
from typing import Any

from qhubctl.errors import QHubError
from qhubctl.providers import eks_addon_versions as versions
from qhubctl.providers.base import Action, Log, wait_until

ADDON = "vpc-cni"
KIND = "eks-addon"
SETTING = "enableNetworkPolicy"  # a string in the add-on's configuration schema: "true" / "false"
SETTLED = ("ACTIVE", "DEGRADED")  # DEGRADED: its DaemonSet has no ready pod yet (no node has joined)
FAILED = ("CREATE_FAILED", "UPDATE_FAILED")


def config_values(addon: dict[str, Any]) -> dict[str, Any]:
    """The add-on's configuration values (EKS returns them as the JSON or YAML text they were given in)."""
    text = addon.get("configurationValues") or ""
    if not text.strip():
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        import yaml

        found = yaml.safe_load(text)
    return dict(found) if isinstance(found, dict) else {}


def plan_actions(addon: dict[str, Any] | None, version: str) -> list[Action]:
    """Pure: the add-on to create at `version` (the wanted one), or its configuration or version to update, so
    the network policy agent runs."""
    if addon is None:
        return [Action("create", KIND, ADDON, versions.version_change(None, version),
                       detail=f"network policy agent on: {SETTING}=true")]
    changes: dict[str, tuple[Any, Any]] = {}
    have = str(config_values(addon).get(SETTING, "false")).lower()
    if have != "true":
        changes[SETTING] = (have, "true")
    changes.update(versions.version_change(addon, version))
    return [Action("update", KIND, ADDON, changes)] if changes else []


def describe(eks: Any, cluster: str, addon: str = ADDON) -> dict[str, Any] | None:
    """An EKS add-on of the cluster (this module's, or another's: the AWS provider's EBS CSI driver), if there."""
    try:
        return dict(eks.describe_addon(clusterName=cluster, addonName=addon)["addon"])
    except eks.exceptions.ResourceNotFoundException:
        return None


def apply(eks: Any, cluster: str, action: Action, tags: dict[str, str], log: Log) -> None:
    """Create the add-on or add the setting to its configuration, at the version the plan chose, then wait until
    it has settled."""
    pin = versions.pinned(action)
    # OVERWRITE: the cluster's bootstrap installed aws-node itself; the managed add-on takes over its fields
    if action.op == "create":
        eks.create_addon(clusterName=cluster, addonName=ADDON, resolveConflicts="OVERWRITE", tags=dict(tags),
                         configurationValues=json.dumps({SETTING: "true"}), **pin)
    else:
        current = describe(eks, cluster) or {}
        values = {**config_values(current), SETTING: "true"}
        eks.update_addon(clusterName=cluster, addonName=ADDON, resolveConflicts="OVERWRITE",
                         configurationValues=json.dumps(values, sort_keys=True), **pin)
    wait_settled(eks, cluster, ADDON, log)


def wait_settled(eks: Any, cluster: str, name: str, log: Log) -> None:
    """Wait until an add-on is ACTIVE (or DEGRADED: no node to run on yet); its failure is a QHubError."""

    def settled() -> bool:
        addon = describe(eks, cluster, name) or {}
        status = addon.get("status", "")
        if status in FAILED:
            issues = "; ".join(i.get("message", "") for i in (addon.get("health") or {}).get("issues") or [])
            raise QHubError(f"EKS add-on {name} is {status}: {issues or 'no reason given'}",
                            hint="see the add-on in the EKS console; `qhubctl cluster create` tries again")
        return status in SETTLED

    wait_until(settled, f"EKS add-on {name}", timeout=1200, log=log)
