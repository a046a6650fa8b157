# Dask-Gateway configuration for QHub, loaded by both the API server (`dask-gateway-server`) and the controller
# (`dask-gateway-server kube-controller`). Every setting comes from gateway.json, rendered by the chart next to
# this file (or named by $QHUB_GATEWAY_CONFIG); no secret is in either: the JupyterHub token arrives as the
# JUPYTERHUB_API_TOKEN environment variable from the hub's Secret.
# `c` is the traitlets config object the dask-gateway-server application passes in.
from __future__ import annotations

import json
import os
from typing import Any

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.kubernetes import KubeBackend
from dask_gateway_server.backends.kubernetes import backend as kube_backend_module
from dask_gateway_server.backends.kubernetes import controller as kube_controller_module
from dask_gateway_server.backends.kubernetes.utils import Informer
from dask_gateway_server.options import Integer, Options, Select

GIB = 2**30


def _config_path() -> str:
    explicit = os.environ.get("QHUB_GATEWAY_CONFIG")
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(globals().get("__file__", "/etc/dask-gateway/dask_gateway_config.py")))
    return os.path.join(here, "gateway.json")


with open(_config_path(), encoding="utf-8") as _f:
    CFG: dict[str, Any] = json.load(_f)

CLUSTERS: dict[str, Any] = CFG["clusters"]
LIMITS: dict[str, Any] = CLUSTERS["limits"]

# --- API server --------------------------------------------------------------------------------------------
c.DaskGateway.address = ":8000"
c.DaskGateway.log_level = CFG["logLevel"]

# JupyterHub authentication: the gateway is the hub service CFG["hub"]["serviceName"]; user tokens are checked
# against the hub API and must carry access:services!service=<name>.
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = CFG["hub"]["apiUrl"]
c.JupyterHubAuthenticator.jupyterhub_service_name = CFG["hub"]["serviceName"]


# Each user's uid and group gids, read from the hub's identities record when that user starts a cluster; the
# options handler (synchronous, called inside start_cluster) takes them from here.
_IDENTITIES: dict[str, dict[str, Any]] = {}


def identity_of(record: dict[str, Any], user: Any) -> dict[str, Any]:
    """uid (also the primary gid) and supplementary gids of `user` from the hub's identities.json."""
    uid = (record.get("users") or {}).get(user.name)
    if uid is None:
        raise PublicException(f"{user.name} has no uid on the platform yet: start your JupyterLab server once, "
                              "then start the Dask cluster again")
    gids = record.get("groups") or {}
    return {"uid": int(uid), "gids": sorted(int(gids[g]) for g in _user_groups(user) if g in gids)}


class QHubKubeBackend(KubeBackend):
    """KubeBackend with a per-user cap on the number of running clusters, running each user's schedulers and
    workers as that user's uid with their groups' gids."""

    async def _identity(self, user):  # type: ignore[no-untyped-def]
        ids = CFG["identities"]
        try:
            found = await self.core_client.read_namespaced_config_map(ids["configMap"], CFG["releaseNamespace"])
        except Exception as exc:  # noqa: BLE001 - any failure: no cluster, and the reason logged
            self.log.error("cannot read the identities record %s: %s", ids["configMap"], exc)
            raise PublicException("the platform's user ids cannot be read right now; try again in a minute") from None
        return identity_of(json.loads((found.data or {}).get(ids["key"]) or "{}"), user)

    async def start_cluster(self, user, cluster_options):  # type: ignore[no-untyped-def]
        _IDENTITIES[user.name] = await self._identity(user)
        cap = _user_limits(user).get("maxClusters")
        if cap is not None:
            active = await self.list_clusters(username=user.name)
            if len(active) >= cap:
                raise PublicException(
                    f"{user.name} already has {len(active)} running Dask cluster(s), the most allowed is {cap}; "
                    "stop one (cluster.shutdown()) before starting another"
                )
        return await super().start_cluster(user, cluster_options)


c.DaskGateway.backend_class = QHubKubeBackend

# --- Shared by the backend and the controller -------------------------------------------------------------
for _cls in ("KubeBackend", "KubeController"):
    c[_cls].gateway_instance = CFG["instance"]
    c[_cls].api_url = CFG["apiUrl"]
    c[_cls].common_labels = CFG["commonLabels"]

# Clusters (DaskCluster objects, their pods, Services, routes and credential Secrets) live in a namespace of their
# own (the chart's global.daskClusters), apart from the release namespace and its Secrets; the API server reads
# only the identities ConfigMap there (CFG["releaseNamespace"]).
c.KubeClusterConfig.namespace = CFG["namespace"]

# Watch the clusters' namespace only. dask-gateway's informers list DaskClusters, pods and endpoints in every
# namespace, which would need a ClusterRole over all of the cluster's pods; every object they look for is in the
# clusters' namespace (KubeClusterConfig.namespace), so each list and watch is swapped for its namespaced twin and
# the chart's RBAC is a Role there.
NAMESPACED_LISTS = {
    "list_cluster_custom_object": "list_namespaced_custom_object",
    "list_pod_for_all_namespaces": "list_namespaced_pod",
    "list_endpoints_for_all_namespaces": "list_namespaced_endpoints",
}


class NamespacedInformer(Informer):
    """dask-gateway's Informer, listing and watching in CFG["namespace"] only."""

    def __init__(self, **kwargs: Any) -> None:
        method = kwargs.get("method", "")
        if method not in NAMESPACED_LISTS:
            raise RuntimeError(f"dask-gateway-server asks for {method!r}: QHub's namespaced informers do not know "
                               "it (a newer dask-gateway-server?); update NAMESPACED_LISTS")
        kwargs["method"] = NAMESPACED_LISTS[method]
        kwargs["method_kwargs"] = {**kwargs.get("method_kwargs", {}), "namespace": CFG["namespace"]}
        super().__init__(**kwargs)


for _module in (kube_backend_module, kube_controller_module):
    _module.Informer = NamespacedInformer

# --- Controller ----------------------------------------------------------------------------------------------
c.KubeController.address = ":8000"
c.KubeController.log_level = CFG["logLevel"]
c.KubeController.proxy_prefix = CFG["prefix"]
c.KubeController.proxy_web_entrypoint = "web"
c.KubeController.proxy_tcp_entrypoint = "tcp"
# Dashboards: strip /<prefix>/clusters/<name> before the scheduler sees the path (middleware from the proxy's
# file provider).
c.KubeController.proxy_web_middlewares = [{"name": CFG["proxy"]["dashboardMiddleware"]}]
c.KubeController.completed_cluster_max_age = CFG["controller"]["completedClusterMaxAge"]
c.KubeController.completed_cluster_cleanup_period = CFG["controller"]["completedClusterCleanupPeriod"]


# --- What a user may ask for ---------------------------------------------------------------------------------
def _user_groups(user: Any) -> set[str]:
    return set(getattr(user, "groups", None) or [])


def _user_limits(user: Any) -> dict[str, Any]:
    """Limits for this user: the defaults, raised by every group override the user belongs to."""
    limits = {k: LIMITS[k] for k in ("maxCores", "maxMemory", "maxWorkers", "maxClusters")}
    for group in sorted(_user_groups(user)):
        for key, value in (LIMITS.get("groups") or {}).get(group, {}).items():
            limits[key] = value if limits.get(key) is None else max(limits[key], value)
    return limits


def _profiles_for(user: Any) -> list[dict[str, Any]]:
    groups = _user_groups(user)
    return [p for p in CLUSTERS["profiles"] if not p.get("groups") or groups & set(p["groups"])]


def _security_context(identity: dict[str, Any]) -> dict[str, Any]:
    """The user's uid as user and primary group, their groups' gids as supplementary groups; no fsGroup (the
    kubelet would re-group the shared volume)."""
    base = {k: v for k, v in CFG["podSecurityContext"].items() if k not in ("fsGroup", "runAsUser", "runAsGroup")}
    return {**base, "runAsUser": identity["uid"], "runAsGroup": identity["uid"],
            "supplementalGroups": identity["gids"]}


def _home_init(image: str, user: Any, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's home init container (qhub.homeInitContainer): the user's home exists, as theirs, before the
    scheduler or worker mounts it."""
    if not CLUSTERS["homeMount"]:
        return []
    init = json.loads(json.dumps(CLUSTERS["homeInit"]))
    init["image"] = image
    init["env"] = [{"name": "QHUB_HOME_NAME", "value": user.name}]
    init["securityContext"].update({"runAsUser": identity["uid"], "runAsGroup": identity["uid"]})
    for mount in init["volumeMounts"]:
        mount["name"] = "shared"
    return [init]


def _pod_config(placement: dict[str, Any], volumes: list[dict[str, Any]], identity: dict[str, Any],
                init: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": _security_context(identity),
        "nodeSelector": placement.get("nodeSelector") or {},
        "tolerations": placement.get("tolerations") or [],
        "volumes": volumes,
        "enableServiceLinks": False,
    }
    if init:
        spec["initContainers"] = init
    if CLUSTERS.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": n} for n in CLUSTERS["imagePullSecrets"]]
    return spec


def _mounts(user: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": CLUSTERS["tmpSize"]}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    shared = CLUSTERS.get("sharedPvc")
    if shared and (CLUSTERS["homeMount"] or CLUSTERS["condaStore"]["enabled"]):
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": shared}})
        if CLUSTERS["homeMount"]:
            mounts.append({"name": "shared", "mountPath": f"/home/{user.name}", "subPath": f"home/{user.name}"})
        if CLUSTERS["condaStore"]["enabled"]:
            mounts.append(
                {
                    "name": "shared",
                    "mountPath": CLUSTERS["condaStore"]["mountPath"],
                    "subPath": CLUSTERS["condaStore"]["subPath"],
                    "readOnly": True,
                }
            )
    return volumes, mounts


def _container(mounts: list[dict[str, Any]], gpus: int, env_prefix: str, user: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"securityContext": CFG["containerSecurityContext"], "volumeMounts": mounts}
    env = [{"name": "HOME", "value": f"/home/{user.name}" if CLUSTERS["homeMount"] else "/tmp"}]
    if env_prefix:
        env.append({"name": "PATH", "value": f"{env_prefix}/bin:/usr/local/bin:/usr/bin:/bin"})
    container["env"] = env
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}}
    return container


def _handler(options: Any, user: Any) -> dict[str, Any]:
    profiles = {p["name"]: p for p in _profiles_for(user)}
    profile = profiles[options.profile]
    envs = {e["name"]: e for e in CLUSTERS["environments"]}
    env = envs.get(getattr(options, "environment", ""), {"prefix": ""})
    prefix = env.get("prefix", "")
    limits = _user_limits(user)
    sched = CLUSTERS["scheduler"]
    volumes, mounts = _mounts(user)
    labels = CLUSTERS["podLabels"]
    image = CLUSTERS["gpuImage"] if profile.get("gpus") else CLUSTERS["image"]
    identity = _IDENTITIES[user.name]
    init = _home_init(image, user, identity)
    config: dict[str, Any] = {
        "image": image,
        "image_pull_policy": CLUSTERS["imagePullPolicy"],
        "worker_cores": profile["cores"],
        "worker_cores_limit": profile["cores"],
        "worker_memory": int(profile["memory"] * GIB),
        "worker_memory_limit": int(profile["memory"] * GIB),
        "worker_threads": profile["threads"],
        "scheduler_cores": sched["cores"]["request"],
        "scheduler_cores_limit": sched["cores"]["limit"],
        "scheduler_memory": int(sched["memory"]["request"] * GIB),
        "scheduler_memory_limit": int(sched["memory"]["limit"] * GIB),
        "idle_timeout": int(options.idle_timeout_minutes) * 60,
        "adaptive_period": CLUSTERS["adaptivePeriod"],
        "cluster_max_cores": limits["maxCores"],
        "cluster_max_memory": int(limits["maxMemory"] * GIB),
        "cluster_max_workers": limits["maxWorkers"],
        "worker_extra_pod_labels": labels,
        "scheduler_extra_pod_labels": labels,
        "worker_extra_pod_config": _pod_config(profile["placement"], volumes, identity, init),
        "scheduler_extra_pod_config": _pod_config(sched["placement"], volumes, identity, init),
        "worker_extra_container_config": _container(mounts, int(profile.get("gpus") or 0), prefix, user),
        "scheduler_extra_container_config": _container(mounts, 0, prefix, user),
        "environment": {"QHUB_DASK_PROFILE": profile["name"], "QHUB_DASK_ENVIRONMENT": env.get("name", "")},
    }
    if prefix:
        config["scheduler_cmd"] = f"{prefix}/bin/dask-scheduler"
        config["worker_cmd"] = f"{prefix}/bin/dask-worker"
    return config


def cluster_options(user: Any) -> Options:
    profiles = _profiles_for(user)
    if not profiles:
        raise PublicException(f"no Dask worker profile is open to {user.name}")
    names = [p["name"] for p in profiles]
    default = CLUSTERS["defaultProfile"] if CLUSTERS["defaultProfile"] in names else names[0]
    idle = CLUSTERS["idleTimeout"]
    fields: list[Any] = [
        Select(
            "profile",
            names,
            default=default,
            label="Worker profile: " + "; ".join(f"{p['name']} = {p['displayName']}" for p in profiles),
        ),
        Integer(
            "idle_timeout_minutes",
            default=idle["defaultMinutes"],
            min=1,
            max=idle["maxMinutes"],
            label="Stop the cluster after this many idle minutes",
        ),
    ]
    if CLUSTERS["environments"]:
        env_names = [e["name"] for e in CLUSTERS["environments"]]
        fields.append(Select("environment", env_names, default=env_names[0], label="Software environment"))
    return Options(*fields, handler=_handler)


c.Backend.cluster_options = cluster_options
