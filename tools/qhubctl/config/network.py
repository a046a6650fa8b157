"""Domain, TLS and ingress."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qhubctl.config.base import Base, Name


class NoTLS(Base):
    """Plain HTTP (local tests, or TLS ends in front of the cluster)."""

    type: Literal["none"] = Field(description="No TLS")


class SecretTLS(Base):
    """A TLS Secret you create (certificate and key for the domain)."""

    type: Literal["secret"] = Field(description="Use an existing kubernetes.io/tls Secret")
    secret_name: Name = Field(description="Name of the TLS Secret in the namespace")


class CertManagerTLS(Base):
    """cert-manager issues the certificate (e.g. Let's Encrypt)."""

    type: Literal["cert-manager"] = Field(description="Certificate from cert-manager")
    issuer: Name = Field(description="Issuer or ClusterIssuer name")
    issuer_kind: Literal["Issuer", "ClusterIssuer"] = Field("ClusterIssuer", description="Kind of the issuer")
    secret_name: Name | None = Field(None, description="Secret cert-manager writes; empty: '<release>-tls'")


TLS = Annotated[NoTLS | SecretTLS | CertManagerTLS, Field(discriminator="type")]


class Ingress(Base):
    """The one Ingress that routes /hub, /user, /services/dask-gateway, /conda-store."""

    enabled: bool = Field(True, description="Create the Ingress (off: reach the proxy Service yourself)")
    class_name: Name | None = Field(None, description="IngressClass; empty: the cluster default")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra Ingress annotations")
