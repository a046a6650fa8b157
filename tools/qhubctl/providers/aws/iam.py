"""IAM: the cluster and node roles, the IRSA roles of cluster-autoscaler and the EBS CSI driver (each trusting one
service account through the cluster's OIDC provider), and the OIDC provider itself. Roles live under the path
`/qhub/<project_name>/`."""

from __future__ import annotations

import json
from typing import Any

from qhubctl import addons
from qhubctl.errors import QHubError, UserError
from qhubctl.providers.aws.account import CA_PREFIX, Account, Observed, tag_dict, tag_list
from qhubctl.providers.base import TAG_PROJECT, Action

# The roles qhubctl makes, by short name (the role is `<project>-<short>`), in the order plan lists them.
BASE_ROLES = ("cluster", "node")
AUTOSCALER_ROLE = "cluster-autoscaler"
EBS_CSI_ROLE = "ebs-csi-driver"
# IRSA roles, planned after the OIDC provider they trust: the one service account each trusts
# (the add-on release's cluster-autoscaler; the EBS CSI driver add-on's controller).
IRSA_ROLES: dict[str, tuple[str, str]] = {
    AUTOSCALER_ROLE: (addons.NAMESPACE, addons.AUTOSCALER_ACCOUNT),
    EBS_CSI_ROLE: ("kube-system", "ebs-csi-controller-sa"),
}
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
EBS_CSI_POLICIES = ("service-role/AmazonEBSCSIDriverPolicy",)


def role_policies(short: str) -> tuple[str, ...]:
    """The AWS managed policies a role carries."""
    return {"cluster": CLUSTER_POLICIES, "node": NODE_POLICIES, EBS_CSI_ROLE: EBS_CSI_POLICIES}.get(short, ())


def managed_policy(acc: Account, name: str) -> str:
    return f"arn:{acc.partition}:iam::aws:policy/{name}"


def role_arn(acc: Account, short: str) -> str:
    return str(acc.client("iam").get_role(RoleName=acc.role_name(short))["Role"]["Arn"])


def observe(acc: Account, seen: Observed) -> None:
    """The project's roles with their attached and inline policies."""
    iam = acc.client("iam")
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=acc.path):
        for role in page["Roles"]:
            name = role["RoleName"]
            seen.roles[name] = role
            seen.role_policies[name] = [p["PolicyArn"] for p in
                                        iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
            seen.role_inline[name] = list(iam.list_role_policies(RoleName=name)["PolicyNames"])


def role_actions(acc: Account, seen: Observed, short: str) -> list[Action]:
    """Create the role, or repair its policies when one is missing."""
    name = acc.role_name(short)
    if name not in seen.roles:
        return [Action("create", "iam-role", name)]
    want = {managed_policy(acc, p) for p in role_policies(short)}
    have = set(seen.role_policies.get(name, ()))
    inline_ok = short != AUTOSCALER_ROLE or AUTOSCALER_ROLE in seen.role_inline.get(name, ())
    if want - have or not inline_ok:
        missing = sorted(p.rsplit("/", 1)[1] for p in want - have) + ([] if inline_ok else ["(inline)"])
        return [Action("update", "iam-role", name, {"policies": ("incomplete", ", ".join(missing))})]
    return []


def put_role(acc: Account, action: Action) -> None:
    """Create a role (or repair it: attaching policies is idempotent) with its trust and policies."""
    iam = acc.client("iam")
    short = action.name[len(acc.cluster_name) + 1:]
    if short in IRSA_ROLES:
        trust = irsa_trust(acc, *IRSA_ROLES[short])
    else:
        service = "eks.amazonaws.com" if short == "cluster" else "ec2.amazonaws.com"
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    try:
        iam.create_role(RoleName=action.name, Path=acc.path, AssumeRolePolicyDocument=json.dumps(trust),
                        Description=f"QHub {acc.cluster_name}: {short}", Tags=tag_list(acc.tags))
    except iam.exceptions.EntityAlreadyExistsException:
        if action.op == "create":
            raise UserError(f"IAM role {action.name} exists outside {acc.path}; qhubctl did not create it",
                            hint="delete or rename that role, or choose another project_name") from None
    for policy in role_policies(short):  # attaching is idempotent: also repairs a half-made role
        iam.attach_role_policy(RoleName=action.name, PolicyArn=managed_policy(acc, policy))
    if short == AUTOSCALER_ROLE:
        iam.put_role_policy(RoleName=action.name, PolicyName=AUTOSCALER_ROLE,
                            PolicyDocument=json.dumps(autoscaler_policy(acc)))


def irsa_trust(acc: Account, namespace: str, account: str) -> dict[str, Any]:
    """A trust policy letting one Kubernetes service account assume the role (IRSA)."""
    oidc_arn = find_oidc(acc)
    if not oidc_arn:
        raise QHubError("the cluster's OIDC provider is missing", hint="run `qhubctl cluster create` again")
    issuer = oidc_arn.split(":oidc-provider/", 1)[1]
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": oidc_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
                                       f"{issuer}:aud": "sts.amazonaws.com"}}}]}


def autoscaler_policy(acc: Account) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
            "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
            "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
            "eks:DescribeNodegroup"]},
        {"Effect": "Allow", "Resource": "*",
         "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{CA_PREFIX}/{acc.cluster_name}": "owned"}}}]}


def find_oidc(acc: Account) -> str | None:
    """The ARN of the project's OIDC provider (found by its tag), if there is one."""
    iam = acc.client("iam")
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        arn = str(entry["Arn"])
        tags = tag_dict(iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn).get("Tags"))
        if tags.get(TAG_PROJECT) == acc.cfg.project_name:
            return arn
    return None


def destroy_plan(acc: Account, seen: Observed) -> list[Action]:
    """The OIDC provider, then every role of the project."""
    actions: list[Action] = []
    oidc = find_oidc(acc)
    if oidc:
        actions.append(Action("delete", "oidc-provider", oidc))
    for role in sorted(seen.roles):
        actions.append(Action("delete", "iam-role", role))
    return actions


def delete_oidc_provider(acc: Account, arn: str) -> None:
    acc.client("iam").delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def delete_role(acc: Account, name: str) -> None:
    iam = acc.client("iam")
    for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
    iam.delete_role(RoleName=name)
