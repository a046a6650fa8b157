"""The one mapping from a validated config to the Helm values of charts/qhub. Nothing else knows both sides.

Deterministic (same config and chart -> same values, keys sorted) and secret-free: secrets are referenced by
Secret name and key only. Values the chart's defaults would otherwise merge in (profile maps) are switched off
explicitly, so the deployed platform matches the config and nothing else.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from qhubctl import daskclusters
from qhubctl import nodegroups as ng
from qhubctl.chart import chart_dir as located_chart
from qhubctl.config.base import SecretRef, quantity_value
from qhubctl.config.model import QHubConfig, ssh_service_type
from qhubctl.config.network import CERT_RESOLVER, INGRESS_CLASS

# Components (config name) -> umbrella dependency name (values key).
COMPONENTS = {
    "jupyterhub": "jupyterhub", "dask_gateway": "dask-gateway", "conda_store": "conda-store",
    "kubessh": "kubessh", "jitsi": "jitsi",
}
# Hub services that follow their component.
HUB_SERVICES = {"dask_gateway": "dask-gateway", "conda_store": "conda-store", "kubessh": "kubessh", "jitsi": "jitsi"}
AUTH_TYPES = {"dummy": "dummy", "native": "native", "github": "github", "oidc": "generic-oauth"}
# The Dask environment choice that keeps the image's own environment (a '.' no config environment name can hold).
IMAGE_ENVIRONMENT = "image.default"


def generated_secret_name(cfg: QHubConfig) -> str:
    """Secret qhubctl writes with the QHUB_SECRET__ values before each deploy."""
    return f"{cfg.release_name}-qhubctl-secrets"


def secret_key(path: tuple[str, ...]) -> str:
    return "-".join(p.replace("_", "-") for p in path)


def chart_dependencies(chart_dir: Path | None = None) -> tuple[str, ...]:
    return _chart_dependencies(chart_dir or located_chart())


@lru_cache(maxsize=8)
def _chart_dependencies(chart_dir: Path) -> tuple[str, ...]:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    return tuple(d["name"] for d in chart.get("dependencies") or [])


def subchart_defaults(name: str, chart_dir: Path | None = None) -> dict[str, Any]:
    return _subchart_defaults(name, chart_dir or located_chart())


@lru_cache(maxsize=32)
def _subchart_defaults(name: str, chart_dir: Path) -> dict[str, Any]:
    path = chart_dir / "charts" / name / "values.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def image_parts(ref: str) -> dict[str, str]:
    """'ghcr.io/org/lab:1.2' -> {registry: ghcr.io, repository: org/lab, tag: '1.2'}."""
    name, tag = ref, ""
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return {"registry": first, "repository": rest, "tag": tag}
    return {"registry": "", "repository": name, "tag": tag}


def kubespawner_bytes(quantity: str | float) -> str:
    """A memory quantity as KubeSpawner's G/M suffixes (powers of 1024): 8Gi -> 8G, 1500Mi -> 1500M."""
    value = quantity_value(quantity)
    if value % 1024**3 == 0:
        return f"{int(value // 1024**3)}G"
    return f"{math.ceil(value / 1024**2)}M"


def secret_source(cfg: QHubConfig, value: Any, path: tuple[str, ...]) -> tuple[str, str]:
    """(Secret name, key) holding a secret field: the user's Secret, or the one qhubctl writes from the env."""
    if isinstance(value, SecretRef):
        return value.secret_ref.name, value.secret_ref.key
    return generated_secret_name(cfg), secret_key(path)


def chart_values(cfg: QHubConfig, chart_dir: Path | None = None) -> dict[str, Any]:
    """Helm values for charts/qhub from `cfg` (the chart qhubctl.chart locates unless `chart_dir` is given)."""
    chart_dir = chart_dir or located_chart()
    deps = chart_dependencies(chart_dir)
    values: dict[str, Any] = {
        "global": _global(cfg),
        "ingress": {
            "enabled": cfg.ingress.enabled,
            "className": cfg.ingress.class_name or (INGRESS_CLASS if cfg.ingress_controller else ""),
            "annotations": dict(cfg.ingress.annotations),
        },
        "nfs": {"enabled": cfg.storage.type == "nfs"},
    }
    if cfg.storage.type == "existing":
        values["sharedStorage"] = {"existingStorageClass": cfg.storage.storage_class, "size": cfg.storage.size}
    else:
        values["nfs"]["persistence"] = {"size": cfg.storage.size}
        if cfg.storage.server_namespace:
            values["nfs"]["server"] = {"namespace": cfg.storage.server_namespace}
    for component, dep in COMPONENTS.items():
        if dep in deps:
            values.setdefault(dep, {})["enabled"] = bool(getattr(cfg.components, component))
    values["global"]["daskClusters"] = daskclusters.values(
        cfg, bool(cfg.components.dask_gateway and "dask-gateway" in deps))
    if cfg.components.jupyterhub and "jupyterhub" in deps:
        values["jupyterhub"].update(_jupyterhub(cfg, deps, chart_dir))
    if cfg.components.dask_gateway and "dask-gateway" in deps:
        values["dask-gateway"].update(_dask_gateway(cfg, deps, chart_dir))
    if cfg.cluster.node_ports:
        # No load-balancer controller (the local cluster): expose the hub and Jitsi media on NodePorts, which the
        # nodes answer (the local cluster's real node on this machine's loopback); SSH too (ssh_service_type).
        if "jupyterhub" in deps and cfg.components.jupyterhub:
            values["jupyterhub"].setdefault("proxy", {})["service"] = {"type": "NodePort"}
        if "jitsi" in deps and cfg.components.jitsi:
            values["jitsi"]["jvb"] = {"service": {"type": "NodePort"}}
    if cfg.components.kubessh and "kubessh" in deps:
        values["kubessh"]["service"] = _kubessh_service(cfg)
    if cfg.components.jitsi and "jitsi" in deps:
        values["jitsi"]["host"] = cfg.jitsi.host or f"meet.{cfg.domain}"
        values["jitsi"].setdefault("jvb", {})["advertiseIPs"] = list(cfg.jitsi.advertise_ips)
    if cfg.components.conda_store and "conda-store" in deps:
        values["conda-store"].update(_conda_store(cfg))
    return _sorted(values)


def _kubessh_service(cfg: QHubConfig) -> dict[str, Any]:
    """The SSH gateway's Service: its type when the config or the provider picks one other than the chart's
    LoadBalancer, and the load balancer's source ranges (the config's list, empty: any)."""
    out: dict[str, Any] = {"loadBalancerSourceRanges": list(cfg.kubessh.load_balancer_source_ranges)}
    kind = ssh_service_type(cfg)
    if kind != "LoadBalancer":
        out["type"] = kind
    return out


def _global(cfg: QHubConfig) -> dict[str, Any]:
    # letsencrypt: the cluster's Traefik gets the certificate with its ACME resolver (the chart's traefik-acme)
    tls: dict[str, Any] = {"mode": "traefik-acme" if cfg.tls.type == "letsencrypt" else cfg.tls.type}
    if cfg.tls.type == "letsencrypt":
        tls["traefikAcme"] = {"certResolver": CERT_RESOLVER}
    if cfg.tls.type == "none":
        tls["allowPlainHttp"] = cfg.tls.insecure_plain_http
    if cfg.tls.type in ("secret", "cert-manager"):
        tls["secretName"] = cfg.tls.secret_name or ""
    if cfg.tls.type == "cert-manager":
        tls["certManager"] = {"issuer": cfg.tls.issuer, "issuerKind": cfg.tls.issuer_kind}
    out: dict[str, Any] = {
        "domain": cfg.domain or "",
        "tls": tls,
        "nodeGroups": {name: _group_values(p) for name, p in cfg.placements().items()},
    }
    if cfg.storage.type == "nfs" and cfg.storage.disk_storage_class:
        out["storageClass"] = cfg.storage.disk_storage_class
    if cfg.image_registry:
        out["imageRegistry"] = cfg.image_registry
    return out


def _group_values(placement: ng.GroupPlacement) -> dict[str, Any]:
    """A group's `global.nodeGroups` entry. Helm merges maps with the chart's defaults, so the default selector key
    (`qhub.dev/node-group`) is set to "" (which the chart drops) when the config selects nodes by other labels."""
    entry = placement.chart_values()
    if ng.LABEL not in entry["nodeSelector"]:
        entry["nodeSelector"] = {ng.LABEL: "", **entry["nodeSelector"]}  # type: ignore[dict-item]
    return entry


def _jupyterhub(cfg: QHubConfig, deps: tuple[str, ...], chart_dir: Path) -> dict[str, Any]:
    auth = cfg.auth
    members: dict[str, list[str]] = {g: [] for g in auth.groups}
    for user, spec in auth.users.items():
        for group in spec.groups:
            members[group].append(user)
    out: dict[str, Any] = {
        "auth": _auth(cfg),
        "groups": {g: {"gid": spec.gid, "users": sorted(members[g])} for g, spec in auth.groups.items()},
        "cull": _cull(cfg, chart_dir),
        "hub": {"services": {
            svc: {"enabled": bool(getattr(cfg.components, comp)) and (svc in deps)}
            for comp, svc in HUB_SERVICES.items()
        }},
        "singleuser": {"profiles": _lab_profiles(cfg, chart_dir), "gpuGroup": cfg.profiles.gpu_group},
    }
    if cfg.jupyterhub.image:
        out["singleuser"]["image"] = image_parts(cfg.jupyterhub.image)
    return out


def _cull(cfg: QHubConfig, chart_dir: Path) -> dict[str, Any]:
    """The idle culler: the config's timeout, checked every quarter of it (at most as rarely as the chart's own
    period), so a short timeout stops servers soon after it and a long one is not checked more often than needed."""
    timeout = cfg.jupyterhub.idle_culler.timeout_minutes * 60
    every = int((subchart_defaults("jupyterhub", chart_dir).get("cull") or {}).get("every") or timeout)
    return {"enabled": True, "timeout": timeout, "every": min(every, timeout // 4)}


def _auth(cfg: QHubConfig) -> dict[str, Any]:
    auth = cfg.auth
    # allowAll only when the config says so (auth.allow_all); native accounts are approved by an admin instead
    out: dict[str, Any] = {
        "type": AUTH_TYPES[auth.type],
        "adminUsers": sorted(auth.admins),
        "allowedUsers": sorted(auth.users),
        "allowAll": auth.type != "native" and auth.allow_all,
    }
    if auth.type == "native":
        out["native"] = {"openSignup": auth.open_signup}
    elif auth.type == "github":
        name, key = secret_source(cfg, auth.client_secret, ("auth", "client_secret"))
        out["github"] = {"clientId": auth.client_id, "existingSecret": name, "key": key,
                         "allowedOrganizations": list(auth.allowed_organizations)}
    elif auth.type == "oidc":
        name, key = secret_source(cfg, auth.client_secret, ("auth", "client_secret"))
        out["genericOAuth"] = {
            "loginServiceName": auth.login_service_name, "clientId": auth.client_id, "existingSecret": name,
            "key": key, "authorizeUrl": str(auth.authorize_url), "tokenUrl": str(auth.token_url),
            "userdataUrl": str(auth.userdata_url), "usernameClaim": auth.username_claim,
            "scopes": list(auth.scopes), "manageGroups": auth.groups_claim is not None,
            "groupsClaim": auth.groups_claim or "groups", "allowedGroups": list(auth.allowed_groups),
        }
    return out


def _lab_profiles(cfg: QHubConfig, chart_dir: Path) -> dict[str, Any]:
    defaults = (subchart_defaults("jupyterhub", chart_dir).get("singleuser") or {}).get("profiles") or {}
    profiles: dict[str, Any] = {slug: {"enabled": False} for slug in defaults}
    for prof in cfg.profiles.jupyterlab:
        image = image_parts(prof.image) if prof.image else {"registry": "", "repository": "", "tag": ""}
        profiles[prof.name] = {
            "enabled": True, "displayName": prof.display_name, "description": prof.description,
            "default": prof.default, "nodeGroup": prof.node_group,
            "cpu": {"guarantee": quantity_value(prof.cpu.guarantee), "limit": quantity_value(prof.cpu.limit)},
            "memory": {"guarantee": kubespawner_bytes(prof.memory.guarantee),
                       "limit": kubespawner_bytes(prof.memory.limit)},
            "gpus": prof.gpus, "image": image, "groups": list(prof.access.groups),
            "allowAll": prof.access.allow_all,
        }
    return profiles


def _dask_gateway(cfg: QHubConfig, deps: tuple[str, ...], chart_dir: Path) -> dict[str, Any]:
    profiles = cfg.profiles.dask_worker
    default = next((p.name for p in profiles if p.default), profiles[0].name)
    return {"clusters": {
        "profiles": [
            {"name": p.name, "displayName": p.display_name, "cores": p.cores,
             "memory": round(quantity_value(p.memory) / 1024**3, 3), "threads": p.threads,
             "nodeGroup": p.node_group, "gpus": p.gpus,
             # the dask-gateway chart knows no GPU group: the config's rule is applied here
             "groups": p.access.groups_for(p.gpus, cfg.profiles.gpu_group)}
            for p in profiles
        ],
        "defaultProfile": default,
        "environments": _dask_environments(cfg, deps, chart_dir),
        "idleTimeout": {"defaultMinutes": cfg.dask_gateway.idle_timeout_minutes},
        "limits": {"maxWorkers": cfg.dask_gateway.max_workers_per_cluster},
    }}


def _dask_environments(cfg: QHubConfig, deps: tuple[str, ...], chart_dir: Path) -> list[dict[str, str]]:
    """The `environment` choices of Dask clusters: with conda-store on, the image's own environment first (the
    default, so a cluster starts while a build is pending or when an environment lacks Dask), then each config
    environment with `dask: true` at the prefix conda-store builds it under (its global namespace, seen where the
    dask-gateway chart mounts conda-store's folder). No environment to offer: no choice at all."""
    offered = [env.name for env in cfg.environments if env.dask]
    if not (cfg.components.conda_store and "conda-store" in deps and offered):
        return []
    mount = (subchart_defaults("dask-gateway", chart_dir).get("clusters") or {})["condaStore"]["mountPath"]
    namespace = (subchart_defaults("conda-store", chart_dir).get("permissions") or {})["globalNamespace"]
    return [
        {"name": IMAGE_ENVIRONMENT, "displayName": "The Dask image's own environment", "prefix": ""},
        *({"name": name, "displayName": f"{name} (conda-store, {namespace})",
           "prefix": f"{mount.rstrip('/')}/{namespace}/envs/{name}"} for name in offered),
    ]


def _conda_store(cfg: QHubConfig) -> dict[str, Any]:
    envs: dict[str, Any] = {}
    for env in cfg.environments:
        deps = [d if isinstance(d, str) else {"pip": list(d.pip)} for d in env.dependencies]
        envs[env.name] = {"channels": list(env.channels), "dependencies": deps}
    out: dict[str, Any] = {"environments": envs}
    settings = cfg.conda_store
    for key, ref in (("postgresql", settings.postgresql_image), ("redis", settings.redis_image)):
        if ref:
            out[key] = {"image": image_parts(ref)}
    if settings.channel_alias:
        out["build"] = {"channelAlias": settings.channel_alias}
    if settings.mirror_cidrs:
        out["worker"] = {"extraEgress": [{
            "to": [{"ipBlock": {"cidr": cidr}} for cidr in settings.mirror_cidrs],
            "ports": [{"protocol": "TCP", "port": settings.alias_port()}],
        }]}
    return out


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 2.0 -> 2, as Helm stores and returns it
    return value
