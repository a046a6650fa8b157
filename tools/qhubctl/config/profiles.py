"""Server profiles users pick from: JupyterLab sizes and Dask worker sizes."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from qhubctl.config.base import Base, FieldProblem, Name, Quantity, quantity_value


class Resource(Base):
    """Guaranteed (request) and maximum (limit) amount of one resource."""

    guarantee: Quantity | float = Field(description="Amount reserved for the server (Kubernetes request)")
    limit: Quantity | float = Field(description="Most the server may use (Kubernetes limit)")

    @model_validator(mode="after")
    def _guarantee_le_limit(self) -> Resource:
        if quantity_value(self.guarantee) > quantity_value(self.limit):
            raise ValueError(f"guarantee ({self.guarantee}) is larger than limit ({self.limit})")
        return self


# Group whose members see GPU profiles that name no groups (the jupyterhub chart's singleuser.gpuGroup default).
GPU_GROUP = "gpu-users"


class Access(Base):
    """Who sees and may start a profile. No groups: everyone, except that a profile requesting GPUs goes only to
    the members of profiles.gpu_group unless allow_all opens it."""

    groups: list[str] = Field(default_factory=list, description="Only members of these groups (auth.groups)")
    allow_all: bool = Field(
        False, description="Open a profile that requests GPUs to every user (default: profiles.gpu_group only)"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Access:
        if self.allow_all and self.groups:
            raise FieldProblem([("allow_all", "allow_all: true opens the profile to every user, groups limit it to "
                                 "their members; remove one of them")])
        return self

    def groups_for(self, gpus: int, gpu_group: str) -> list[str]:
        """Groups whose members may use the profile; empty: everyone."""
        if self.groups or self.allow_all or not gpus:
            return list(self.groups)
        return [gpu_group]


class JupyterLabProfile(Base):
    """One entry of the server size menu."""

    name: Name = Field(description="Short id, unique among JupyterLab profiles")
    display_name: str = Field(min_length=1, max_length=80, description="Title shown in the spawn menu")
    description: str = Field("", max_length=400, description="One line under the title")
    default: bool = Field(False, description="Preselected in the menu (at most one profile)")
    cpu: Resource = Field(default_factory=lambda: Resource(guarantee=1, limit=2), description="CPU cores")
    memory: Resource = Field(
        default_factory=lambda: Resource(guarantee="4Gi", limit="8Gi"), description="Memory, e.g. 8Gi"
    )
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu count; needs a node group with GPUs")
    node_group: Name = Field("user", description="Node group the server runs on")
    image: str | None = Field(None, min_length=1, description="Image override, e.g. registry/jupyterlab:tag")
    access: Access = Field(default_factory=Access, description="Restrict the profile to some users or groups")


class DaskWorkerProfile(Base):
    """One Dask worker size users can request from Dask-Gateway (the scheduler runs on the general group)."""

    name: Name = Field(description="Short id, unique among Dask worker profiles")
    display_name: str = Field(min_length=1, max_length=80, description="Title shown in the cluster options")
    default: bool = Field(False, description="Used when the user picks nothing (at most one profile)")
    cores: float = Field(1, gt=0, le=256, description="CPU cores per worker (request and limit)")
    memory: Quantity = Field("4Gi", description="Memory per worker (request and limit), e.g. 8Gi")
    threads: int = Field(1, ge=1, le=256, description="Threads per worker process")
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per worker; needs a node group with GPUs")
    node_group: Name = Field("worker", description="Node group the workers run on")
    access: Access = Field(default_factory=Access, description="Restrict the profile to some groups")


def _one_default(items: list, kind: str) -> None:
    defaults = [p.name for p in items if p.default]
    if len(defaults) > 1:
        raise ValueError(f"more than one default {kind} profile ({', '.join(defaults)}); keep one default: true")
    names = [p.name for p in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {kind} profile names: {', '.join(dupes)}")


def _default_jupyterlab() -> list[JupyterLabProfile]:
    return [
        JupyterLabProfile(name="small", display_name="Small (2 CPU, 8 GiB)", default=True,
                          description="Everyday notebooks and small data"),
        JupyterLabProfile(
            name="medium", display_name="Medium (4 CPU, 16 GiB)",
            cpu=Resource(guarantee=3, limit=4), memory=Resource(guarantee="12Gi", limit="16Gi"),
        ),
    ]


def _default_dask() -> list[DaskWorkerProfile]:
    return [
        DaskWorkerProfile(name="small", display_name="Small worker (1 CPU, 4 GiB)", default=True),
        DaskWorkerProfile(name="medium", display_name="Medium worker (2 CPU, 8 GiB)", cores=2, memory="8Gi",
                          threads=2),
    ]


class Profiles(Base):
    """Menus of server and worker sizes."""

    jupyterlab: list[JupyterLabProfile] = Field(
        default_factory=_default_jupyterlab, min_length=1, description="JupyterLab server sizes"
    )
    dask_worker: list[DaskWorkerProfile] = Field(
        default_factory=_default_dask, min_length=1, description="Dask worker sizes"
    )
    gpu_group: Name = Field(
        GPU_GROUP, description="Group (auth.groups) whose members see the profiles that request GPUs and list no "
        "access groups; everyone else neither sees nor may start them"
    )

    @field_validator("jupyterlab")
    @classmethod
    def _lab(cls, value: list[JupyterLabProfile]) -> list[JupyterLabProfile]:
        _one_default(value, "jupyterlab")
        return value

    @field_validator("dask_worker")
    @classmethod
    def _dask(cls, value: list[DaskWorkerProfile]) -> list[DaskWorkerProfile]:
        _one_default(value, "dask_worker")
        return value
