"""Conda environments conda-store builds and every user can use."""

from __future__ import annotations

from pydantic import Field, field_validator

from qhubctl.config.base import Base, Name


class PipDependencies(Base):
    pip: list[str] = Field(min_length=1, description="pip requirement strings")


class Environment(Base):
    """One shared environment (conda environment.yaml fields)."""

    name: Name = Field(description="Environment name, unique")
    channels: list[str] = Field(default_factory=lambda: ["conda-forge"], min_length=1, description="Conda channels")
    dependencies: list[str | PipDependencies] = Field(min_length=1, description="Conda specs and a pip list")
    dask: bool = Field(
        True,
        description="Offer it as a software environment of Dask clusters (cluster option `environment`) when "
                    "dask_gateway and conda_store are on; the scheduler and workers then run its `dask-scheduler` "
                    "and `dask-worker` and the scheduler preloads dask-gateway's plugin, so it needs `dask`, "
                    "`distributed` and `dask-gateway`. The default choice stays the Dask image's own environment",
    )

    @field_validator("dependencies")
    @classmethod
    def _specs(cls, value: list[str | PipDependencies]) -> list[str | PipDependencies]:
        for spec in value:
            if isinstance(spec, str) and (not spec.strip() or " " in spec.strip()):
                raise ValueError(f"{spec!r} is not a conda spec; write e.g. 'numpy>=2' without spaces")
        if sum(isinstance(s, PipDependencies) for s in value) > 1:
            raise ValueError("more than one pip list; merge them into one {pip: [...]}")
        return value


def default_environments() -> list[Environment]:
    return [
        Environment(
            name="dask",
            dependencies=["python=3.12", "ipykernel", "dask=2025", "distributed=2025", "dask-gateway", "numpy",
                          "pandas"],
        ),
    ]


def check_unique(envs: list[Environment]) -> None:
    names = [e.name for e in envs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate environment names: {', '.join(dupes)}")
