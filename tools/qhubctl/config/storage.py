"""The shared filesystem: homes, group folders, conda environments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qhubctl.config.base import IMMUTABLE, Base, Name, Quantity


class NFSStorage(Base):
    """An NFS server inside the chart, backed by one ReadWriteOnce disk."""

    type: Literal["nfs"] = Field(description="In-cluster NFS server (immutable)", json_schema_extra=IMMUTABLE)
    size: Quantity = Field("100Gi", description="Size of the shared filesystem")
    disk_storage_class: Name | None = Field(
        None, description="StorageClass of every disk the chart claims with storage.type nfs: the NFS server's, the "
                          "hub database's, conda-store's databases (chart global.storageClass); empty: the cluster's "
                          "default")
    server_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] | None = Field(
        None, json_schema_extra=IMMUTABLE,
        description="Namespace of the NFS server and its disk (qhubctl creates it, Pod Security privileged), so "
                    "the deployment's own namespace can enforce restricted; empty: the deployment's namespace "
                    "(which then enforces only privileged). Its disk stays in the namespace it was made in",
    )


class ExistingStorage(Base):
    """A ReadWriteMany StorageClass the cluster already has (EFS, Filestore, Azure Files, CephFS...)."""

    type: Literal["existing"] = Field(description="An existing RWX StorageClass (immutable)", json_schema_extra=IMMUTABLE)
    storage_class: Name = Field(description="Name of the ReadWriteMany StorageClass")
    size: Quantity = Field("100Gi", description="Requested size of the shared volume")


Storage = Annotated[NFSStorage | ExistingStorage, Field(discriminator="type")]
