"""Amazon EKS."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from qhubctl.config._cloud import CloudProvider
from qhubctl.config.base import Base


# EKS's own default for the public API endpoint: reachable from any address (requests still need AWS credentials).
DEFAULT_API_PUBLIC_CIDRS = ("0.0.0.0/0",)


class ClusterAutoscaler(Base):
    """cluster-autoscaler on EKS (the qhub-cluster-addons release `qhubctl cluster create` installs): which node
    group grows when pods wait, and when an idle node goes."""

    expander: Literal["least-waste", "most-pods", "least-nodes", "random"] = Field(
        "least-waste",
        description="Which group grows when several could take the waiting pods: least-waste (least idle CPU and "
                    "memory afterwards), most-pods, least-nodes or random",
    )
    scale_down_unneeded_minutes: int = Field(
        10, ge=1, le=1440, description="Minutes a node must be unneeded before it is removed")
    scale_down_delay_after_add_minutes: int = Field(
        10, ge=0, le=1440, description="Minutes after a scale-up before scale-down is considered again")
    scale_down_utilization_threshold: float = Field(
        0.5, gt=0, le=1,
        description="A node whose pods request less than this share of its CPU and memory may be removed (0-1]")


class AWSProvider(CloudProvider):
    """A new EKS cluster created by `qhubctl cluster create`."""

    implementation: ClassVar[str] = "qhubctl.providers.aws:AWS"
    sdk_extra: ClassVar[str | None] = "aws"
    default_instances: ClassVar[dict[str, str]] = {
        "general": "m6i.xlarge", "user": "m6i.xlarge", "worker": "m6i.xlarge", "gpu": "g5.xlarge",
    }
    init_block: ClassVar[str] = ('  provider: aws\n  # AWS region of the new EKS cluster.\n  region: {region}\n'
                                 '  # Kubernetes minor version (quoted).\n  kubernetes_version: "{k8s}"\n')
    network_policy_enforcer: ClassVar[str] = (
        "the VPC CNI's network policy agent (EKS add-on vpc-cni with enableNetworkPolicy, set by `qhubctl cluster "
        "create`)")
    network_policy_turn_on: ClassVar[str] = (
        "the EKS VPC CNI's network policy agent: `qhubctl cluster create` sets it, or `aws eks update-addon "
        "--cluster-name <cluster> --addon-name vpc-cni --configuration-values '{\"enableNetworkPolicy\":\"true\"}'`")
    default_storage_class: ClassVar[str] = (
        "gp3, the encrypted EBS class of the qhub-cluster-addons release (with the EKS add-on aws-ebs-csi-driver)")
    default_storage_class_fix: ClassVar[str] = (
        "`qhubctl cluster create` installs the EBS CSI driver and the gp3 class; `qhubctl upgrade` adds them to a "
        "cluster made before. A cluster that still marks gp2 default has two: `kubectl annotate storageclass gp2 "
        "storageclass.kubernetes.io/is-default-class-`")
    cluster_addons: ClassVar[tuple[str, ...]] = ("cluster-autoscaler", "storage-class", "nvidia-device-plugin")
    # a Network Load Balancer (layer 4: TLS ends at Traefik, which the HTTP-01 challenge needs) from EKS's own
    # service controller; a classic ELB otherwise
    ingress_service_annotations: ClassVar[dict[str, str]] = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    autoscaled_by: ClassVar[str] = "cluster-autoscaler (release qhub-cluster-addons in kube-system)"

    provider: Literal["aws"] = Field(description="Amazon Web Services (EKS)")
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region, e.g. us-east-1")
    availability_zones: list[str] = Field(
        default_factory=list, description="Zones for the node groups; empty picks the first two of the region"
    )
    vpc_cidr: str = Field("10.10.0.0/16", pattern=r"^[0-9.]+/[0-9]{1,2}$", description="CIDR block of the new VPC")
    subnet_ids: list[str] = Field(
        default_factory=list,
        description="Existing subnets (2+ zones) for the cluster and nodes; empty: qhubctl creates a VPC",
    )
    api_public_cidrs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_API_PUBLIC_CIDRS), min_length=1, max_length=40,
        description="IPv4 ranges that may reach the cluster's public Kubernetes API endpoint (EKS "
                    "publicAccessCidrs). Default 0.0.0.0/0, EKS's own: any address, every request still needs AWS "
                    "credentials. Narrow it to the ranges qhubctl, CI and admins connect from, e.g. [203.0.113.0/24]",
    )
    autoscaler: ClusterAutoscaler = Field(
        default_factory=ClusterAutoscaler,
        description="cluster-autoscaler's expander and scale-down settings (docs/providers.md)",
    )

    @field_validator("api_public_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                net = ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IPv4 CIDR block like 203.0.113.0/24 ({exc})") from None
            if str(net) != cidr:
                raise ValueError(f"write {cidr!r} as {net}")
        if len(set(value)) != len(value):
            raise ValueError("list each CIDR block once")
        return value
