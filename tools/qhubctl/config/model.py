"""The whole qhub-config.yaml: the single source of truth for what a QHub deployment is."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from qhubctl import nodegroups as ng
from qhubctl.config.auth import Auth, NativeAuth, User
from qhubctl.config.aws import AWSProvider
from qhubctl.config.backup import BackupSettings
from qhubctl.config.azure import AzureProvider
from qhubctl.config.base import IMMUTABLE, Base, FieldProblem, Hostname, Name, SecretRef
from qhubctl.config.cluster import ClusterBlock
from qhubctl.config.components import (
    Components,
    CondaStoreSettings,
    DaskGatewaySettings,
    JitsiSettings,
    JupyterHubSettings,
    KubeSSHSettings,
)
from qhubctl.config.digitalocean import DigitalOceanProvider
from qhubctl.config.environments import Environment, check_unique, default_environments
from qhubctl.config.existing import ExistingProvider
from qhubctl.config.gcp import GCPProvider
from qhubctl.config.local import LocalProvider
from qhubctl.config.network import (
    HTTPS_CHOICES,
    INGRESS_CLASS,
    RESERVED_EMAIL_DOMAINS,
    TLS,
    Ingress,
    LetsEncryptTLS,
    NoTLS,
)
from qhubctl.config.nodegroups import NodeGroup, fill_defaults
from qhubctl.config.profiles import Profiles
from qhubctl.config.storage import NFSStorage, Storage

# Bump when the file format changes, and add a step to qhubctl.config.migrate.
SCHEMA_VERSION = 2

# The `cluster:` block: one class per provider (qhubctl/config/<provider>.py), picked by `provider`. This union is
# the one list of providers; everything else that needs one derives it from CLUSTER_BLOCKS.
ClusterConfig = Annotated[
    AWSProvider | GCPProvider | AzureProvider | DigitalOceanProvider | ExistingProvider | LocalProvider,
    Field(discriminator="provider"),
]
CLUSTER_BLOCKS: dict[str, type[ClusterBlock]] = {
    block.provider_name(): block for block in get_args(get_args(ClusterConfig)[0])
}
PROVIDERS: tuple[str, ...] = tuple(CLUSTER_BLOCKS)


class QHubConfig(Base):
    """qhub-config.yaml"""

    schema_version: int = Field(description=f"Format version of this file; current: {SCHEMA_VERSION}")
    project_name: str = Field(
        pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$",
        description="Name of this deployment: 3-32 lower-case letters, digits, '-'",
        json_schema_extra=IMMUTABLE,
    )
    namespace: Name = Field("qhub", description="Kubernetes namespace of the platform")
    release_name: Name = Field("qhub", description="Helm release name")
    image_registry: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._/-]+)?$",
        description="Registry (host[:port][/path]) that replaces the registry of every image, for a mirror or "
        "an air-gapped registry; empty: each image's own registry",
    )
    cluster: ClusterConfig = Field(description="Where the platform runs; `provider` picks the block (immutable)")
    domain: Hostname | None = Field(None, description="Public host name; empty: reach the platform by IP/port-forward")
    tls: TLS = Field(default_factory=lambda: NoTLS(type="none"),
                     description="HTTPS; with a domain: letsencrypt, cert-manager, secret or upstream "
                     "(docs/security.md)")
    ingress: Ingress = Field(default_factory=Ingress, description="Ingress settings")
    node_groups: dict[Name, NodeGroup] = Field(
        default_factory=dict, validate_default=True,  # an absent block gets the default groups too
        description="Node groups; general, user and worker are always present",
    )
    profiles: Profiles = Field(default_factory=Profiles, description="JupyterLab and Dask worker sizes")
    environments: list[Environment] = Field(
        default_factory=default_environments, description="Shared conda environments built by conda-store"
    )
    storage: Storage = Field(default_factory=lambda: NFSStorage(type="nfs"), description="Shared filesystem")
    auth: Auth = Field(default_factory=lambda: NativeAuth(type="native", users={"admin": User()}, admins=["admin"]),
                       description="Login, users and groups (default: native accounts approved by the admin `admin`)")
    components: Components = Field(default_factory=Components, description="Installed platform parts")
    jupyterhub: JupyterHubSettings = Field(default_factory=JupyterHubSettings, description="JupyterHub tunables")
    dask_gateway: DaskGatewaySettings = Field(default_factory=DaskGatewaySettings, description="Dask-Gateway tunables")
    jitsi: JitsiSettings = Field(default_factory=JitsiSettings, description="Jitsi video calls")
    kubessh: KubeSSHSettings = Field(default_factory=KubeSSHSettings, description="The SSH/SFTP gateway's Service")
    conda_store: CondaStoreSettings = Field(default_factory=CondaStoreSettings,
                                            description="conda-store's database and Redis images, channel mirror")
    backup: BackupSettings = Field(default_factory=BackupSettings,
                                   description="Scheduled backups to an S3 bucket (docs/backup.md)")

    @field_validator("schema_version")
    @classmethod
    def _current(cls, value: int) -> int:
        if value < SCHEMA_VERSION:
            raise ValueError(f"version {value} is older than {SCHEMA_VERSION}; run `qhubctl upgrade` to migrate")
        if value > SCHEMA_VERSION:
            raise ValueError(f"version {value} is newer than this qhubctl ({SCHEMA_VERSION}); upgrade qhubctl")
        return value

    @field_validator("node_groups", mode="before")
    @classmethod
    def _group_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        cluster = info.data.get("cluster")  # absent when the cluster block itself is invalid
        instances = cluster.default_instances if cluster is not None else {}
        return fill_defaults(value, instances, cluster.managed_nodes if cluster is not None else False)

    @field_validator("environments")
    @classmethod
    def _envs(cls, value: list[Environment]) -> list[Environment]:
        check_unique(value)
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> QHubConfig:
        problems = _check_groups(self) + _check_profiles(self) + _check_network(self) + _check_backup(self)
        if problems:
            raise FieldProblem(problems)
        return self

    @property
    def ingress_controller(self) -> bool:
        """Whether QHub's Traefik is the cluster's ingress controller: the config's choice, else the provider's."""
        chosen = self.ingress.controller.enabled
        return self.cluster.ingress_controller if chosen is None else chosen

    def placements(self) -> dict[str, ng.GroupPlacement]:
        if self.cluster.every_group_on_real_node:
            # the local cluster's one real node runs every group's pods; its simulated groups run none
            real = ng.Taint(ng.REAL_NODE_LABEL, "true", "NoSchedule")
            return {name: ng.placement(name, extra_taints=(real,), node_selector={ng.REAL_NODE_LABEL: "true"})
                    for name in self.node_groups}
        return {name: group.placement(name) for name, group in self.node_groups.items()}

    def secrets(self) -> dict[tuple[str, ...], SecretStr]:
        """Secret values given through QHUB_SECRET__ variables, by config path."""
        found: dict[tuple[str, ...], SecretStr] = {}
        _collect_secrets(self, (), found)
        return found

    def redacted(self) -> dict[str, Any]:
        """The config as plain data with every secret value masked (safe to store, log or ship in a support zip)."""
        return self.model_dump(mode="json", by_alias=True)


def _collect_secrets(obj: Any, path: tuple[str, ...], found: dict[tuple[str, ...], SecretStr]) -> None:
    if isinstance(obj, SecretStr):
        found[path] = obj
    elif isinstance(obj, Base) and not isinstance(obj, SecretRef):
        for name in type(obj).model_fields:
            _collect_secrets(getattr(obj, name), (*path, name), found)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            _collect_secrets(item, (*path, str(key)), found)


def _check_groups(cfg: QHubConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    managed = cfg.cluster.managed_nodes
    cloud = bool(cfg.cluster.default_instances)
    general = cfg.node_groups[ng.GENERAL]
    if general.min_nodes < 1:
        problems.append(("node_groups.general.min_nodes", "must be at least 1: the hub and core services run there"))
    for name, group in cfg.node_groups.items():
        where = f"node_groups.{name}"
        if managed and group.node_selector is not None:
            problems.append((f"{where}.node_selector", f"only for provider existing; {cfg.cluster.provider} nodes are "
                             f"labelled {ng.LABEL}={name} by qhubctl - remove node_selector"))
        if not cloud and (group.instance_type or group.spot):
            field = "instance_type" if group.instance_type else "spot"
            problems.append((f"{where}.{field}", f"provider {cfg.cluster.provider} does not create nodes; remove it"))
        if cloud and name == ng.GPU and group.gpu is None:
            problems.append((f"{where}.gpu", "the gpu group needs gpu: {count: 1} (and type where the cloud needs it)"))
        if group.gpu and cfg.cluster.gpu_type_required and not group.gpu.type and cloud:
            problems.append((f"{where}.gpu.type", f"{cfg.cluster.provider} needs the accelerator type, "
                             "e.g. nvidia-tesla-t4"))
    return problems


def _check_profiles(cfg: QHubConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    known = sorted(cfg.node_groups)
    entries = [("jupyterlab", p) for p in cfg.profiles.jupyterlab] + [("dask_worker", p) for p in cfg.profiles.dask_worker]
    counters: dict[str, int] = {}
    for kind, prof in entries:
        idx = counters[kind] = counters.get(kind, -1) + 1
        where = f"profiles.{kind}[{idx}]"
        group = cfg.node_groups.get(prof.node_group)
        if group is None:
            problems.append((f"{where}.node_group", f"no node group {prof.node_group!r}; use one of {', '.join(known)}"))
        elif prof.gpus and group.gpu is None and cfg.cluster.managed_nodes:
            problems.append((f"{where}.gpus", f"node group {prof.node_group!r} has no GPUs; use the gpu group"))
        for i, group_name in enumerate(prof.access.groups):
            if group_name not in cfg.auth.groups:
                problems.append((f"{where}.access.groups[{i}]", f"group {group_name!r} is not defined under auth.groups"))
        gate = cfg.profiles.gpu_group
        if prof.access.groups_for(prof.gpus, gate) == [gate] and gate not in cfg.auth.groups:
            problems.append((f"{where}.access", f"the profile requests GPUs, so only members of group {gate!r} "
                             "(profiles.gpu_group) may use it, and auth.groups has no such group; define it "
                             "there with a gid and add users, name other groups in access.groups, or set "
                             "access.allow_all: true"))
    return problems


def _check_network(cfg: QHubConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if cfg.tls.type != "none" and not cfg.domain:
        problems.append(("tls.type", f"TLS ({cfg.tls.type}) needs a domain; set domain: or tls: {{type: none}}"))
    if isinstance(cfg.tls, NoTLS) and cfg.domain and not cfg.tls.insecure_plain_http:
        problems.append(("tls", f"domain {cfg.domain} would be served over plain HTTP, passwords and API tokens "
                         f"readable on the network; set {HTTPS_CHOICES}"))
    if isinstance(cfg.tls, NoTLS) and cfg.tls.insecure_plain_http and not cfg.domain:
        problems.append(("tls.insecure_plain_http", "only means something with a domain; remove it"))
    if cfg.components.jitsi and not (cfg.jitsi.host or cfg.domain):
        problems.append(("jitsi.host", "Jitsi needs a host of its own; set jitsi.host or domain (meet.<domain>)"))
    if cfg.domain and not cfg.ingress.enabled:
        problems.append(("ingress.enabled", "a domain is routed by the Ingress; enable it or remove domain"))
    return problems + _check_ssh_service(cfg) + _check_controller(cfg) + _check_letsencrypt(cfg)


def _check_controller(cfg: QHubConfig) -> list[tuple[str, str]]:
    ctl = cfg.ingress.controller
    where = "ingress.controller"
    if not cfg.ingress_controller:
        given = [name for name in ("service_annotations", "load_balancer_source_ranges") if getattr(ctl, name)]
        return [(f"{where}.{name}", f"only QHub's Traefik uses it, and it is off on provider {cfg.cluster.provider}; "
                 f"set {where}.enabled: true or remove {name}") for name in given]
    if ctl.load_balancer_source_ranges and cfg.cluster.node_ports:
        return [(f"{where}.load_balancer_source_ranges", f"provider {cfg.cluster.provider} has no load balancers "
                 "(Traefik's Service is a NodePort, limited by the nodes' firewall); remove the ranges")]
    return []


def _check_letsencrypt(cfg: QHubConfig) -> list[tuple[str, str]]:
    tls = cfg.tls
    if not isinstance(tls, LetsEncryptTLS):
        return []
    problems: list[tuple[str, str]] = []
    if not cfg.ingress_controller:
        problems.append(("ingress.controller.enabled", f"tls type letsencrypt: QHub's Traefik gets the certificate, "
                         f"and provider {cfg.cluster.provider} does not install it unless asked; set "
                         "ingress.controller.enabled: true (installed by `qhubctl cluster create`), or use your own "
                         "controller with tls: {type: cert-manager, issuer: <ClusterIssuer>}"))
    if cfg.ingress.class_name not in (None, INGRESS_CLASS):
        problems.append(("ingress.class_name", f"tls type letsencrypt: only QHub's Traefik (IngressClass "
                         f"{INGRESS_CLASS}) holds the certificate resolver, so the Ingress must use it; remove "
                         f"class_name or set it to {INGRESS_CLASS}"))
    if tls.server is None and tls.email.rpartition("@")[2].lower() in RESERVED_EMAIL_DOMAINS:
        problems.append(("tls.email", f"Let's Encrypt refuses contact addresses at {tls.email.rpartition('@')[2]}; "
                         "give an address you read (expiry notices go there)"))
    if tls.server is not None and tls.staging:
        problems.append(("tls.staging", "tls.server names the ACME CA already; remove staging or server"))
    if tls.server_ca is not None and tls.server is None:
        problems.append(("tls.server_ca", "Let's Encrypt's certificate is signed by a public CA; server_ca is only "
                         "for a private ACME server named in tls.server: set server or remove server_ca"))
    return problems


def ssh_service_type(cfg: QHubConfig) -> str:
    """The SSH gateway's Service type: the config's, else NodePort where the provider has no load balancers."""
    return cfg.kubessh.service_type or ("NodePort" if cfg.cluster.node_ports else "LoadBalancer")


def _check_ssh_service(cfg: QHubConfig) -> list[tuple[str, str]]:
    kind = ssh_service_type(cfg)
    if kind == "LoadBalancer" and cfg.cluster.node_ports:
        return [("kubessh.service_type", f"provider {cfg.cluster.provider} has no load balancers, so the Service "
                 "would never get an address; use NodePort (its default) or ClusterIP")]
    if cfg.kubessh.load_balancer_source_ranges and kind != "LoadBalancer":
        return [("kubessh.load_balancer_source_ranges", f"only a LoadBalancer Service applies it and this one is a "
                 f"{kind}; set kubessh.service_type: LoadBalancer or remove the ranges (a NodePort is limited by "
                 "the nodes' firewall)")]
    return []


def _check_backup(cfg: QHubConfig) -> list[tuple[str, str]]:
    if cfg.backup.schedule is not None and not cfg.components.jupyterhub:
        return [("backup.schedule", "backs up the hub's database and runs the hub's image; set "
                 "components.jupyterhub: true or remove backup.schedule")]
    return []
