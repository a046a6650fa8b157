"""One project's view of one AWS account and region: the clients, QHub's tags and names, and what was observed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from qhubctl.config.model import QHubConfig
from qhubctl.errors import UserError
from qhubctl.providers.base import TAG_PROJECT, GroupSpec, Log, owner_tags

# cluster-autoscaler's tag prefix: auto-discovery and scale-from-zero tags, and the IAM condition on its role.
CA_PREFIX = "k8s.io/cluster-autoscaler"


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


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
    ebs_addon: dict[str, Any] | None = None  # the aws-ebs-csi-driver add-on (ebs_csi)
    oidc_arn: str | None = None
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    group_tags: dict[str, dict[str, str]] = field(default_factory=dict)


class Account:
    """boto3 clients for the config's region (made once each), and the names and tags of this project's resources.
    IAM roles live under the path `/qhub/<project_name>/`."""

    def __init__(self, cfg: QHubConfig, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.region = cfg.cluster.region
        self.session = boto3.session.Session(region_name=self.region)
        self._clients: dict[str, Any] = {}
        self.path = f"/qhub/{cfg.project_name}/"
        self.tags = owner_tags(cfg)

    @property
    def cluster_name(self) -> str:
        return self.cfg.project_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    def role_name(self, short: str) -> str:
        return f"{self.cluster_name}-{short}"[:64]

    def tag_filter(self) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{TAG_PROJECT}", "Values": [self.cfg.project_name]}]

    def tag_spec(self, *, kind: str, name: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """EC2 TagSpecifications: QHub's tags, a Name, and `extra`."""
        tags = {**self.tags, "Name": f"{self.cluster_name}-{name}", **(extra or {})}
        return [{"ResourceType": kind, "Tags": tag_list(tags)}]

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
        """qhubctl makes the VPC (no `cluster.subnet_ids` given)."""
        return not self.cfg.cluster.subnet_ids
