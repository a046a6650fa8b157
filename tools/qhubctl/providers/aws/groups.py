"""EKS managed node groups in the private subnets, each with cluster-autoscaler's auto-discovery and
scale-from-zero tags (on the node group and copied to its Auto Scaling groups)."""

from __future__ import annotations

import re
from typing import Any

from qhubctl import nodegroups as ng
from qhubctl.errors import QHubError
from qhubctl.providers.aws import iam, network
from qhubctl.providers.aws.account import CA_PREFIX, Account, Observed
from qhubctl.providers.base import TAG_PROJECT, Action, GroupSpec, desired_groups, diff_groups, wait_until

EFFECT_TO_EKS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
EFFECT_FROM_EKS = {v: k for k, v in EFFECT_TO_EKS.items()}
TAG_GPU = "qhub.dev/gpu-count"
# The fields EKS reports back (it has no GPU type).
COMPARED = ("min_nodes", "max_nodes", "labels", "taints", "instance_type", "spot", "disk_size_gb", "gpu_count")


def ami_type(spec: GroupSpec) -> str:
    """EKS AMI family: NVIDIA for GPU groups, ARM for Graviton families (m7g, c6gn...), standard otherwise."""
    if spec.gpu_count:
        return "AL2023_x86_64_NVIDIA"
    family = (spec.instance_type or "").split(".")[0]
    if re.match(r"^[a-z]+[0-9]+g[a-z]*$", family):
        return "AL2023_ARM_64_STANDARD"
    return "AL2023_x86_64_STANDARD"


def autoscaler_tags(cluster: str, spec: GroupSpec) -> dict[str, str]:
    """Auto-discovery and scale-from-zero tags cluster-autoscaler reads from a node group's ASG."""
    tags = {f"{CA_PREFIX}/enabled": "true", f"{CA_PREFIX}/{cluster}": "owned"}
    for key, value in spec.labels.items():
        tags[f"{CA_PREFIX}/node-template/label/{key}"] = value
    for taint in spec.taints:
        tags[f"{CA_PREFIX}/node-template/taint/{taint.key}"] = f"{taint.value}:{taint.effect}"
    if spec.gpu_count:
        tags[f"{CA_PREFIX}/node-template/resources/{ng.GPU_RESOURCE}"] = str(spec.gpu_count)
    return tags


def group_tags(acc: Account, spec: GroupSpec) -> dict[str, str]:
    return {**acc.tags, **autoscaler_tags(acc.cluster_name, spec), TAG_GPU: str(spec.gpu_count)}


def group_spec(group: dict[str, Any]) -> GroupSpec:
    """A node group as EKS describes it, in provider-neutral terms."""
    scaling = group.get("scalingConfig", {})
    taints = frozenset(ng.Taint(t["key"], t.get("value", ""), EFFECT_FROM_EKS.get(t["effect"], t["effect"]))
                       for t in group.get("taints", []) or [])
    gpu = int(group.get("tags", {}).get(TAG_GPU, "0"))
    return GroupSpec(
        name=group["nodegroupName"],
        instance_type=(group.get("instanceTypes") or [None])[0],
        min_nodes=scaling.get("minSize", 0),
        max_nodes=scaling.get("maxSize", 0),
        spot=group.get("capacityType") == "SPOT",
        disk_size_gb=group.get("diskSize") or 20,
        labels=dict(group.get("labels") or {}),
        taints=taints,
        gpu_count=gpu,
        gpu_type=None,
    )


def observe(acc: Account, seen: Observed) -> None:
    """The project's node groups (not those being deleted) and their tags."""
    eks = acc.client("eks")
    for page in eks.get_paginator("list_nodegroups").paginate(clusterName=acc.cluster_name):
        for name in page["nodegroups"]:
            group = eks.describe_nodegroup(clusterName=acc.cluster_name, nodegroupName=name)["nodegroup"]
            if group.get("tags", {}).get(TAG_PROJECT) != acc.cfg.project_name or group["status"] == "DELETING":
                continue
            seen.groups[name] = group_spec(group)
            seen.group_tags[name] = dict(group.get("tags", {}))


def plan(acc: Account, seen: Observed) -> list[Action]:
    """The config's groups against EKS's, plus an update where only the scale-from-zero tags drifted."""
    desired = desired_groups(acc.cfg)
    actions = diff_groups(desired, seen.groups, compare=COMPARED)
    changed = {a.name for a in actions}
    for spec in desired:  # scale-from-zero tags drifted (edited by hand) while the group itself matches
        if spec.name in seen.groups and spec.name not in changed:
            want = group_tags(acc, spec)
            have_tags = {k: v for k, v in seen.group_tags[spec.name].items() if k.startswith(CA_PREFIX)}
            want_ca = {k: v for k, v in want.items() if k.startswith(CA_PREFIX)}
            if have_tags != want_ca:
                actions.append(Action("update", "nodegroup", spec.name, {"autoscaler tags": (
                    len(have_tags), len(want_ca))}))
    return actions


def apply(acc: Account, action: Action, spec: GroupSpec | None) -> None:
    """Carry out one nodegroup action: replace is delete then create."""
    if action.op in ("delete", "replace"):
        delete_group(acc, action.name)
    if action.op in ("create", "replace"):
        assert spec is not None
        _create(acc, spec)
    if action.op == "update":
        assert spec is not None
        _update(acc, spec)


def _create(acc: Account, spec: GroupSpec) -> None:
    eks = acc.client("eks")
    eks.create_nodegroup(
        clusterName=acc.cluster_name, nodegroupName=spec.name,
        scalingConfig={"minSize": spec.min_nodes, "maxSize": spec.max_nodes, "desiredSize": spec.min_nodes},
        subnets=network.node_subnets(acc), instanceTypes=[spec.instance_type or "m6i.xlarge"],
        amiType=ami_type(spec), capacityType="SPOT" if spec.spot else "ON_DEMAND", diskSize=spec.disk_size_gb,
        nodeRole=iam.role_arn(acc, "node"), labels=dict(spec.labels),
        taints=[{"key": t.key, "value": t.value, "effect": EFFECT_TO_EKS[t.effect]} for t in sorted(
            spec.taints, key=str)],
        tags=group_tags(acc, spec))
    _wait(acc, spec.name)
    _tag_asgs(acc, spec)


def _update(acc: Account, spec: GroupSpec) -> None:
    eks = acc.client("eks")
    group = eks.describe_nodegroup(clusterName=acc.cluster_name, nodegroupName=spec.name)["nodegroup"]
    have = group_spec(group)
    update: dict[str, Any] = {}
    if (have.min_nodes, have.max_nodes) != (spec.min_nodes, spec.max_nodes):
        desired = group["scalingConfig"].get("desiredSize", spec.min_nodes)
        update["scalingConfig"] = {"minSize": spec.min_nodes, "maxSize": spec.max_nodes,
                                   "desiredSize": max(spec.min_nodes, min(desired, spec.max_nodes))}
    if dict(have.labels) != dict(spec.labels):
        update["labels"] = {"addOrUpdateLabels": dict(spec.labels),
                            "removeLabels": sorted(set(have.labels) - set(spec.labels))}
        if not update["labels"]["removeLabels"]:
            del update["labels"]["removeLabels"]
    if have.taints != spec.taints:
        add = [{"key": t.key, "value": t.value, "effect": EFFECT_TO_EKS[t.effect]} for t in spec.taints]
        kept = {(s.key, s.effect) for s in spec.taints}
        gone = [{"key": t.key, "value": t.value, "effect": EFFECT_TO_EKS[t.effect]}
                for t in have.taints - spec.taints if (t.key, t.effect) not in kept]
        update["taints"] = {"addOrUpdateTaints": add, **({"removeTaints": gone} if gone else {})}
    if update:
        eks.update_nodegroup_config(clusterName=acc.cluster_name, nodegroupName=spec.name, **update)
        _wait(acc, spec.name)
    want = group_tags(acc, spec)
    stale = [k for k in group.get("tags", {}) if k.startswith(CA_PREFIX) and k not in want]
    if stale:
        eks.untag_resource(resourceArn=group["nodegroupArn"], tagKeys=stale)
    if {k: group.get("tags", {}).get(k) for k in want} != want:
        eks.tag_resource(resourceArn=group["nodegroupArn"], tags=want)
    _tag_asgs(acc, spec)


def _tag_asgs(acc: Account, spec: GroupSpec) -> None:
    """EKS does not copy node group tags to the Auto Scaling group; cluster-autoscaler reads them there."""
    group = acc.client("eks").describe_nodegroup(clusterName=acc.cluster_name, nodegroupName=spec.name)["nodegroup"]
    names = [a["name"] for a in group.get("resources", {}).get("autoScalingGroups", [])]
    autoscaling = acc.client("autoscaling")
    existing = {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=names)["AutoScalingGroups"]} if names else set()
    tags = autoscaler_tags(acc.cluster_name, spec)
    for name in names:
        if name not in existing:  # not created yet by EKS (or an emulator without Auto Scaling groups)
            continue
        autoscaling.create_or_update_tags(Tags=[
            {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
             "PropagateAtLaunch": False} for k, v in sorted(tags.items())])


def _wait(acc: Account, name: str) -> None:
    eks = acc.client("eks")

    def active() -> bool:
        group = eks.describe_nodegroup(clusterName=acc.cluster_name, nodegroupName=name)["nodegroup"]
        if group["status"] in ("CREATE_FAILED", "DEGRADED"):
            issues = "; ".join(i.get("message", "") for i in group.get("health", {}).get("issues", []))
            raise QHubError(f"node group {name} is {group['status']}: {issues}")
        return bool(group["status"] == "ACTIVE")

    wait_until(active, f"node group {name}", timeout=1800, log=acc.log)


def delete_group(acc: Account, name: str) -> None:
    eks = acc.client("eks")
    try:
        eks.delete_nodegroup(clusterName=acc.cluster_name, nodegroupName=name)
    except eks.exceptions.ResourceNotFoundException:
        return

    def gone() -> bool:
        try:
            eks.describe_nodegroup(clusterName=acc.cluster_name, nodegroupName=name)
        except eks.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_until(gone, f"node group {name} to be deleted", timeout=1800, log=acc.log)
