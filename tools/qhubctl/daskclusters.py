"""The namespace of users' Dask clusters, <namespace>-dask (chart global.daskClusters).

The chart creates it (Pod Security restricted) and runs each cluster's DaskCluster object, scheduler and worker pods,
Services, Traefik routes and credential Secrets there, so that none of the gateway's ServiceAccounts needs any right
on the Secrets of the release namespace. qhubctl's part:

- the chart values (`values`): the namespace, one name for qhubctl and the chart;
- storage.type existing: Dask pods mount homes and environments through the shared claim, which is namespaced; after
  each deploy qhubctl binds the same storage in the clusters' namespace (sharemirror), and removes it on destroy or
  when the gateway is turned off (with storage.type nfs the chart does it, knowing the NFS export);
- an upgrade from the single-namespace layout (`stop_old_clusters`): the new gateway watches only the clusters'
  namespace, so clusters left in the release namespace would run on unmanaged; they are stopped before the upgrade
  (deleting a DaskCluster takes its pods, Services, routes and Secrets along) and the deploy names them.
"""

from __future__ import annotations

from typing import Any

from qhubctl import kube, sharemirror
from qhubctl.config.model import QHubConfig

DASKCLUSTERS = "/apis/gateway.dask.org/v1alpha1/namespaces/{ns}/daskclusters"


def namespace(cfg: QHubConfig) -> str:
    """The clusters' namespace (the chart's default for a release namespace, set explicitly by qhubctl)."""
    return f"{cfg.namespace}-dask"


def values(cfg: QHubConfig, enabled: bool) -> dict[str, Any]:
    """The chart's global.daskClusters."""
    return {"enabled": enabled, "namespace": namespace(cfg), "createNamespace": True}


def claim(cfg: QHubConfig) -> str:
    """The shared claim, of the same name in both namespaces (chart qhub.sharedPvcName)."""
    return f"{cfg.release_name}-shared"


def mirror_name(cfg: QHubConfig) -> str:
    """The shared storage's second PersistentVolume (cluster-wide name; the chart's nfs.daskPvName)."""
    return f"{namespace(cfg)}-{claim(cfg)}"


def instance(cfg: QHubConfig) -> str:
    """The gateway's instance label on its DaskClusters (chart dask-gateway.instance)."""
    return f"{cfg.release_name}-dask-gateway"


def sync(api: Any, cfg: QHubConfig) -> list[str]:
    """After a deploy: with storage.type existing and the gateway on, the shared storage bound in the clusters'
    namespace; otherwise no mirror of qhubctl's left. What changed, in words."""
    wanted = cfg.storage.type == "existing" and cfg.components.dask_gateway
    if not wanted:
        gone = cfg.storage.type == "existing" and sharemirror.remove(api, mirror_name(cfg), namespace(cfg), claim(cfg))
        return [f"Dask clusters' shared volume {mirror_name(cfg)} removed"] if gone else []
    labels = {"app.kubernetes.io/part-of": "qhub", "app.kubernetes.io/instance": cfg.release_name,
              "app.kubernetes.io/component": "dask-shared", "app.kubernetes.io/managed-by": kube.FIELD_MANAGER}
    objects = sharemirror.of_claim(api, cfg.namespace, claim(cfg), mirror_name(cfg), namespace(cfg), labels,
                                   "a Dask cluster")
    if _up_to_date(api, objects):
        return []
    sharemirror.apply(api, objects)
    return [f"Dask clusters mount the shared volume in {namespace(cfg)} through {mirror_name(cfg)}"]


def _up_to_date(api: Any, objects: list[dict[str, Any]]) -> bool:
    pv = kube._rest(api, "GET", f"{sharemirror.PV_PATH}/{objects[0]['metadata']['name']}") or {}
    return bool(pv) and all(pv["spec"].get(k) == v for k, v in objects[0]["spec"].items())


def remove(api: Any, cfg: QHubConfig) -> None:
    """On destroy: qhubctl's mirror (the chart's namespace goes with the release, the volume stays otherwise)."""
    if cfg.storage.type == "existing":
        sharemirror.remove(api, mirror_name(cfg), namespace(cfg), claim(cfg))


def stop_old_clusters(api: Any, cfg: QHubConfig) -> list[str]:
    """Before a deploy: delete the gateway's DaskClusters still in the release namespace (the layout before the
    clusters' namespace); the owners of those that were running, as `user/cluster`."""
    # none (or no DaskCluster kind yet: a first install) lists as nothing
    found = kube._items(api, DASKCLUSTERS.format(ns=cfg.namespace),
                        labelSelector=f"gateway.dask.org/instance={instance(cfg)}")
    stopped = []
    for obj in found:
        name = obj["metadata"]["name"]
        kube._rest(api, "DELETE", f"{DASKCLUSTERS.format(ns=cfg.namespace)}/{name}",
                   query={"propagationPolicy": "Background"})
        if (obj.get("status") or {}).get("phase") not in ("Stopped", "Failed"):
            stopped.append(f"{obj.get('spec', {}).get('username', '?')}/{name}")
    return stopped
