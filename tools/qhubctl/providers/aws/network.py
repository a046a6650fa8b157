"""The VPC qhubctl makes when `cluster.subnet_ids` is empty: one VPC, per zone a public subnet (load balancers, the
NAT gateway) and a private subnet (nodes), one NAT gateway, public and private route tables."""

from __future__ import annotations

import ipaddress

from qhubctl.errors import QHubError, UserError
from qhubctl.providers.aws.account import Account, Observed, tag_dict
from qhubctl.providers.base import Action, wait_until

TAG_SUBNET = "qhub.dev/subnet"
TAG_ROUTES = "qhub.dev/route-table"


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


# -- observe and plan ---------------------------------------------------------------------------------------------

def observe(acc: Account, seen: Observed) -> None:
    """The project's VPC and, inside it, its subnets, internet gateway, live NAT gateway and route tables."""
    ec2 = acc.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=acc.tag_filter())["Vpcs"]
    seen.vpc = vpcs[0] if vpcs else None
    if not seen.vpc:
        return
    vpc_filter = [{"Name": "vpc-id", "Values": [seen.vpc["VpcId"]]}]
    for subnet in ec2.describe_subnets(Filters=vpc_filter + acc.tag_filter())["Subnets"]:
        key = tag_dict(subnet.get("Tags")).get(TAG_SUBNET)
        if key:
            seen.subnets[key] = subnet
    igws = ec2.describe_internet_gateways(Filters=acc.tag_filter())["InternetGateways"]
    seen.igw = igws[0] if igws else None
    nats = ec2.describe_nat_gateways(Filter=vpc_filter)["NatGateways"]
    live = [n for n in nats if n["State"] in ("pending", "available")]
    seen.nat = live[0] if live else None
    for table in ec2.describe_route_tables(Filters=vpc_filter + acc.tag_filter())["RouteTables"]:
        key = tag_dict(table.get("Tags")).get(TAG_ROUTES)
        if key:
            seen.route_tables[key] = table


def plan(acc: Account, seen: Observed) -> list[Action]:
    """What is missing of the network (nothing when the config gives its own subnets)."""
    if not acc.own_network:
        return []
    actions: list[Action] = []
    zones = acc.zones()
    if not seen.vpc:
        actions.append(Action("create", "vpc", acc.cluster_name, detail=acc.cfg.cluster.vpc_cidr))
    if not seen.igw:
        actions.append(Action("create", "internet-gateway", acc.cluster_name))
    for key, (zone, cidr) in subnet_layout(acc.cfg.cluster.vpc_cidr, zones).items():
        if key not in seen.subnets:
            actions.append(Action("create", "subnet", key, detail=cidr))
    if not seen.nat:
        actions.append(Action("create", "nat-gateway", acc.cluster_name))
    for key in ("public", "private"):
        if key not in seen.route_tables:
            actions.append(Action("create", "route-table", key))
    return actions


def destroy_plan(acc: Account, seen: Observed) -> list[Action]:
    """Every part of the network, in the order it can be deleted (elastic IPs even without a VPC)."""
    ec2 = acc.client("ec2")
    actions: list[Action] = []
    vpc_id = seen.vpc["VpcId"] if seen.vpc else None
    if vpc_id:
        nats = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
        for nat in nats:
            if nat["State"] not in ("deleted", "deleting"):
                actions.append(Action("delete", "nat-gateway", nat["NatGatewayId"]))
    for address in ec2.describe_addresses(Filters=acc.tag_filter())["Addresses"]:
        actions.append(Action("delete", "elastic-ip", address["AllocationId"]))
    if vpc_id and seen.vpc:
        for key, table in sorted(seen.route_tables.items()):
            actions.append(Action("delete", "route-table", table["RouteTableId"], detail=key))
        for igw in ec2.describe_internet_gateways(Filters=acc.tag_filter())["InternetGateways"]:
            actions.append(Action("delete", "internet-gateway", igw["InternetGatewayId"]))
        for key, subnet in sorted(seen.subnets.items()):
            actions.append(Action("delete", "subnet", subnet["SubnetId"], detail=key))
        actions.append(Action("delete", "vpc", vpc_id, detail=seen.vpc.get("CidrBlock", "")))
    return actions


# -- lookups ------------------------------------------------------------------------------------------------------

def vpc_id(acc: Account) -> str:
    vpcs = acc.client("ec2").describe_vpcs(Filters=acc.tag_filter())["Vpcs"]
    if not vpcs:
        raise QHubError(f"the VPC of {acc.cluster_name} is missing", hint="run `qhubctl cluster create` again")
    return str(vpcs[0]["VpcId"])


def subnets(acc: Account) -> dict[str, str]:
    """Subnet key -> id: QHub's own subnets by their tag, or the config's subnet_ids as given-<n>."""
    if not acc.own_network:
        ids = list(acc.cfg.cluster.subnet_ids)
        return {f"given-{i}": sid for i, sid in enumerate(ids)}
    found = acc.client("ec2").describe_subnets(Filters=acc.tag_filter())["Subnets"]
    return {tag_dict(s.get("Tags"))[TAG_SUBNET]: s["SubnetId"] for s in found
            if TAG_SUBNET in tag_dict(s.get("Tags"))}


def node_subnets(acc: Account) -> list[str]:
    return [sid for key, sid in sorted(subnets(acc).items()) if not key.startswith("public-")]


# -- create -------------------------------------------------------------------------------------------------------

def create_vpc(acc: Account, action: Action) -> None:
    ec2 = acc.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=acc.cfg.cluster.vpc_cidr,
                         TagSpecifications=acc.tag_spec(kind="vpc", name="vpc"))["Vpc"]
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})


def create_internet_gateway(acc: Account, action: Action) -> None:
    ec2 = acc.client("ec2")
    igw = ec2.create_internet_gateway(TagSpecifications=acc.tag_spec(kind="internet-gateway", name="igw"))
    ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGateway"]["InternetGatewayId"], VpcId=vpc_id(acc))


def create_subnet(acc: Account, action: Action) -> None:
    ec2 = acc.client("ec2")
    zone, cidr = subnet_layout(acc.cfg.cluster.vpc_cidr, acc.zones())[action.name]
    public = action.name.startswith("public-")
    role = {"kubernetes.io/role/elb": "1"} if public else {"kubernetes.io/role/internal-elb": "1"}
    extra = {TAG_SUBNET: action.name, f"kubernetes.io/cluster/{acc.cluster_name}": "shared", **role}
    subnet = ec2.create_subnet(VpcId=vpc_id(acc), CidrBlock=cidr, AvailabilityZone=zone,
                               TagSpecifications=acc.tag_spec(kind="subnet", name=action.name, extra=extra))
    if public:
        ec2.modify_subnet_attribute(SubnetId=subnet["Subnet"]["SubnetId"], MapPublicIpOnLaunch={"Value": True})


def create_nat_gateway(acc: Account, action: Action) -> None:
    ec2 = acc.client("ec2")
    public = sorted((k, v) for k, v in subnets(acc).items() if k.startswith("public-"))
    eips = ec2.describe_addresses(Filters=acc.tag_filter())["Addresses"]
    free = [a for a in eips if not a.get("AssociationId")]
    allocation = free[0]["AllocationId"] if free else ec2.allocate_address(
        Domain="vpc", TagSpecifications=acc.tag_spec(kind="elastic-ip", name="nat"))["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public[0][1], AllocationId=allocation,
                                 TagSpecifications=acc.tag_spec(kind="natgateway", name="nat"))["NatGateway"]
    nat_id = nat["NatGatewayId"]

    def ready() -> bool:
        state = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]
        if state == "failed":
            raise QHubError(f"NAT gateway {nat_id} failed to start")
        return bool(state == "available")

    wait_until(ready, f"NAT gateway {nat_id}", timeout=600, log=acc.log)


def create_route_table(acc: Account, action: Action) -> None:
    ec2 = acc.client("ec2")
    vpc = vpc_id(acc)
    table = ec2.create_route_table(VpcId=vpc, TagSpecifications=acc.tag_spec(
        kind="route-table", name=f"{action.name}-routes", extra={TAG_ROUTES: action.name}))["RouteTable"]
    table_id = table["RouteTableId"]
    if action.name == "public":
        igw = ec2.describe_internet_gateways(Filters=acc.tag_filter())["InternetGateways"][0]
        ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw["InternetGatewayId"])
    else:
        nats = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc]},
                                                 {"Name": "state", "Values": ["available"]}])["NatGateways"]
        ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nats[0]["NatGatewayId"])
    for key, subnet_id in subnets(acc).items():
        if key.startswith(f"{action.name}-"):
            ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)


# -- delete -------------------------------------------------------------------------------------------------------

def delete_nat_gateway(acc: Account, nat_id: str) -> None:
    ec2 = acc.client("ec2")
    ec2.delete_nat_gateway(NatGatewayId=nat_id)

    def gone() -> bool:
        state = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]
        return bool(state == "deleted")

    wait_until(gone, f"NAT gateway {nat_id} to be deleted", timeout=600, log=acc.log)


def delete_elastic_ip(acc: Account, allocation_id: str) -> None:
    acc.client("ec2").release_address(AllocationId=allocation_id)


def delete_route_table(acc: Account, table_id: str) -> None:
    ec2 = acc.client("ec2")
    table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    for assoc in table.get("Associations", []):
        if not assoc.get("Main"):
            ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
    ec2.delete_route_table(RouteTableId=table_id)


def delete_internet_gateway(acc: Account, igw_id: str) -> None:
    ec2 = acc.client("ec2")
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[igw_id])["InternetGateways"][0]
    for attachment in igw.get("Attachments", []):
        ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=attachment["VpcId"])
    ec2.delete_internet_gateway(InternetGatewayId=igw_id)


def delete_subnet(acc: Account, subnet_id: str) -> None:
    acc.client("ec2").delete_subnet(SubnetId=subnet_id)


def delete_vpc(acc: Account, vpc: str) -> None:
    acc.client("ec2").delete_vpc(VpcId=vpc)
