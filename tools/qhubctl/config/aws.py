"""Amazon EKS."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config._cloud import CloudProvider


class AWSProvider(CloudProvider):
    """A new EKS cluster created by `qhubctl cluster create`."""

    default_instances: ClassVar[dict[str, str]] = {
        "general": "m6i.xlarge", "user": "m6i.xlarge", "worker": "m6i.xlarge", "gpu": "g5.xlarge",
    }

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
