"""Amazon EKS through boto3: VPC, IAM roles, EKS cluster, OIDC provider, managed node groups.

Credentials and endpoints are boto3's own: AWS_PROFILE / AWS_ACCESS_KEY_ID..., instance and container roles, SSO,
AWS_ENDPOINT_URL(_<SERVICE>). Everything qhubctl creates carries the tag `qhub.dev/project=<project_name>`, and IAM
roles live under the path `/qhub/<project_name>/`, so plan and destroy find them without a state file.

NetworkPolicies are enforced by the VPC CNI's network policy agent: the vpc-cni managed add-on with
enableNetworkPolicy (providers.eks_netpol), created right after the cluster and before any node group.

Layout (when `cluster.subnet_ids` is empty): one VPC, per zone a public subnet (load balancers, the NAT gateway) and
a private subnet (nodes), one NAT gateway, public and private route tables. Node groups are EKS managed node groups
in the private subnets; each carries cluster-autoscaler's auto-discovery and scale-from-zero tags, and the IRSA role
`<project>-cluster-autoscaler` plus `extras()["cluster-autoscaler"]` chart values let the autoscaler scale them.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import botocore.exceptions

from qhubctl import nodegroups as ng
from qhubctl.config.aws import DEFAULT_API_PUBLIC_CIDRS
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError, UserError
from qhubctl.providers import eks_netpol
from qhubctl.providers.base import (
    TAG_PROJECT,
    Action,
    GroupSpec,
    Log,
    Plan,
    Provider,
    desired_groups,
    diff_groups,
    owner_tags,
    wait_until,
)

F = TypeVar("F", bound=Callable[..., Any])

EFFECT_TO_EKS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
EFFECT_FROM_EKS = {v: k for k, v in EFFECT_TO_EKS.items()}
CA_PREFIX = "k8s.io/cluster-autoscaler"
TAG_SUBNET = "qhub.dev/subnet"
TAG_ROUTES = "qhub.dev/route-table"
TAG_GPU = "qhub.dev/gpu-count"
AUTOSCALER_SA = ("kube-system", "cluster-autoscaler")
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")

_CREDENTIAL_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                     "ExpiredToken", "ExpiredTokenException", "AuthFailure", "InvalidAccessKeyId",
                     "IncompleteSignature", "MissingAuthenticationToken"}
_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException",
                     "NotAuthorized"}


def explain(exc: Exception) -> QHubError:
    """A botocore failure as a message a user can act on."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return UserError("no AWS credentials found",
                         hint="set AWS_PROFILE (see `aws configure`), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                              "or run where an instance/container role is available")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = str(error.get("Message", "")).strip()
        op = exc.operation_name
        if code in _CREDENTIAL_CODES:
            return UserError(f"AWS rejected the credentials ({code}): {text}",
                             hint="check AWS_PROFILE or the access key pair; refresh expired SSO/STS sessions")
        if code in _PERMISSION_CODES:
            return UserError(f"missing AWS permission for {op}: {text}",
                             hint=f"grant the identity `{_iam_action(exc)}` (see docs/providers.md for the policy)")
        if "LimitExceeded" in code or "QuotaExceeded" in code or code == "ResourceLimitExceededException":
            return UserError(f"AWS quota reached in {op} ({code}): {text}",
                             hint="delete unused resources or request a quota increase in Service Quotas")
        return QHubError(f"AWS {op} failed ({code}): {text}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return QHubError(f"cannot reach AWS: {exc}", hint="check the network, the region and AWS_ENDPOINT_URL")
    return QHubError(f"AWS call failed: {exc}")


def _iam_action(exc: botocore.exceptions.ClientError) -> str:
    """The IAM action a denial names ("... not authorized to perform: eks:CreateCluster ..."), else the call."""
    found = re.search(r"perform:? ([a-z0-9-]+:[A-Za-z0-9]+)", str(exc.response.get("Error", {}).get("Message", "")))
    return found.group(1) if found else exc.operation_name


def aws_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise explain(exc) from None

    return wrapper  # type: ignore[return-value]


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _tag_dict(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


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


def public_cidrs(cluster: dict[str, Any]) -> list[str]:
    """The public API endpoint's allowed ranges as EKS reports them (absent means EKS's default, any address)."""
    vpc = cluster.get("resourcesVpcConfig") or {}
    return sorted(vpc.get("publicAccessCidrs") or DEFAULT_API_PUBLIC_CIDRS)


def subnet_layout(vpc_cidr: str, zones: list[str]) -> dict[str, tuple[str, str]]:
    """Subnet key ('public-<zone>'/'private-<zone>') -> (zone, CIDR): /20s of a /16, public first, private from
    the second half, so adding a zone never moves an existing subnet."""
    net = ipaddress.ip_network(vpc_cidr)
    blocks = list(net.subnets(new_prefix=min(net.prefixlen + 4, 28)))
    half = len(blocks) // 2
    if len(zones) > half:
        raise UserError(f"vpc_cidr {vpc_cidr} is too small for {len(zones)} zones")
    layout: dict[str, tuple[str, str]] = {}
    for i, zone in enumerate(zones):
        layout[f"public-{zone}"] = (zone, str(blocks[i]))
        layout[f"private-{zone}"] = (zone, str(blocks[half + i]))
    return layout


@dataclass
class Observed:
    """What exists in the account for this project."""

    vpc: dict[str, Any] | None = None
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    igw: dict[str, Any] | None = None
    nat: dict[str, Any] | None = None
    route_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    role_policies: dict[str, list[str]] = field(default_factory=dict)
    role_inline: dict[str, list[str]] = field(default_factory=dict)
    cluster: dict[str, Any] | None = None
    addon: dict[str, Any] | None = None  # the vpc-cni add-on (eks_netpol)
    oidc_arn: str | None = None
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    group_tags: dict[str, dict[str, str]] = field(default_factory=dict)


class AWS(Provider):
    name = "aws"

    def __init__(self, cfg: QHubConfig, log: Log = print) -> None:
        super().__init__(cfg, log)
        self.region = cfg.cluster.region
        self.session = boto3.session.Session(region_name=self.region)
        self._clients: dict[str, Any] = {}
        self.path = f"/qhub/{cfg.project_name}/"
        self.tags = owner_tags(cfg)

    # -- plumbing ---------------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    def role_name(self, short: str) -> str:
        return f"{self.cluster_name}-{short}"[:64]

    def _tag_filter(self) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{TAG_PROJECT}", "Values": [self.cfg.project_name]}]

    def _spec(self, *, kind: str, name: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
        tags = {**self.tags, "Name": f"{self.cluster_name}-{name}", **(extra or {})}
        return [{"ResourceType": kind, "Tags": _tag_list(tags)}]

    def zones(self) -> list[str]:
        if self.cfg.cluster.availability_zones:
            return list(self.cfg.cluster.availability_zones)
        found = self.client("ec2").describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}, {"Name": "zone-type", "Values": ["availability-zone"]}]
        )["AvailabilityZones"]
        names = sorted(z["ZoneName"] for z in found)
        if len(names) < 2:
            raise UserError(f"region {self.region} offers fewer than two availability zones: {names}")
        return names[:2]

    @property
    def own_network(self) -> bool:
        return not self.cfg.cluster.subnet_ids

    # -- observe ------------------------------------------------------------------------------------------------

    def observe(self) -> Observed:
        ec2, eks, iam = self.client("ec2"), self.client("eks"), self.client("iam")
        seen = Observed()
        vpcs = ec2.describe_vpcs(Filters=self._tag_filter())["Vpcs"]
        seen.vpc = vpcs[0] if vpcs else None
        if seen.vpc:
            vpc_filter = [{"Name": "vpc-id", "Values": [seen.vpc["VpcId"]]}]
            for subnet in ec2.describe_subnets(Filters=vpc_filter + self._tag_filter())["Subnets"]:
                key = _tag_dict(subnet.get("Tags")).get(TAG_SUBNET)
                if key:
                    seen.subnets[key] = subnet
            igws = ec2.describe_internet_gateways(Filters=self._tag_filter())["InternetGateways"]
            seen.igw = igws[0] if igws else None
            nats = ec2.describe_nat_gateways(Filter=vpc_filter)["NatGateways"]
            live = [n for n in nats if n["State"] in ("pending", "available")]
            seen.nat = live[0] if live else None
            for table in ec2.describe_route_tables(Filters=vpc_filter + self._tag_filter())["RouteTables"]:
                key = _tag_dict(table.get("Tags")).get(TAG_ROUTES)
                if key:
                    seen.route_tables[key] = table
        for page in iam.get_paginator("list_roles").paginate(PathPrefix=self.path):
            for role in page["Roles"]:
                name = role["RoleName"]
                seen.roles[name] = role
                seen.role_policies[name] = [p["PolicyArn"] for p in
                                            iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
                seen.role_inline[name] = list(iam.list_role_policies(RoleName=name)["PolicyNames"])
        try:
            cluster = eks.describe_cluster(name=self.cluster_name)["cluster"]
        except eks.exceptions.ResourceNotFoundException:
            cluster = None
        if cluster and cluster.get("tags", {}).get(TAG_PROJECT) != self.cfg.project_name:
            raise UserError(f"an EKS cluster named {self.cluster_name} exists in {self.region} but qhubctl did not "
                            "create it", hint="choose another project_name, or use provider existing for it")
        seen.cluster = cluster if cluster and cluster["status"] != "DELETING" else None
        if seen.cluster:
            seen.oidc_arn = self._find_oidc()
            seen.addon = eks_netpol.describe(eks, self.cluster_name)
            for page in eks.get_paginator("list_nodegroups").paginate(clusterName=self.cluster_name):
                for name in page["nodegroups"]:
                    group = eks.describe_nodegroup(clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
                    if group.get("tags", {}).get(TAG_PROJECT) != self.cfg.project_name or group["status"] == "DELETING":
                        continue
                    seen.groups[name] = self._group_spec(group)
                    seen.group_tags[name] = dict(group.get("tags", {}))
        return seen

    def _find_oidc(self) -> str | None:
        iam = self.client("iam")
        for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            arn = entry["Arn"]
            tags = _tag_dict(iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn).get("Tags"))
            if tags.get(TAG_PROJECT) == self.cfg.project_name:
                return arn
        return None

    @staticmethod
    def _group_spec(group: dict[str, Any]) -> GroupSpec:
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

    # -- plan ---------------------------------------------------------------------------------------------------

    @aws_errors
    def check_credentials(self) -> str:
        who = self.client("sts").get_caller_identity()
        return f"account {who['Account']} as {who['Arn']} in {self.region}"

    @aws_errors
    def plan(self) -> Plan:
        seen = self.observe()
        return Plan(self.name, self.cluster_name, self.plan_actions(seen))

    def plan_actions(self, seen: Observed) -> list[Action]:
        actions: list[Action] = []
        if self.own_network:
            zones = self.zones()
            if not seen.vpc:
                actions.append(Action("create", "vpc", self.cluster_name, detail=self.cfg.cluster.vpc_cidr))
            if not seen.igw:
                actions.append(Action("create", "internet-gateway", self.cluster_name))
            for key, (zone, cidr) in subnet_layout(self.cfg.cluster.vpc_cidr, zones).items():
                if key not in seen.subnets:
                    actions.append(Action("create", "subnet", key, detail=cidr))
            if not seen.nat:
                actions.append(Action("create", "nat-gateway", self.cluster_name))
            for key in ("public", "private"):
                if key not in seen.route_tables:
                    actions.append(Action("create", "route-table", key))
        for short in ("cluster", "node"):
            actions += self._role_actions(seen, short)
        version = self.cfg.cluster.kubernetes_version
        if not seen.cluster:
            actions.append(Action("create", "eks-cluster", self.cluster_name, detail=f"Kubernetes {version}"))
        else:
            have = seen.cluster["version"]
            if _minor(have) > _minor(version):
                raise UserError(f"cluster {self.cluster_name} runs Kubernetes {have}; "
                                f"EKS cannot downgrade to {version}",
                                hint=f"set cluster.kubernetes_version to {have} or newer")
            if have != version:
                actions.append(Action("update", "eks-cluster", self.cluster_name, {"version": (have, version)}))
            have_cidrs = public_cidrs(seen.cluster)
            want_cidrs = sorted(self.cfg.cluster.api_public_cidrs)
            if have_cidrs != want_cidrs:
                actions.append(Action("update", "eks-endpoint", self.cluster_name,
                                      {"public_cidrs": (", ".join(have_cidrs), ", ".join(want_cidrs))}))
        if not seen.oidc_arn:
            actions.append(Action("create", "oidc-provider", self.cluster_name))
        actions += eks_netpol.plan_actions(seen.addon)
        actions += self._role_actions(seen, "cluster-autoscaler")
        desired = desired_groups(self.cfg)
        group_actions = diff_groups(desired, seen.groups, compare=(
            "min_nodes", "max_nodes", "labels", "taints", "instance_type", "spot", "disk_size_gb", "gpu_count"))
        changed = {a.name for a in group_actions}
        for spec in desired:  # scale-from-zero tags drifted (edited by hand) while the group itself matches
            if spec.name in seen.groups and spec.name not in changed:
                want = self._group_tags(spec)
                have_tags = {k: v for k, v in seen.group_tags[spec.name].items() if k.startswith(CA_PREFIX)}
                want_ca = {k: v for k, v in want.items() if k.startswith(CA_PREFIX)}
                if have_tags != want_ca:
                    group_actions.append(Action("update", "nodegroup", spec.name, {"autoscaler tags": (
                        len(have_tags), len(want_ca))}))
        return actions + group_actions

    def _role_actions(self, seen: Observed, short: str) -> list[Action]:
        name = self.role_name(short)
        if name not in seen.roles:
            return [Action("create", "iam-role", name)]
        want = {self._managed_policy(p) for p in self._role_policies(short)}
        have = set(seen.role_policies.get(name, ()))
        inline_ok = short != "cluster-autoscaler" or "cluster-autoscaler" in seen.role_inline.get(name, ())
        if want - have or not inline_ok:
            missing = sorted(p.rsplit("/", 1)[1] for p in want - have) + ([] if inline_ok else ["(inline)"])
            return [Action("update", "iam-role", name, {"policies": ("incomplete", ", ".join(missing))})]
        return []

    @staticmethod
    def _role_policies(short: str) -> tuple[str, ...]:
        return {"cluster": CLUSTER_POLICIES, "node": NODE_POLICIES}.get(short, ())

    def _group_tags(self, spec: GroupSpec) -> dict[str, str]:
        return {**self.tags, **autoscaler_tags(self.cluster_name, spec), TAG_GPU: str(spec.gpu_count)}

    # -- apply --------------------------------------------------------------------------------------------------

    @aws_errors
    def apply(self, plan: Plan) -> None:
        specs = {s.name: s for s in desired_groups(self.cfg)}
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "nodegroup":
                self._apply_group(action, specs.get(action.name))
            elif action.kind == eks_netpol.KIND:
                eks_netpol.apply(self.client("eks"), self.cluster_name, action, self.tags, self.log)
            else:
                getattr(self, f"_{action.op}_{action.kind.replace('-', '_')}")(action)

    def _vpc_id(self) -> str:
        vpcs = self.client("ec2").describe_vpcs(Filters=self._tag_filter())["Vpcs"]
        if not vpcs:
            raise QHubError(f"the VPC of {self.cluster_name} is missing", hint="run `qhubctl cluster create` again")
        return vpcs[0]["VpcId"]

    def _subnets(self) -> dict[str, str]:
        if not self.own_network:
            ids = list(self.cfg.cluster.subnet_ids)
            return {f"given-{i}": sid for i, sid in enumerate(ids)}
        found = self.client("ec2").describe_subnets(Filters=self._tag_filter())["Subnets"]
        return {_tag_dict(s.get("Tags"))[TAG_SUBNET]: s["SubnetId"] for s in found
                if TAG_SUBNET in _tag_dict(s.get("Tags"))}

    def _node_subnets(self) -> list[str]:
        subnets = self._subnets()
        return [sid for key, sid in sorted(subnets.items()) if not key.startswith("public-")]

    def _create_vpc(self, action: Action) -> None:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=self.cfg.cluster.vpc_cidr,
                             TagSpecifications=self._spec(kind="vpc", name="vpc"))["Vpc"]
        ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})

    def _create_internet_gateway(self, action: Action) -> None:
        ec2 = self.client("ec2")
        igw = ec2.create_internet_gateway(TagSpecifications=self._spec(kind="internet-gateway", name="igw"))
        ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGateway"]["InternetGatewayId"],
                                    VpcId=self._vpc_id())

    def _create_subnet(self, action: Action) -> None:
        ec2 = self.client("ec2")
        zone, cidr = subnet_layout(self.cfg.cluster.vpc_cidr, self.zones())[action.name]
        public = action.name.startswith("public-")
        role = {"kubernetes.io/role/elb": "1"} if public else {"kubernetes.io/role/internal-elb": "1"}
        extra = {TAG_SUBNET: action.name, f"kubernetes.io/cluster/{self.cluster_name}": "shared", **role}
        subnet = ec2.create_subnet(VpcId=self._vpc_id(), CidrBlock=cidr, AvailabilityZone=zone,
                                   TagSpecifications=self._spec(kind="subnet", name=action.name, extra=extra))
        if public:
            ec2.modify_subnet_attribute(SubnetId=subnet["Subnet"]["SubnetId"], MapPublicIpOnLaunch={"Value": True})

    def _create_nat_gateway(self, action: Action) -> None:
        ec2 = self.client("ec2")
        public = sorted((k, v) for k, v in self._subnets().items() if k.startswith("public-"))
        eips = ec2.describe_addresses(Filters=self._tag_filter())["Addresses"]
        free = [a for a in eips if not a.get("AssociationId")]
        allocation = free[0]["AllocationId"] if free else ec2.allocate_address(
            Domain="vpc", TagSpecifications=self._spec(kind="elastic-ip", name="nat"))["AllocationId"]
        nat = ec2.create_nat_gateway(SubnetId=public[0][1], AllocationId=allocation,
                                     TagSpecifications=self._spec(kind="natgateway", name="nat"))["NatGateway"]
        nat_id = nat["NatGatewayId"]

        def ready() -> bool:
            state = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]
            if state == "failed":
                raise QHubError(f"NAT gateway {nat_id} failed to start")
            return state == "available"

        wait_until(ready, f"NAT gateway {nat_id}", timeout=600, log=self.log)

    def _create_route_table(self, action: Action) -> None:
        ec2 = self.client("ec2")
        vpc_id = self._vpc_id()
        table = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=self._spec(
            kind="route-table", name=f"{action.name}-routes", extra={TAG_ROUTES: action.name}))["RouteTable"]
        table_id = table["RouteTableId"]
        if action.name == "public":
            igw = ec2.describe_internet_gateways(Filters=self._tag_filter())["InternetGateways"][0]
            ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0",
                             GatewayId=igw["InternetGatewayId"])
        else:
            nats = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                     {"Name": "state", "Values": ["available"]}])["NatGateways"]
            ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0",
                             NatGatewayId=nats[0]["NatGatewayId"])
        for key, subnet_id in self._subnets().items():
            if key.startswith(f"{action.name}-"):
                ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)

    def _managed_policy(self, name: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{name}"

    def _create_iam_role(self, action: Action) -> None:
        iam = self.client("iam")
        short = action.name[len(self.cluster_name) + 1:]
        if short == "cluster-autoscaler":
            trust = self._irsa_trust(*AUTOSCALER_SA)
        else:
            service = "eks.amazonaws.com" if short == "cluster" else "ec2.amazonaws.com"
            trust = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        try:
            iam.create_role(RoleName=action.name, Path=self.path, AssumeRolePolicyDocument=json.dumps(trust),
                            Description=f"QHub {self.cluster_name}: {short}", Tags=_tag_list(self.tags))
        except iam.exceptions.EntityAlreadyExistsException:
            if action.op == "create":
                raise UserError(f"IAM role {action.name} exists outside {self.path}; qhubctl did not create it",
                                hint="delete or rename that role, or choose another project_name") from None
        for policy in self._role_policies(short):  # attaching is idempotent: also repairs a half-made role
            iam.attach_role_policy(RoleName=action.name, PolicyArn=self._managed_policy(policy))
        if short == "cluster-autoscaler":
            iam.put_role_policy(RoleName=action.name, PolicyName="cluster-autoscaler",
                                PolicyDocument=json.dumps(self._autoscaler_policy()))

    _update_iam_role = _create_iam_role

    def _irsa_trust(self, namespace: str, account: str) -> dict[str, Any]:
        oidc_arn = self._find_oidc()
        if not oidc_arn:
            raise QHubError("the cluster's OIDC provider is missing", hint="run `qhubctl cluster create` again")
        issuer = oidc_arn.split(":oidc-provider/", 1)[1]
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": oidc_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
                                           f"{issuer}:aud": "sts.amazonaws.com"}}}]}

    def _autoscaler_policy(self) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Resource": "*", "Action": [
                "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
                "eks:DescribeNodegroup"]},
            {"Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{CA_PREFIX}/{self.cluster_name}": "owned"}}}]}

    def _role_arn(self, short: str) -> str:
        return self.client("iam").get_role(RoleName=self.role_name(short))["Role"]["Arn"]

    def _check_version_offered(self) -> None:
        version = self.cfg.cluster.kubernetes_version
        eks = self.client("eks")
        try:
            offered = [v["clusterVersion"] for v in eks.describe_cluster_versions()["clusterVersions"]]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return  # partitions or emulators without the API: create_cluster itself rejects a bad version
        if offered and version not in offered:
            raise UserError(f"EKS in {self.region} does not offer Kubernetes {version}",
                            hint=f"set cluster.kubernetes_version to one of {', '.join(sorted(offered))}")

    def _create_eks_cluster(self, action: Action) -> None:
        eks = self.client("eks")
        self._check_version_offered()
        subnets = list(self._subnets().values())
        deadline = time.monotonic() + 120
        while True:  # a fresh IAM role takes a few seconds before EKS may assume it
            try:
                eks.create_cluster(
                    name=self.cluster_name, version=self.cfg.cluster.kubernetes_version,
                    roleArn=self._role_arn("cluster"),
                    resourcesVpcConfig={"subnetIds": subnets, **self._endpoint_access()},
                    accessConfig={"authenticationMode": "API_AND_CONFIG_MAP",
                                  "bootstrapClusterCreatorAdminPermissions": True},
                    tags=dict(self.tags))
                break
            except eks.exceptions.InvalidParameterException as exc:
                if "role" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(5)
        self._wait_cluster_active()

    def _wait_cluster_active(self) -> None:
        eks = self.client("eks")

        def active() -> bool:
            status = eks.describe_cluster(name=self.cluster_name)["cluster"]["status"]
            if status == "FAILED":
                raise QHubError(f"EKS cluster {self.cluster_name} failed to create")
            return status == "ACTIVE"

        wait_until(active, f"EKS cluster {self.cluster_name}", timeout=1800, log=self.log)

    def _endpoint_access(self) -> dict[str, Any]:
        """The API endpoint: private inside the VPC (nodes), public only from cluster.api_public_cidrs."""
        return {"endpointPublicAccess": True, "endpointPrivateAccess": True,
                "publicAccessCidrs": list(self.cfg.cluster.api_public_cidrs)}

    def _update_eks_endpoint(self, action: Action) -> None:
        self.client("eks").update_cluster_config(name=self.cluster_name, resourcesVpcConfig=self._endpoint_access())
        self._wait_cluster_active()

    def _update_eks_cluster(self, action: Action) -> None:
        eks = self.client("eks")
        have, want = action.changes["version"]
        current = have
        while _minor(current) < _minor(want):  # EKS upgrades one minor at a time, in place
            current = f"1.{_minor(current) + 1}"
            eks.update_cluster_version(name=self.cluster_name, version=current)
            self._wait_cluster_active()

    def _create_oidc_provider(self, action: Action) -> None:
        issuer = self.client("eks").describe_cluster(name=self.cluster_name)["cluster"]["identity"]["oidc"]["issuer"]
        self.client("iam").create_open_id_connect_provider(Url=issuer, ClientIDList=["sts.amazonaws.com"],
                                                           Tags=_tag_list(self.tags))

    # node groups

    def _apply_group(self, action: Action, spec: GroupSpec | None) -> None:
        if action.op in ("delete", "replace"):
            self._delete_group(action.name)
        if action.op in ("create", "replace"):
            assert spec is not None
            self._create_group(spec)
        if action.op == "update":
            assert spec is not None
            self._update_group(spec)

    def _create_group(self, spec: GroupSpec) -> None:
        eks = self.client("eks")
        eks.create_nodegroup(
            clusterName=self.cluster_name, nodegroupName=spec.name,
            scalingConfig={"minSize": spec.min_nodes, "maxSize": spec.max_nodes, "desiredSize": spec.min_nodes},
            subnets=self._node_subnets(), instanceTypes=[spec.instance_type or "m6i.xlarge"],
            amiType=ami_type(spec), capacityType="SPOT" if spec.spot else "ON_DEMAND", diskSize=spec.disk_size_gb,
            nodeRole=self._role_arn("node"), labels=dict(spec.labels),
            taints=[{"key": t.key, "value": t.value, "effect": EFFECT_TO_EKS[t.effect]} for t in sorted(
                spec.taints, key=str)],
            tags=self._group_tags(spec))
        self._wait_group(spec.name)
        self._tag_asgs(spec)

    def _update_group(self, spec: GroupSpec) -> None:
        eks = self.client("eks")
        group = eks.describe_nodegroup(clusterName=self.cluster_name, nodegroupName=spec.name)["nodegroup"]
        have = self._group_spec(group)
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
            eks.update_nodegroup_config(clusterName=self.cluster_name, nodegroupName=spec.name, **update)
            self._wait_group(spec.name)
        want = self._group_tags(spec)
        stale = [k for k in group.get("tags", {}) if k.startswith(CA_PREFIX) and k not in want]
        if stale:
            eks.untag_resource(resourceArn=group["nodegroupArn"], tagKeys=stale)
        if {k: group.get("tags", {}).get(k) for k in want} != want:
            eks.tag_resource(resourceArn=group["nodegroupArn"], tags=want)
        self._tag_asgs(spec)

    def _tag_asgs(self, spec: GroupSpec) -> None:
        """EKS does not copy node group tags to the Auto Scaling group; cluster-autoscaler reads them there."""
        group = self.client("eks").describe_nodegroup(clusterName=self.cluster_name,
                                                      nodegroupName=spec.name)["nodegroup"]
        names = [a["name"] for a in group.get("resources", {}).get("autoScalingGroups", [])]
        autoscaling = self.client("autoscaling")
        existing = {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=names)["AutoScalingGroups"]} if names else set()
        tags = autoscaler_tags(self.cluster_name, spec)
        for name in names:
            if name not in existing:  # not created yet by EKS (or an emulator without Auto Scaling groups)
                continue
            autoscaling.create_or_update_tags(Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                 "PropagateAtLaunch": False} for k, v in sorted(tags.items())])

    def _wait_group(self, name: str) -> None:
        eks = self.client("eks")

        def active() -> bool:
            group = eks.describe_nodegroup(clusterName=self.cluster_name, nodegroupName=name)["nodegroup"]
            if group["status"] in ("CREATE_FAILED", "DEGRADED"):
                issues = "; ".join(i.get("message", "") for i in group.get("health", {}).get("issues", []))
                raise QHubError(f"node group {name} is {group['status']}: {issues}")
            return group["status"] == "ACTIVE"

        wait_until(active, f"node group {name}", timeout=1800, log=self.log)

    def _delete_group(self, name: str) -> None:
        eks = self.client("eks")
        try:
            eks.delete_nodegroup(clusterName=self.cluster_name, nodegroupName=name)
        except eks.exceptions.ResourceNotFoundException:
            return

        def gone() -> bool:
            try:
                eks.describe_nodegroup(clusterName=self.cluster_name, nodegroupName=name)
            except eks.exceptions.ResourceNotFoundException:
                return True
            return False

        wait_until(gone, f"node group {name} to be deleted", timeout=1800, log=self.log)

    # -- destroy ------------------------------------------------------------------------------------------------

    @aws_errors
    def destroy_plan(self) -> Plan:
        ec2 = self.client("ec2")
        actions: list[Action] = []
        seen = self.observe()
        vpc_id = seen.vpc["VpcId"] if seen.vpc else None
        for arn, name, kind in self._cluster_load_balancers(vpc_id):
            actions.append(Action("delete", kind, name, detail=f"created by the cluster: {arn}"))
        for name in seen.groups:
            actions.append(Action("delete", "nodegroup", name))
        for volume in self._cluster_volumes():
            actions.append(Action("delete", "ebs-volume", volume["VolumeId"],
                                  detail=f"{volume['Size']} GiB, created by the cluster"))
        for group in self._cluster_security_groups(vpc_id):
            actions.append(Action("delete", "security-group", group["GroupId"], detail=group["GroupName"]))
        if seen.cluster:
            actions.append(Action("delete", "eks-cluster", self.cluster_name))
        oidc = self._find_oidc()
        if oidc:
            actions.append(Action("delete", "oidc-provider", oidc))
        for role in sorted(seen.roles):
            actions.append(Action("delete", "iam-role", role))
        if vpc_id:
            nats = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
            for nat in nats:
                if nat["State"] not in ("deleted", "deleting"):
                    actions.append(Action("delete", "nat-gateway", nat["NatGatewayId"]))
        for address in ec2.describe_addresses(Filters=self._tag_filter())["Addresses"]:
            actions.append(Action("delete", "elastic-ip", address["AllocationId"]))
        if vpc_id:
            for key, table in sorted(seen.route_tables.items()):
                actions.append(Action("delete", "route-table", table["RouteTableId"], detail=key))
            for igw in ec2.describe_internet_gateways(Filters=self._tag_filter())["InternetGateways"]:
                actions.append(Action("delete", "internet-gateway", igw["InternetGatewayId"]))
            for key, subnet in sorted(seen.subnets.items()):
                actions.append(Action("delete", "subnet", subnet["SubnetId"], detail=key))
            actions.append(Action("delete", "vpc", vpc_id, detail=seen.vpc.get("CidrBlock", "")))
        return Plan(self.name, self.cluster_name, actions)

    def _cluster_tag_match(self, tags: dict[str, str]) -> bool:
        name = self.cluster_name
        return (tags.get(f"kubernetes.io/cluster/{name}") == "owned" or tags.get("elbv2.k8s.aws/cluster") == name
                or tags.get("KubernetesCluster") == name)

    def _cluster_load_balancers(self, vpc_id: str | None) -> list[tuple[str, str, str]]:
        """Load balancers Kubernetes made for Services/Ingresses of this cluster (ELBv2 and classic)."""
        found: list[tuple[str, str, str]] = []
        elbv2 = self.client("elbv2")
        lbs = [lb for page in elbv2.get_paginator("describe_load_balancers").paginate() for lb in page["LoadBalancers"]]
        for i in range(0, len(lbs), 20):
            chunk = lbs[i:i + 20]
            described = elbv2.describe_tags(ResourceArns=[lb["LoadBalancerArn"] for lb in chunk])["TagDescriptions"]
            tags = {d["ResourceArn"]: _tag_dict(d.get("Tags")) for d in described}
            for lb in chunk:
                if self._cluster_tag_match(tags.get(lb["LoadBalancerArn"], {})):
                    found.append((lb["LoadBalancerArn"], lb["LoadBalancerName"], "load-balancer"))
        elb = self.client("elb")
        classic = elb.describe_load_balancers()["LoadBalancerDescriptions"]
        for i in range(0, len(classic), 20):
            chunk = classic[i:i + 20]
            described = elb.describe_tags(LoadBalancerNames=[lb["LoadBalancerName"] for lb in chunk])["TagDescriptions"]
            tags = {d["LoadBalancerName"]: _tag_dict(d.get("Tags")) for d in described}
            for lb in chunk:
                if self._cluster_tag_match(tags.get(lb["LoadBalancerName"], {})):
                    found.append((lb["LoadBalancerName"], lb["LoadBalancerName"], "classic-load-balancer"))
        return found

    def _cluster_volumes(self) -> list[dict[str, Any]]:
        ec2 = self.client("ec2")
        volumes: dict[str, dict[str, Any]] = {}
        for filters in ([{"Name": f"tag:kubernetes.io/cluster/{self.cluster_name}", "Values": ["owned"]}],
                        [{"Name": "tag:KubernetesCluster", "Values": [self.cluster_name]}]):
            for volume in ec2.describe_volumes(Filters=filters)["Volumes"]:
                volumes[volume["VolumeId"]] = volume
        return [volumes[k] for k in sorted(volumes)]

    def _cluster_security_groups(self, vpc_id: str | None) -> list[dict[str, Any]]:
        ec2 = self.client("ec2")
        groups: dict[str, dict[str, Any]] = {}
        owned = [{"Name": f"tag:kubernetes.io/cluster/{self.cluster_name}", "Values": ["owned"]}]
        for group in ec2.describe_security_groups(Filters=owned)["SecurityGroups"]:
            groups[group["GroupId"]] = group
        if vpc_id:  # every non-default group in our own VPC (EKS makes the cluster security group there)
            for group in ec2.describe_security_groups(
                    Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]:
                if group["GroupName"] != "default":
                    groups[group["GroupId"]] = group
        return [groups[k] for k in sorted(groups)]

    @aws_errors
    def destroy(self, plan: Plan) -> None:
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            handler = getattr(self, f"_destroy_{action.kind.replace('-', '_')}")
            handler(action.name)

    def _destroy_load_balancer(self, name: str) -> None:
        elbv2 = self.client("elbv2")
        arn = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]["LoadBalancerArn"]
        groups = elbv2.describe_target_groups(LoadBalancerArn=arn)["TargetGroups"]
        elbv2.delete_load_balancer(LoadBalancerArn=arn)

        def gone() -> bool:
            return not [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["LoadBalancerArn"] == arn]

        wait_until(gone, f"load balancer {name} to be deleted", timeout=600, log=self.log)
        for group in groups:
            elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])

    def _destroy_classic_load_balancer(self, name: str) -> None:
        self.client("elb").delete_load_balancer(LoadBalancerName=name)

    def _destroy_nodegroup(self, name: str) -> None:
        self._delete_group(name)

    def _destroy_ebs_volume(self, volume_id: str) -> None:
        ec2 = self.client("ec2")

        def detached() -> bool:
            found = ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])["Volumes"]
            return not found or found[0]["State"] == "available"

        wait_until(detached, f"volume {volume_id} to be detached", timeout=600, log=self.log)
        try:
            ec2.delete_volume(VolumeId=volume_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "InvalidVolume.NotFound":
                raise

    def _destroy_security_group(self, group_id: str) -> None:
        ec2 = self.client("ec2")
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

    def _destroy_eks_cluster(self, name: str) -> None:
        eks = self.client("eks")
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

        wait_until(gone, f"EKS cluster {name} to be deleted", timeout=1800, log=self.log)

    def _destroy_oidc_provider(self, arn: str) -> None:
        self.client("iam").delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)

    def _destroy_iam_role(self, name: str) -> None:
        iam = self.client("iam")
        for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
        iam.delete_role(RoleName=name)

    def _destroy_nat_gateway(self, nat_id: str) -> None:
        ec2 = self.client("ec2")
        ec2.delete_nat_gateway(NatGatewayId=nat_id)

        def gone() -> bool:
            state = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]
            return state == "deleted"

        wait_until(gone, f"NAT gateway {nat_id} to be deleted", timeout=600, log=self.log)

    def _destroy_elastic_ip(self, allocation_id: str) -> None:
        self.client("ec2").release_address(AllocationId=allocation_id)

    def _destroy_route_table(self, table_id: str) -> None:
        ec2 = self.client("ec2")
        table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
        for assoc in table.get("Associations", []):
            if not assoc.get("Main"):
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table_id)

    def _destroy_internet_gateway(self, igw_id: str) -> None:
        ec2 = self.client("ec2")
        igw = ec2.describe_internet_gateways(InternetGatewayIds=[igw_id])["InternetGateways"][0]
        for attachment in igw.get("Attachments", []):
            ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=attachment["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=igw_id)

    def _destroy_subnet(self, subnet_id: str) -> None:
        self.client("ec2").delete_subnet(SubnetId=subnet_id)

    def _destroy_vpc(self, vpc_id: str) -> None:
        self.client("ec2").delete_vpc(VpcId=vpc_id)

    # -- outputs ------------------------------------------------------------------------------------------------

    @aws_errors
    def kubeconfig(self) -> dict[str, Any]:
        from qhubctl.providers.eks_token import exec_user

        cluster = self.client("eks").describe_cluster(name=self.cluster_name)["cluster"]
        name = f"{self.cluster_name}.{self.region}.eks"
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [{"name": name, "cluster": {
                "server": cluster["endpoint"],
                "certificate-authority-data": cluster.get("certificateAuthority", {}).get("data", "")}}],
            "users": [{"name": name, "user": exec_user(self.cluster_name, self.region)}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        }

    @aws_errors
    def extras(self) -> dict[str, Any]:
        """cluster-autoscaler chart values (kubernetes/autoscaler chart): auto-discovery by the node groups' tags,
        IRSA role for its service account."""
        role = self._role_arn("cluster-autoscaler")
        return {"cluster-autoscaler": {
            "cloudProvider": "aws",
            "awsRegion": self.region,
            "autoDiscovery": {"clusterName": self.cluster_name,
                              "tags": [f"{CA_PREFIX}/enabled", f"{CA_PREFIX}/{self.cluster_name}"]},
            "rbac": {"serviceAccount": {"create": True, "name": AUTOSCALER_SA[1],
                                        "annotations": {"eks.amazonaws.com/role-arn": role}}},
            "extraArgs": {"balance-similar-node-groups": True, "expander": "least-waste",
                          "skip-nodes-with-system-pods": False},
            "nodeSelector": {ng.LABEL: ng.GENERAL},
        }}


def _minor(version: str) -> int:
    return int(version.split(".")[1])
