"""What Kubernetes made in the account for the cluster (load balancers for Services and Ingresses, EBS volumes
for claims, security groups), found by the tags Kubernetes and its controllers put on them, and its removal."""

from __future__ import annotations

import time
from typing import Any

import botocore.exceptions

from qhubctl.providers.aws.account import Account, tag_dict
from qhubctl.providers.base import Action, wait_until


def load_balancer_actions(acc: Account) -> list[Action]:
    return [Action("delete", kind, name, detail=f"created by the cluster: {arn}")
            for arn, name, kind in _load_balancers(acc)]


def volume_and_security_group_actions(acc: Account, vpc_id: str | None) -> list[Action]:
    actions = [Action("delete", "ebs-volume", v["VolumeId"], detail=f"{v['Size']} GiB, created by the cluster")
               for v in _volumes(acc)]
    actions += [Action("delete", "security-group", g["GroupId"], detail=g["GroupName"])
                for g in _security_groups(acc, vpc_id)]
    return actions


def _cluster_tag_match(acc: Account, tags: dict[str, str]) -> bool:
    name = acc.cluster_name
    return (tags.get(f"kubernetes.io/cluster/{name}") == "owned" or tags.get("elbv2.k8s.aws/cluster") == name
            or tags.get("KubernetesCluster") == name)


def _load_balancers(acc: Account) -> list[tuple[str, str, str]]:
    """Load balancers Kubernetes made for Services/Ingresses of this cluster (ELBv2 and classic)."""
    found: list[tuple[str, str, str]] = []
    elbv2 = acc.client("elbv2")
    lbs = [lb for page in elbv2.get_paginator("describe_load_balancers").paginate() for lb in page["LoadBalancers"]]
    for i in range(0, len(lbs), 20):
        chunk = lbs[i:i + 20]
        described = elbv2.describe_tags(ResourceArns=[lb["LoadBalancerArn"] for lb in chunk])["TagDescriptions"]
        tags = {d["ResourceArn"]: tag_dict(d.get("Tags")) for d in described}
        for lb in chunk:
            if _cluster_tag_match(acc, tags.get(lb["LoadBalancerArn"], {})):
                found.append((lb["LoadBalancerArn"], lb["LoadBalancerName"], "load-balancer"))
    elb = acc.client("elb")
    classic = elb.describe_load_balancers()["LoadBalancerDescriptions"]
    for i in range(0, len(classic), 20):
        chunk = classic[i:i + 20]
        described = elb.describe_tags(LoadBalancerNames=[lb["LoadBalancerName"] for lb in chunk])["TagDescriptions"]
        tags = {d["LoadBalancerName"]: tag_dict(d.get("Tags")) for d in described}
        for lb in chunk:
            if _cluster_tag_match(acc, tags.get(lb["LoadBalancerName"], {})):
                found.append((lb["LoadBalancerName"], lb["LoadBalancerName"], "classic-load-balancer"))
    return found


def _volumes(acc: Account) -> list[dict[str, Any]]:
    ec2 = acc.client("ec2")
    volumes: dict[str, dict[str, Any]] = {}
    for filters in ([{"Name": f"tag:kubernetes.io/cluster/{acc.cluster_name}", "Values": ["owned"]}],
                    [{"Name": "tag:KubernetesCluster", "Values": [acc.cluster_name]}]):
        for volume in ec2.describe_volumes(Filters=filters)["Volumes"]:
            volumes[volume["VolumeId"]] = volume
    return [volumes[k] for k in sorted(volumes)]


def _security_groups(acc: Account, vpc_id: str | None) -> list[dict[str, Any]]:
    ec2 = acc.client("ec2")
    groups: dict[str, dict[str, Any]] = {}
    owned = [{"Name": f"tag:kubernetes.io/cluster/{acc.cluster_name}", "Values": ["owned"]}]
    for group in ec2.describe_security_groups(Filters=owned)["SecurityGroups"]:
        groups[group["GroupId"]] = group
    if vpc_id:  # every non-default group in our own VPC (EKS makes the cluster security group there)
        for group in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]:
            if group["GroupName"] != "default":
                groups[group["GroupId"]] = group
    return [groups[k] for k in sorted(groups)]


def delete_load_balancer(acc: Account, name: str) -> None:
    elbv2 = acc.client("elbv2")
    arn = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]["LoadBalancerArn"]
    groups = elbv2.describe_target_groups(LoadBalancerArn=arn)["TargetGroups"]
    elbv2.delete_load_balancer(LoadBalancerArn=arn)

    def gone() -> bool:
        return not [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["LoadBalancerArn"] == arn]

    wait_until(gone, f"load balancer {name} to be deleted", timeout=600, log=acc.log)
    for group in groups:
        elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])


def delete_classic_load_balancer(acc: Account, name: str) -> None:
    acc.client("elb").delete_load_balancer(LoadBalancerName=name)


def delete_ebs_volume(acc: Account, volume_id: str) -> None:
    ec2 = acc.client("ec2")

    def detached() -> bool:
        found = ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])["Volumes"]
        return not found or found[0]["State"] == "available"

    wait_until(detached, f"volume {volume_id} to be detached", timeout=600, log=acc.log)
    try:
        ec2.delete_volume(VolumeId=volume_id)
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "InvalidVolume.NotFound":
            raise


def delete_security_group(acc: Account, group_id: str) -> None:
    ec2 = acc.client("ec2")
    deadline = time.monotonic() + 600
    while True:  # network interfaces of deleted load balancers linger for a while
        try:
            ec2.delete_security_group(GroupId=group_id)
            return
        except botocore.exceptions.ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "InvalidGroup.NotFound":
                return
            if code != "DependencyViolation" or time.monotonic() > deadline:
                raise
            time.sleep(10)
