"""Which parts of the platform are installed, and their few tunables."""

from __future__ import annotations

from pydantic import Field, model_validator

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
    timeout_minutes: int = Field(60, ge=5, le=10080, description="Stop servers idle this long")


class JupyterHubSettings(Base):
    """JupyterHub tunables beyond auth and profiles."""

    idle_culler: IdleCuller = Field(default_factory=IdleCuller, description="Idle server culling")
    image: str | None = Field(None, min_length=1, description="Default JupyterLab image; empty: the chart's")


class DaskGatewaySettings(Base):
    max_workers_per_cluster: int = Field(20, ge=1, le=10000, description="Most workers one Dask cluster may have")
    idle_timeout_minutes: int = Field(30, ge=1, le=10080, description="Stop clusters idle this long")


class JitsiSettings(Base):
    host: Hostname | None = Field(None, description="Host of its own for Jitsi web; empty: meet.<domain>")
