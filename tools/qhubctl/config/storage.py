"""The shared filesystem: homes, group folders, conda environments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qhubctl.config.base import IMMUTABLE, Base, Name, Quantity


class NFSStorage(Base):
    """An NFS server inside the chart, backed by one ReadWriteOnce disk."""

    type: Literal["nfs"] = Field(description="In-cluster NFS server (immutable)", json_schema_extra=IMMUTABLE)
    size: Quantity = Field("100Gi", description="Size of the shared filesystem")
    disk_storage_class: Name | None = Field(None, description="StorageClass of the NFS backing disk; empty: default")


class ExistingStorage(Base):
    """A ReadWriteMany StorageClass the cluster already has (EFS, Filestore, Azure Files, CephFS...)."""

    type: Literal["existing"] = Field(description="An existing RWX StorageClass (immutable)", json_schema_extra=IMMUTABLE)
    storage_class: Name = Field(description="Name of the ReadWriteMany StorageClass")
    size: Quantity = Field("100Gi", description="Requested size of the shared volume")


Storage = Annotated[NFSStorage | ExistingStorage, Field(discriminator="type")]
