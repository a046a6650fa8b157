"""Domain, TLS and ingress.

With a domain the platform is served over HTTPS: a certificate from cert-manager (Let's Encrypt), a TLS Secret you
made, or TLS that a load balancer in front of the cluster terminates (`upstream`). Plain HTTP on a domain is
refused unless `tls: {type: none, insecure_plain_http: true}` says so (docs/security.md, "TLS").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qhubctl.config.base import Base, Name


class NoTLS(Base):
    """Plain HTTP: no domain (port-forward, the local cluster), or explicitly insecure."""

    type: Literal["none"] = Field(description="No TLS")
    insecure_plain_http: bool = Field(
        False, description="Serve the domain over plain HTTP anyway: passwords, cookies and API tokens cross the "
        "network unencrypted. Only for a network you trust; TLS ended by a load balancer is type: upstream")


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


class UpstreamTLS(Base):
    """TLS ends in front of the cluster: a load balancer or proxy holds the certificate and forwards HTTP."""

    type: Literal["upstream"] = Field(description="A load balancer in front terminates TLS; public URLs are https")


TLS = Annotated[NoTLS | SecretTLS | CertManagerTLS | UpstreamTLS, Field(discriminator="type")]

# The fix named by every refusal of plain HTTP on a domain (config validation; the chart says the same in values).
HTTPS_CHOICES = ("tls: {type: cert-manager, issuer: letsencrypt} (a Let's Encrypt ClusterIssuer of cert-manager), "
                 "tls: {type: secret, secret_name: <kubernetes.io/tls Secret>}, or tls: {type: upstream} when a load "
                 "balancer in front terminates TLS; plain HTTP only with tls: {type: none, insecure_plain_http: true}")


class Ingress(Base):
    """The one Ingress that routes /hub, /user, /services/dask-gateway, /conda-store."""

    enabled: bool = Field(True, description="Create the Ingress (off: reach the proxy Service yourself)")
    class_name: Name | None = Field(None, description="IngressClass; empty: the cluster default")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra Ingress annotations")
