"""Domain, TLS and ingress.

With a domain the platform is served over HTTPS: a certificate from Let's Encrypt that the cluster's Traefik gets
itself (`letsencrypt`, ACME HTTP-01), one from cert-manager, a TLS Secret you made, or TLS that a load balancer in
front of the cluster terminates (`upstream`). Plain HTTP on a domain is
refused unless `tls: {type: none, insecure_plain_http: true}` says so (docs/security.md, "TLS").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from qhubctl.config.base import Base, CIDRBlock, Name

# Let's Encrypt's ACME directories; `server` replaces them (a private ACME CA, a test server).
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# The IngressClass of QHub's Traefik (qhub-cluster-addons) and the name of its ACME certificate resolver.
INGRESS_CLASS = "qhub"
CERT_RESOLVER = "letsencrypt"
# Domains Let's Encrypt refuses as an account's contact address.
RESERVED_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")


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


class LetsEncryptTLS(Base):
    """The cluster's Traefik gets the certificate from Let's Encrypt itself (ACME HTTP-01 on port 80)."""

    type: Literal["letsencrypt"] = Field(description="Certificate from Let's Encrypt through the cluster's Traefik")
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                       description="Contact address of the ACME account: Let's Encrypt sends expiry notices there")
    staging: bool = Field(False, description="Use Let's Encrypt's staging CA (untrusted certificates, high rate "
                          "limits) to try a setup without using up the production limits")
    server: str | None = Field(None, pattern=r"^https://\S+$",
                               description="ACME directory URL of another CA (a private ACME server); empty: Let's "
                               "Encrypt's (staging's with staging: true)")
    server_ca: str | None = Field(
        None, pattern=r"^\s*-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$",
        description="PEM certificate(s) of the CA that signed `server`'s HTTPS certificate, when no public CA did")

    @property
    def directory(self) -> str:
        """The ACME directory Traefik registers with."""
        return self.server or (LETSENCRYPT_STAGING if self.staging else LETSENCRYPT)


TLS = Annotated[NoTLS | SecretTLS | CertManagerTLS | UpstreamTLS | LetsEncryptTLS, Field(discriminator="type")]

# The fix named by every refusal of plain HTTP on a domain (config validation; the chart says the same in values).
HTTPS_CHOICES = ("tls: {type: letsencrypt, email: <your address>} (the cluster's Traefik gets a Let's Encrypt "
                 "certificate), tls: {type: cert-manager, issuer: letsencrypt} (a Let's Encrypt ClusterIssuer of "
                 "cert-manager), "
                 "tls: {type: secret, secret_name: <kubernetes.io/tls Secret>}, or tls: {type: upstream} when a load "
                 "balancer in front terminates TLS; plain HTTP only with tls: {type: none, insecure_plain_http: true}")


class IngressController(Base):
    """Traefik as the cluster's ingress controller, installed with the cluster add-ons (docs/providers.md)."""

    enabled: bool | None = Field(
        None, description="Install Traefik (IngressClass qhub) behind a LoadBalancer Service with the cluster "
        "add-ons (`qhubctl cluster create`); empty: on for aws, gcp, azure and digitalocean, off for existing and "
        "local (they often run a controller of their own)")
    service_annotations: dict[str, str] | None = Field(
        None, description="Annotations of Traefik's LoadBalancer Service (the cloud's load-balancer settings); "
        "empty: the provider's (aws: a Network Load Balancer)")
    load_balancer_source_ranges: list[CIDRBlock] = Field(
        default_factory=list, description="Client address ranges the load balancer admits; empty: any")


class Ingress(Base):
    """The one Ingress that routes /hub, /user, /services/dask-gateway, /conda-store."""

    enabled: bool = Field(True, description="Create the Ingress (off: reach the proxy Service yourself)")
    class_name: Name | None = Field(None, description="IngressClass; empty: qhub (QHub's Traefik) when "
                                    "controller is on, else the cluster default")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra Ingress annotations")
    controller: IngressController = Field(default_factory=IngressController,
                                          description="QHub's ingress controller (Traefik)")
