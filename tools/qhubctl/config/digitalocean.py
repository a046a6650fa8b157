"""DigitalOcean Kubernetes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qhubctl.config._cloud import CloudProvider


class DigitalOceanProvider(CloudProvider):
    """A new DOKS cluster created by `qhubctl cluster create`."""

    default_instances: ClassVar[dict[str, str]] = {
        "general": "g-4vcpu-16gb", "user": "g-4vcpu-16gb", "worker": "g-4vcpu-16gb", "gpu": "gpu-h100x1-80gb",
    }

    provider: Literal["digitalocean"] = Field(description="DigitalOcean Kubernetes (DOKS)")
    region: str = Field("nyc3", pattern=r"^[a-z]{3}[0-9]$", description="DigitalOcean region slug, e.g. nyc3")
