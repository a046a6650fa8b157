"""Which parts of the platform are installed, and their few tunables."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from qhubctl.config.base import Base, FieldProblem, Hostname


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
    host: Hostname | None = Field(None, description="Host of its own for Jitsi web; empty: meet.<domain>")


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
