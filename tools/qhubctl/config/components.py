"""Which parts of the platform are installed, and their few tunables."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from qhubctl.config.base import CIDRBlock, Base, FieldProblem, Hostname, IPAddress, ServiceType


class Components(Base):
    """Turn platform parts on or off. The NFS server follows storage.type."""

    jupyterhub: bool = Field(True, description="JupyterHub, its proxy and the user servers")
    dask_gateway: bool = Field(True, description="Dask clusters on demand (needs jupyterhub)")
    conda_store: bool = Field(True, description="Shared conda environments (needs jupyterhub)")
    kubessh: bool = Field(True, description="SSH/SFTP into the user's server (needs jupyterhub)")
    jitsi: bool = Field(False, description="Jitsi video calls")

    @model_validator(mode="after")
    def _needs_hub(self) -> Components:
        if not self.jupyterhub:
            needing = [n for n in ("dask_gateway", "conda_store", "kubessh") if getattr(self, n)]
            if needing:
                raise FieldProblem([(n, "authenticates through JupyterHub; set it to false or jupyterhub: true")
                                    for n in needing])
        return self


class IdleCuller(Base):
    timeout_minutes: int = Field(
        60, ge=1, le=10080,
        description="Stop servers idle this long (no browser, kernel or terminal activity); checked every quarter "
        "of it, at most every 5 minutes, so a server stops between this and 1.25 times this after its last use")


class JupyterHubSettings(Base):
    """JupyterHub tunables beyond auth and profiles."""

    idle_culler: IdleCuller = Field(default_factory=IdleCuller, description="Idle server culling")
    image: str | None = Field(None, min_length=1, description="Default JupyterLab image; empty: the chart's")


class DaskGatewaySettings(Base):
    max_workers_per_cluster: int = Field(20, ge=1, le=10000, description="Most workers one Dask cluster may have")
    idle_timeout_minutes: int = Field(30, ge=1, le=10080, description="Stop clusters idle this long")


class JitsiSettings(Base):
    """Jitsi's web host and the address its media is reached on (docs/jitsi.md)."""

    host: Hostname | None = Field(None, description="Host of its own for Jitsi web; empty: meet.<domain>")
    advertise_ips: list[IPAddress] = Field(
        default_factory=list, max_length=10,
        description="Public IP addresses (IPv4 or IPv6) the videobridge announces to browsers for media on UDP "
        "10000: the UDP "
        "load balancer's, or the nodes' where its Service is a NodePort; empty: found with STUN at start, which "
        "fails behind most NATs (calls of three or more then have no media)")

    @field_validator("advertise_ips")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _no_repeats(value)


class KubeSSHSettings(Base):
    """How users reach the SSH/SFTP gateway (docs/kubessh.md)."""

    service_type: ServiceType | None = Field(
        None, description="LoadBalancer (an address of its own), NodePort (ports on the nodes that run the gateway: "
        "the Service keeps clients' addresses) or ClusterIP (kubectl port-forward only); empty: LoadBalancer, or "
        "NodePort where the provider has no load balancers (local)")
    load_balancer_source_ranges: list[CIDRBlock] = Field(
        default_factory=list, max_length=40,
        description="Client address ranges (CIDR blocks, e.g. 198.51.100.0/24) the load balancer lets through; "
        "empty: any. Only with a LoadBalancer")

    @field_validator("load_balancer_source_ranges")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _no_repeats(value)


def _no_repeats(value: list[str]) -> list[str]:
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        raise ValueError(f"listed twice: {', '.join(repeated)}")
    return value


class CondaStoreSettings(Base):
    """conda-store's images and where its builds fetch packages (docs/conda-store.md)."""

    postgresql_image: str | None = Field(
        None, min_length=1, description="Image of conda-store's PostgreSQL (runs as uid 70, takes POSTGRES_USER, "
        "POSTGRES_PASSWORD, POSTGRES_DB like the upstream postgres image); empty: the chart's")
    redis_image: str | None = Field(
        None, min_length=1, description="Image of conda-store's Redis (runs `sh -c 'exec redis-server ...'` as uid "
        "999); empty: the chart's")
    channel_alias: str | None = Field(
        None, description="Where named channels (conda-forge) resolve: a mirror's http(s) URL ending in /; "
        "empty: https://conda.anaconda.org/")
    mirror_cidrs: list[str] = Field(
        default_factory=list, max_length=20,
        description="Private IPv4 ranges the build worker may reach on the channel alias's port (a mirror inside "
        "the cluster or the network); the worker reaches only public addresses on 80/443 otherwise")

    @field_validator("channel_alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or not value.endswith("/"):
                raise ValueError(f"{value!r} is not an http(s) URL ending in /, e.g. http://conda-mirror:8080/")
        return value

    @field_validator("mirror_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IPv4 CIDR block like 10.244.0.0/16 ({exc})") from None
        return value

    @model_validator(mode="after")
    def _mirror_needs_alias(self) -> CondaStoreSettings:
        if self.mirror_cidrs and not self.channel_alias:
            raise FieldProblem([("mirror_cidrs", "opens the worker to a mirror: set channel_alias to its URL too")])
        return self

    def alias_port(self) -> int:
        """The TCP port of the channel alias (its scheme's default when the URL names none)."""
        parts = urlsplit(self.channel_alias or "https://conda.anaconda.org/")
        return parts.port or (443 if parts.scheme == "https" else 80)
