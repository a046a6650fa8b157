"""AWS end to end against moto in server mode on loopback: create -> plan empty -> change a max -> apply updates
only that group -> destroy -> the emulator lists nothing of ours; plus credentials, permission and quota errors.
EKS add-ons (the VPC CNI with its network policy agent, the EBS CSI driver) and their versions are answered by
eks_contract's fake in front of moto (moto has no add-ons): created at EKS's default version for the cluster's
Kubernetes version, moved by `cluster create` and `qhubctl upgrade` when that default rises (never back to an
older default: a note says why the add-on stays). moto runs no
Kubernetes, so the cluster add-on release is not installed here: the test records what `cluster create` and
`destroy` hand to qhubctl.addons and renders those values with the add-on chart (the release itself is installed
on the local cluster by tests/cluster/test_cluster_addons.py)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import addons
from qhubctl.cli import app
from qhubctl.config.model import QHubConfig
from qhubctl.providers import eks_token
from qhubctl.providers.base import AddonFacts

from eks_contract import FakeAddons, proxy
from emulators import Emulator, start_moto, stop

pytestmark = pytest.mark.cloud
REGION = "us-east-1"


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write_config(path: Path, worker_max: int = 5, tags: dict[str, str] | None = None,
                 api_cidrs: list[str] | None = None, kubernetes_version: str = "1.33") -> Path:
    cluster: dict[str, Any] = {"provider": "aws", "region": REGION, "kubernetes_version": kubernetes_version}
    if tags:
        cluster["tags"] = tags
    if api_cidrs:
        cluster["api_public_cidrs"] = api_cidrs
    path.write_text(yaml.safe_dump({
        "schema_version": 2, "project_name": "demo", "cluster": cluster,
        "node_groups": {
            "worker": {"max_nodes": worker_max, "spot": True},
            "gpu": {"instance_type": "g5.xlarge", "gpu": {"count": 1}},
        },
    }))
    return path


def inventory() -> dict[str, set[str]]:
    """Every resource the emulator lists, by kind (NAT gateways in state deleted count as gone, as on AWS)."""
    ec2, iam, eks = (boto3.client(s, region_name=REGION) for s in ("ec2", "iam", "eks"))
    elbv2, elb = boto3.client("elbv2", region_name=REGION), boto3.client("elb", region_name=REGION)
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    return {
        "vpc": {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]},
        "subnet": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "igw": {i["InternetGatewayId"] for i in ec2.describe_internet_gateways()["InternetGateways"]},
        "route-table": {r["RouteTableId"] for r in ec2.describe_route_tables()["RouteTables"]},
        "nat": {n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"},
        "eip": {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]},
        "security-group": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "volume": {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]},
        "lb": {lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]},
        "target-group": {t["TargetGroupArn"] for t in elbv2.describe_target_groups()["TargetGroups"]},
        "classic-lb": {lb["LoadBalancerName"] for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]},
        "asg": {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]},
        "eks": set(eks.list_clusters()["clusters"]),
        "role": {r["RoleName"] for r in iam.list_roles()["Roles"]},
        "oidc": {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]},
    }


def groups() -> dict[str, dict[str, Any]]:
    eks = boto3.client("eks", region_name=REGION)
    return {n: eks.describe_nodegroup(clusterName="demo", nodegroupName=n)["nodegroup"]
            for n in eks.list_nodegroups(clusterName="demo")["nodegroups"]}


def make_cluster_owned_resources(vpc_id: str) -> None:
    """What Kubernetes itself creates for a LoadBalancer Service and a PersistentVolumeClaim."""
    ec2, elbv2, elb = (boto3.client(s, region_name=REGION) for s in ("ec2", "elbv2", "elb"))
    owned = {"Key": "kubernetes.io/cluster/demo", "Value": "owned"}
    public = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
              if any(t["Key"] == "kubernetes.io/role/elb" for t in s.get("Tags", []))]
    sg = ec2.create_security_group(GroupName="k8s-elb-hub", Description="made by the cloud controller",
                                   VpcId=vpc_id, TagSpecifications=[{"ResourceType": "security-group",
                                                                     "Tags": [owned]}])["GroupId"]
    lb = elbv2.create_load_balancer(Name="k8s-qhub-proxy", Subnets=public, SecurityGroups=[sg], Type="network",
                                    Tags=[owned, {"Key": "elbv2.k8s.aws/cluster", "Value": "demo"}])
    arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    group = elbv2.create_target_group(Name="k8s-qhub-proxy-tg", Protocol="TCP", Port=80, VpcId=vpc_id)
    elbv2.create_listener(LoadBalancerArn=arn, Protocol="TCP", Port=80, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": group["TargetGroups"][0]["TargetGroupArn"]}])
    elb.create_load_balancer(LoadBalancerName="a1b2c3legacy", Subnets=public[:1], SecurityGroups=[sg],
                             Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 8022, "InstancePort": 30022}],
                             Tags=[owned])
    ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=10, VolumeType="gp3", TagSpecifications=[
        {"ResourceType": "volume", "Tags": [owned, {"Key": "kubernetes.io/created-for/pvc/name", "Value": "home"}]}])


@pytest.fixture
def addon_release(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What cluster create and destroy ask of the add-on release: ("ensure", (config, facts)) and ("remove", whether
    the EKS cluster still existed at that moment). moto's cluster has no API server to install into."""
    calls: list[tuple[str, Any]] = []

    def ensure(cfg: QHubConfig, facts: AddonFacts, helm: Any, say: Any, **_: Any) -> bool:
        calls.append(("ensure", (cfg, facts)))
        return True

    def remove(helm: Any) -> list[str] | None:  # the parts the release held
        calls.append(("remove", "demo" in boto3.client("eks", region_name=REGION).list_clusters()["clusters"]))
        return ["cluster-autoscaler", "storage-class", "traefik"]

    monkeypatch.setattr(addons, "ensure", ensure)
    monkeypatch.setattr(addons, "remove", remove)
    return calls


def render_addons(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """The add-on chart with these values, as `helm template` renders it for Kubernetes 1.33."""
    from qhubctl.chart import addons_chart_dir
    from qhubctl.proc import run as run_tool

    file = tmp_path / "addon-values.yaml"
    file.write_text(yaml.safe_dump(values))
    out = run_tool(["helm", "template", addons.RELEASE, str(addons_chart_dir()), "--namespace", addons.NAMESPACE,
                    "--kube-version", "1.33.0", "-f", str(file)], timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture
def eks_addons(aws_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAddons]:
    """EKS calls through the add-on fake (moto has no add-ons); everything else still reaches moto directly."""
    with proxy(aws_env.url) as (url, fake):
        monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", url)
        yield fake


def test_create_plan_update_destroy(eks_addons: FakeAddons, addon_release: list[tuple[str, Any]],
                                    tmp_path: Path) -> None:
    before = inventory()
    config = write_config(tmp_path / "qhub-config.yaml", api_cidrs=["203.0.113.0/24"])

    created = run("cluster", "create", "-c", str(config), "--yes")
    assert created.exit_code == 0, created.output
    assert "cluster demo matches the config" in created.output
    assert "NetworkPolicy enforcement: the VPC CNI's network policy agent" in created.output
    planned_lines = [line for line in created.output.splitlines() if line[:2] == "+ "]
    assert planned_lines.index("+ eks-addon vpc-cni (network policy agent on: enableNetworkPolicy=true)") < \
        planned_lines.index(next(line for line in planned_lines if line.startswith("+ nodegroup"))), \
        "the network policy agent is on before any node joins"
    addon = eks_addons.addons[("demo", "vpc-cni")]
    assert json.loads(addon["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert addon["status"] == "ACTIVE" and addon["tags"]["qhub.dev/project"] == "demo"
    # the EBS CSI driver: its IRSA role before the node groups, the add-on after them (its controller needs a node)
    ebs_line = "+ eks-addon aws-ebs-csi-driver (EBS volumes; IAM role demo-ebs-csi-driver)"
    general = next(i for i, line in enumerate(planned_lines) if line.startswith("+ nodegroup general"))
    assert planned_lines.index("+ iam-role demo-ebs-csi-driver") < general < planned_lines.index(ebs_line), \
        created.output
    assert [c for c, _ in eks_addons.calls if c not in ("DescribeAddon", "DescribeAddonVersions")] == \
        ["CreateAddon", "CreateAddon"]
    # both at EKS's default version for Kubernetes 1.33, asked for by version and shown in the plan
    cni_133, ebs_133, cni_134, ebs_134 = (eks_addons.default(name, k8s) for k8s in ("1.33", "1.34")
                                          for name in ("vpc-cni", "aws-ebs-csi-driver"))
    assert eks_addons.asked == [("CreateAddon", "vpc-cni", cni_133), ("CreateAddon", "aws-ebs-csi-driver", ebs_133)]
    assert f"    version: (none) -> {cni_133}" in created.output, created.output
    assert f"    version: (none) -> {ebs_133}" in created.output
    ebs = eks_addons.addons[("demo", "aws-ebs-csi-driver")]
    assert (addon["addonVersion"], ebs["addonVersion"]) == (cni_133, ebs_133)
    assert json.loads(ebs["configurationValues"]) == {"controller": {"k8sTagClusterId": "demo"},
                                                      "node": {"tolerateAllTaints": True}}
    assert ebs["status"] == "ACTIVE" and ebs["tags"]["qhub.dev/project"] == "demo"

    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 0, planned.output
    assert "no changes" in planned.output

    eks, ec2, iam = (boto3.client(s, region_name=REGION) for s in ("eks", "ec2", "iam"))
    cluster = eks.describe_cluster(name="demo")["cluster"]
    assert cluster["version"] == "1.33" and cluster["tags"]["qhub.dev/project"] == "demo"
    endpoint = cluster["resourcesVpcConfig"]
    assert endpoint["publicAccessCidrs"] == ["203.0.113.0/24"], "the API answers only the configured range"
    assert endpoint["endpointPrivateAccess"] is True
    subnets = ec2.describe_subnets(SubnetIds=cluster["resourcesVpcConfig"]["subnetIds"])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) >= 2, "subnets span two zones"
    found = groups()
    assert sorted(found) == ["general", "gpu", "user", "worker"]
    assert found["worker"]["capacityType"] == "SPOT" and found["general"]["capacityType"] == "ON_DEMAND"
    assert found["gpu"]["amiType"] == "AL2023_x86_64_NVIDIA" and found["user"]["amiType"] == "AL2023_x86_64_STANDARD"
    assert found["worker"]["scalingConfig"] == {"minSize": 0, "maxSize": 5, "desiredSize": 0}
    assert found["worker"]["labels"] == {"qhub.dev/node-group": "worker"}
    assert {(t["key"], t["value"], t["effect"]) for t in found["gpu"]["taints"]} == {
        ("qhub.dev/node-group", "gpu", "NO_SCHEDULE"), ("nvidia.com/gpu", "present", "NO_SCHEDULE")}
    assert found["general"].get("taints", []) == []
    tags = found["gpu"]["tags"]
    assert tags["k8s.io/cluster-autoscaler/enabled"] == "true" and tags["k8s.io/cluster-autoscaler/demo"] == "owned"
    assert tags["k8s.io/cluster-autoscaler/node-template/label/qhub.dev/node-group"] == "gpu"
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "1"
    oidc = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert len(oidc) == 1
    role = iam.get_role(RoleName="demo-cluster-autoscaler")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"]["Federated"] == oidc[0]["Arn"]
    assert trust["Statement"][0]["Condition"]["StringEquals"][f"{oidc[0]['Arn'].split('/', 1)[1]}:sub"] == \
        "system:serviceaccount:kube-system:cluster-autoscaler"
    ebs_role = iam.get_role(RoleName="demo-ebs-csi-driver")["Role"]
    ebs_trust = ebs_role["AssumeRolePolicyDocument"]
    ebs_trust = json.loads(ebs_trust) if isinstance(ebs_trust, str) else ebs_trust
    assert list(ebs_trust["Statement"][0]["Condition"]["StringEquals"].values())[0] == \
        "system:serviceaccount:kube-system:ebs-csi-controller-sa"
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="demo-ebs-csi-driver")[
        "AttachedPolicies"]] == ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
    assert ebs["serviceAccountRoleArn"] == ebs_role["Arn"]
    # the add-on release: installed right after the cluster, with the autoscaler's role; its values render
    assert [c for c, _ in addon_release] == ["ensure"]
    cfg, facts = addon_release[0][1]
    assert facts == AddonFacts("demo", REGION, {"cluster-autoscaler": role["Arn"]})
    docs = render_addons(addons.values(cfg, facts), tmp_path)
    objects = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert objects == {("ServiceAccount", "cluster-autoscaler"), ("ClusterRole", "qhub-cluster-addons-cluster-autoscaler"),
                       ("ClusterRoleBinding", "qhub-cluster-addons-cluster-autoscaler"),
                       ("Role", "qhub-cluster-addons-cluster-autoscaler"),
                       ("RoleBinding", "qhub-cluster-addons-cluster-autoscaler"),
                       ("Deployment", "qhub-cluster-addons-cluster-autoscaler"), ("StorageClass", "gp3"),
                       ("DaemonSet", "qhub-cluster-addons-nvidia-device-plugin"), ("IngressClass", "qhub"),
                       *{(kind, "qhub-cluster-addons-traefik") for kind in (
                           "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment")}}
    account = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == ("ServiceAccount", "cluster-autoscaler"))
    assert account["metadata"]["namespace"] == "kube-system"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role["Arn"]
    args = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == (
        "Deployment", "qhub-cluster-addons-cluster-autoscaler"))["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/demo" \
        in args, "the tags the node groups carry (asserted above)"
    assert (tmp_path / "demo.kubeconfig").stat().st_mode & 0o777 == 0o600, "credentials for the owner only"
    kubeconfig = yaml.safe_load((tmp_path / "demo.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster["endpoint"]
    assert kubeconfig["users"][0]["user"]["exec"]["args"][:2] == ["cluster", "eks-token"]

    # change one node group's max: the plan names only that, apply touches only that group
    before_groups = groups()
    write_config(config, worker_max=8, api_cidrs=["203.0.113.0/24"])
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2, planned.output
    changes = [line for line in planned.output.splitlines() if line[:1] in "+~-" or line.startswith("    ")]
    assert changes == ["~ nodegroup worker", "    max_nodes: 5 -> 8"], planned.output
    applied = run("cluster", "create", "-c", str(config), "--yes")
    assert applied.exit_code == 0, applied.output
    after_groups = groups()
    assert after_groups["worker"]["scalingConfig"]["maxSize"] == 8
    for name in ("general", "user", "gpu"):
        assert after_groups[name] == before_groups[name], f"{name} must not change"
    assert run("cluster", "plan", "-c", str(config)).exit_code == 0

    # widen the API's public ranges: the plan names the endpoint, apply changes it and nothing else
    cidrs = ["198.51.100.0/24", "203.0.113.0/24"]
    write_config(config, worker_max=8, api_cidrs=cidrs)
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2, planned.output
    assert "~ eks-endpoint demo" in planned.output
    assert "public_cidrs: 203.0.113.0/24 -> 198.51.100.0/24, 203.0.113.0/24" in planned.output
    assert run("cluster", "create", "-c", str(config), "--yes").exit_code == 0
    endpoint = eks.describe_cluster(name="demo")["cluster"]["resourcesVpcConfig"]
    assert sorted(endpoint["publicAccessCidrs"]) == ["198.51.100.0/24", "203.0.113.0/24"]
    assert groups() == after_groups, "node groups untouched"
    assert run("cluster", "plan", "-c", str(config)).exit_code == 0

    # the agent turned off by hand (other settings kept): the plan names it, apply turns it back on, keeps the rest
    addon["configurationValues"] = json.dumps({"enableNetworkPolicy": "false", "env": {"WARM_IP_TARGET": "2"}})
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2 and "~ eks-addon vpc-cni" in planned.output, planned.output
    assert "enableNetworkPolicy: false -> true" in planned.output
    assert run("cluster", "create", "-c", str(config), "--yes").exit_code == 0
    assert json.loads(eks_addons.addons[("demo", "vpc-cni")]["configurationValues"]) == {
        "enableNetworkPolicy": "true", "env": {"WARM_IP_TARGET": "2"}}
    assert groups() == after_groups and run("cluster", "plan", "-c", str(config)).exit_code == 0
    # the fake is not vacuous: what EKS would refuse is refused and recorded
    eks_client = boto3.client("eks", region_name=REGION)
    for bad in ({"configurationValues": json.dumps({"enableNetworkPolicy": True})},
                {"configurationValues": json.dumps({"enableNetworkPolicies": "true"})},
                {"resolveConflicts": "FORCE"}):
        with pytest.raises(botocore.exceptions.ClientError, match="contract violation"):
            eks_client.update_addon(clusterName="demo", addonName="vpc-cni", **bad)
    for bad in ({"configurationValues": json.dumps({"node": {"tolerateAllTaints": "true"}})},
                {"serviceAccountRoleArn": "demo-ebs-csi-driver"}):
        with pytest.raises(botocore.exceptions.ClientError, match="contract violation"):
            eks_client.update_addon(clusterName="demo", addonName="aws-ebs-csi-driver", **bad)
    with pytest.raises(botocore.exceptions.ClientError) as refused:  # EKS has no such version for Kubernetes 1.33
        eks_client.update_addon(clusterName="demo", addonName="vpc-cni", addonVersion="v1.99.0-eksbuild.1")
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException", refused.value
    with pytest.raises(urllib.error.HTTPError, match="400"):  # DescribeAddonVersions has no `addonNames`
        urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL_EKS']}/addons/supported-versions?addonNames=x")
    assert len(eks_addons.violations) == 6
    eks_addons.violations.clear()
    pages = eks_client.get_paginator("describe_addon_versions").paginate(kubernetesVersion="1.33")
    assert [a["addonName"] for page in pages for a in page["addons"]] == ["aws-ebs-csi-driver", "vpc-cni"]

    # the EBS CSI driver's configuration changed by hand: the plan names it, apply puts it back
    ebs["configurationValues"] = json.dumps({"controller": {"k8sTagClusterId": "demo"}})
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2 and "~ eks-addon aws-ebs-csi-driver" in planned.output, planned.output
    assert run("cluster", "create", "-c", str(config), "--yes").exit_code == 0
    assert json.loads(eks_addons.addons[("demo", "aws-ebs-csi-driver")]["configurationValues"])["node"] == {
        "tolerateAllTaints": True}
    assert run("cluster", "plan", "-c", str(config)).exit_code == 0

    # a newer Kubernetes version: the plan upgrades the cluster, then moves both add-ons to EKS's default for it
    # (planned only: moto has no UpdateClusterVersion)
    write_config(config, worker_max=8, api_cidrs=cidrs, kubernetes_version="1.34")
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2, planned.output
    assert [line for line in planned.output.splitlines() if line[:1] in "+~-" or line.startswith("    ")] == [
        "~ eks-cluster demo", "    version: 1.33 -> 1.34",
        "~ eks-addon vpc-cni", f"    version: {cni_133} -> {cni_134}",
        "~ eks-addon aws-ebs-csi-driver", f"    version: {ebs_133} -> {ebs_134}"], planned.output
    # upgrade keeps to the versions for the Kubernetes version the cluster runs, and says what moves them on
    asked = len(eks_addons.asked)
    upgraded = run("upgrade", "-c", str(config), "--yes")
    text = " ".join(upgraded.output.split())
    assert upgraded.exit_code == 0, upgraded.output
    assert "cluster demo runs Kubernetes 1.33, the config asks for 1.34" in text
    assert "`qhubctl cluster create` upgrades the cluster, then its add-ons" in text
    assert "managed add-ons (vpc-cni, aws-ebs-csi-driver): up to date" in text
    assert eks_addons.asked[asked:] == [] and addon_release[-1][0] == "ensure", "then the add-on release"

    # EKS makes the newer vpc-cni the default for 1.33: the plan names only that, `qhubctl upgrade` applies it
    write_config(config, worker_max=8, api_cidrs=cidrs)
    for version, compat in eks_addons.catalog["vpc-cni"]:
        compat["1.33"] = version == cni_134
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 2, planned.output
    assert [line for line in planned.output.splitlines() if line[:1] in "+~-" or line.startswith("    ")] == [
        "~ eks-addon vpc-cni", f"    version: {cni_133} -> {cni_134}"], planned.output
    upgraded = run("upgrade", "-c", str(config), "--yes")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"updated eks-addon vpc-cni: version: {cni_133} -> {cni_134}" in upgraded.output
    assert eks_addons.asked[asked:] == [("UpdateAddon", "vpc-cni", cni_134)]
    moved = eks_addons.addons[("demo", "vpc-cni")]
    assert moved["addonVersion"] == cni_134
    assert json.loads(moved["configurationValues"])["enableNetworkPolicy"] == "true", "the agent stays on"
    assert run("cluster", "plan", "-c", str(config)).exit_code == 0
    # EKS's default for 1.33 back at the older vpc-cni (a lagging default, or one moved by hand): never a downgrade,
    # the plan and upgrade say why it stays
    for version, compat in eks_addons.catalog["vpc-cni"]:
        compat["1.33"] = version == cni_133
    newer = f"note: vpc-cni {cni_134} is newer than EKS's default {cni_133} for Kubernetes 1.33: left as it is"
    planned = run("cluster", "plan", "-c", str(config))
    assert planned.exit_code == 0 and newer in " ".join(planned.output.split()), planned.output
    upgraded = run("upgrade", "-c", str(config), "--yes")
    assert upgraded.exit_code == 0 and newer in " ".join(upgraded.output.split()), upgraded.output
    assert eks_addons.asked[asked:] == [("UpdateAddon", "vpc-cni", cni_134)], "no request to move it back"
    # ... and the newer EBS CSI driver: `cluster create` applies it the same way
    for version, compat in eks_addons.catalog["aws-ebs-csi-driver"]:
        compat["1.33"] = version == ebs_134
    applied = run("cluster", "create", "-c", str(config), "--yes")
    assert applied.exit_code == 0 and f"    version: {ebs_133} -> {ebs_134}" in applied.output, applied.output
    assert eks_addons.addons[("demo", "aws-ebs-csi-driver")]["addonVersion"] == ebs_134
    assert groups() == after_groups and run("cluster", "plan", "-c", str(config)).exit_code == 0

    # resources Kubernetes made (load balancers, their security group, a PVC's volume) are removed by destroy
    make_cluster_owned_resources(subnets[0]["VpcId"])
    addon_release.clear()
    destroyed = run("cluster", "destroy", "-c", str(config), "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert addon_release == [("remove", True)], "the add-on release goes first, while the cluster still exists"
    assert "removed add-on release kube-system/qhub-cluster-addons (cluster-autoscaler, storage-class, traefik)" in \
        " ".join(destroyed.output.split()), "destroy names the release among what it removed"
    for kind in ("load-balancer k8s-qhub-proxy", "classic-load-balancer a1b2c3legacy", "ebs-volume", "k8s-elb-hub"):
        assert kind in destroyed.output
    assert inventory() == before, "every resource created for the cluster is gone"
    assert eks_addons.addons == {} and eks_addons.violations == []

    again = run("cluster", "destroy", "-c", str(config), "--yes")
    assert again.exit_code == 0 and "nothing to destroy" in again.output


def test_quota_error_is_clear(eks_addons: FakeAddons, tmp_path: Path) -> None:
    """EC2 allows 50 tags per resource: 49 extra tags + QHub's own go over it; the emulator enforces it."""
    config = write_config(tmp_path / "c.yaml", tags={f"team-{i}": "x" for i in range(49)})
    result = run("cluster", "create", "-c", str(config), "--yes")
    assert result.exit_code == 1, result.output
    assert "AWS quota reached in CreateVpc (TagLimitExceeded)" in result.output
    assert "request a quota increase" in result.output


def test_eks_token_is_a_signed_sts_request(aws_env: Emulator) -> None:
    value = eks_token.token("demo", REGION)
    assert value.startswith("k8s-aws-v1.") and "=" not in value
    url = eks_token.decode(value)
    assert url.startswith(aws_env.url) and "Action=GetCallerIdentity" in url
    assert "x-k8s-aws-id" in url.split("X-Amz-SignedHeaders=")[1].split("&")[0]
    printed = run("cluster", "eks-token", "--cluster-name", "demo", "--region", REGION)
    credential = json.loads(printed.output)
    assert credential["kind"] == "ExecCredential" and credential["status"]["token"].startswith("k8s-aws-v1.")


@pytest.fixture(scope="module")
def moto_auth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second emulator that enforces IAM: after 3 setup calls every request needs a known key and a policy."""
    emulator = start_moto(tmp_path_factory.mktemp("moto-auth"), INITIAL_NO_AUTH_ACTION_COUNT="3")
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name=REGION, aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="limited")
    iam.put_user_policy(UserName="limited", PolicyName="no-vpc-read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:DescribeVpcs", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="limited")["AccessKey"]
    yield emulator, key
    stop(emulator)


def test_bad_credentials_and_missing_permission(moto_auth: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    emulator, key = moto_auth
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.url)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = write_config(tmp_path / "c.yaml")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    bad = run("cluster", "plan", "-c", str(config))
    assert bad.exit_code == 1, bad.output
    assert "AWS rejected the credentials (InvalidClientTokenId)" in bad.output
    assert "AWS_PROFILE" in bad.output

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    # (moto's IAM enforcement mis-signs EKS's REST calls, so the denied action is one of the EC2 look-ups)
    denied = run("cluster", "create", "-c", str(config), "--yes")
    assert denied.exit_code == 1, denied.output
    assert "account 123456789012 as arn:aws:iam::123456789012:user/limited" in denied.output
    assert "missing AWS permission for DescribeVpcs" in denied.output
    assert "grant the identity `ec2:DescribeVpcs`" in denied.output
