"""The EKS cluster: create, upgrade one minor at a time, the API endpoint's public ranges, the OIDC provider for
IRSA, the kubeconfig, delete."""

from __future__ import annotations

import time
from typing import Any

import botocore.exceptions

from qhubctl.config.aws import DEFAULT_API_PUBLIC_CIDRS
from qhubctl.errors import QHubError, UserError
from qhubctl.providers import eks_netpol
from qhubctl.providers.aws import ebs_csi, iam, network
from qhubctl.providers.aws.account import Account, Observed, tag_list
from qhubctl.providers.base import TAG_PROJECT, Action, wait_until


def minor(version: str) -> int:
    return int(version.split(".")[1])


def public_cidrs(cluster: dict[str, Any]) -> list[str]:
    """The public API endpoint's allowed ranges as EKS reports them (absent means EKS's default, any address)."""
    vpc = cluster.get("resourcesVpcConfig") or {}
    return sorted(vpc.get("publicAccessCidrs") or DEFAULT_API_PUBLIC_CIDRS)


def observe(acc: Account, seen: Observed) -> None:
    """The cluster (not one being deleted), its OIDC provider and its vpc-cni and EBS CSI add-ons. A cluster of
    that name that qhubctl did not make is a UserError."""
    eks = acc.client("eks")
    try:
        cluster = eks.describe_cluster(name=acc.cluster_name)["cluster"]
    except eks.exceptions.ResourceNotFoundException:
        cluster = None
    if cluster and cluster.get("tags", {}).get(TAG_PROJECT) != acc.cfg.project_name:
        raise UserError(f"an EKS cluster named {acc.cluster_name} exists in {acc.region} but qhubctl did not "
                        "create it", hint="choose another project_name, or use provider existing for it")
    seen.cluster = cluster if cluster and cluster["status"] != "DELETING" else None
    if seen.cluster:
        seen.oidc_arn = iam.find_oidc(acc)
        seen.addon = eks_netpol.describe(eks, acc.cluster_name)
        seen.ebs_addon = eks_netpol.describe(eks, acc.cluster_name, ebs_csi.ADDON)


def plan(acc: Account, seen: Observed) -> list[Action]:
    """Create the cluster, or upgrade its version and set its endpoint's ranges; then the OIDC provider. (The VPC CNI
    add-on comes right after, planned by the provider with its version.)"""
    actions: list[Action] = []
    version = acc.cfg.cluster.kubernetes_version
    if not seen.cluster:
        actions.append(Action("create", "eks-cluster", acc.cluster_name, detail=f"Kubernetes {version}"))
    else:
        have = seen.cluster["version"]
        if minor(have) > minor(version):
            raise UserError(f"cluster {acc.cluster_name} runs Kubernetes {have}; EKS cannot downgrade to {version}",
                            hint=f"set cluster.kubernetes_version to {have} or newer")
        if have != version:
            actions.append(Action("update", "eks-cluster", acc.cluster_name, {"version": (have, version)}))
        have_cidrs = public_cidrs(seen.cluster)
        want_cidrs = sorted(acc.cfg.cluster.api_public_cidrs)
        if have_cidrs != want_cidrs:
            actions.append(Action("update", "eks-endpoint", acc.cluster_name,
                                  {"public_cidrs": (", ".join(have_cidrs), ", ".join(want_cidrs))}))
    if not seen.oidc_arn:
        actions.append(Action("create", "oidc-provider", acc.cluster_name))
    return actions


def _check_version_offered(acc: Account) -> None:
    version = acc.cfg.cluster.kubernetes_version
    eks = acc.client("eks")
    try:
        offered = [v["clusterVersion"] for v in eks.describe_cluster_versions()["clusterVersions"]]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        return  # partitions or emulators without the API: create_cluster itself rejects a bad version
    if offered and version not in offered:
        raise UserError(f"EKS in {acc.region} does not offer Kubernetes {version}",
                        hint=f"set cluster.kubernetes_version to one of {', '.join(sorted(offered))}")


def endpoint_access(acc: Account) -> dict[str, Any]:
    """The API endpoint: private inside the VPC (nodes), public only from cluster.api_public_cidrs."""
    return {"endpointPublicAccess": True, "endpointPrivateAccess": True,
            "publicAccessCidrs": list(acc.cfg.cluster.api_public_cidrs)}


def create_cluster(acc: Account, action: Action) -> None:
    eks = acc.client("eks")
    _check_version_offered(acc)
    subnets = list(network.subnets(acc).values())
    deadline = time.monotonic() + 120
    while True:  # a fresh IAM role takes a few seconds before EKS may assume it
        try:
            eks.create_cluster(
                name=acc.cluster_name, version=acc.cfg.cluster.kubernetes_version,
                roleArn=iam.role_arn(acc, "cluster"),
                resourcesVpcConfig={"subnetIds": subnets, **endpoint_access(acc)},
                accessConfig={"authenticationMode": "API_AND_CONFIG_MAP",
                              "bootstrapClusterCreatorAdminPermissions": True},
                tags=dict(acc.tags))
            break
        except eks.exceptions.InvalidParameterException as exc:
            if "role" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(5)
    _wait_active(acc)


def _wait_active(acc: Account) -> None:
    eks = acc.client("eks")

    def active() -> bool:
        status = eks.describe_cluster(name=acc.cluster_name)["cluster"]["status"]
        if status == "FAILED":
            raise QHubError(f"EKS cluster {acc.cluster_name} failed to create")
        return bool(status == "ACTIVE")

    wait_until(active, f"EKS cluster {acc.cluster_name}", timeout=1800, log=acc.log)


def update_endpoint(acc: Account, action: Action) -> None:
    acc.client("eks").update_cluster_config(name=acc.cluster_name, resourcesVpcConfig=endpoint_access(acc))
    _wait_active(acc)


def upgrade_cluster(acc: Account, action: Action) -> None:
    eks = acc.client("eks")
    have, want = action.changes["version"]
    current = have
    while minor(current) < minor(want):  # EKS upgrades one minor at a time, in place
        current = f"1.{minor(current) + 1}"
        eks.update_cluster_version(name=acc.cluster_name, version=current)
        _wait_active(acc)


def create_oidc_provider(acc: Account, action: Action) -> None:
    """The IAM OIDC provider for the cluster's service account issuer (IRSA)."""
    issuer = acc.client("eks").describe_cluster(name=acc.cluster_name)["cluster"]["identity"]["oidc"]["issuer"]
    acc.client("iam").create_open_id_connect_provider(Url=issuer, ClientIDList=["sts.amazonaws.com"],
                                                      Tags=tag_list(acc.tags))


def delete_cluster(acc: Account, name: str) -> None:
    eks = acc.client("eks")
    try:
        eks.delete_cluster(name=name)
    except eks.exceptions.ResourceNotFoundException:
        return

    def gone() -> bool:
        try:
            eks.describe_cluster(name=name)
        except eks.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_until(gone, f"EKS cluster {name} to be deleted", timeout=1800, log=acc.log)


def kubeconfig(acc: Account) -> dict[str, Any]:
    """A kubeconfig whose user runs `qhubctl cluster eks-token` (no aws CLI needed)."""
    from qhubctl.providers.eks_token import exec_user

    cluster = acc.client("eks").describe_cluster(name=acc.cluster_name)["cluster"]
    name = f"{acc.cluster_name}.{acc.region}.eks"
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": cluster["endpoint"],
            "certificate-authority-data": cluster.get("certificateAuthority", {}).get("data", "")}}],
        "users": [{"name": name, "user": exec_user(acc.cluster_name, acc.region)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
