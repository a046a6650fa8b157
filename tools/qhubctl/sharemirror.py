"""The shared volume seen from another namespace: a claim is namespaced, so pods of another namespace (the scheduled
files backup's <namespace>-backup, the Dask clusters' <namespace>-dask) mount the shared storage through a second
PersistentVolume with the same source as the one bound to the release's claim, reclaim policy Retain (deleting it
never touches the data), bound to a claim of the same name there.

With storage.type nfs the chart makes the Dask clusters' mirror itself (it knows the NFS export); with storage.type
existing only the cluster knows the volume's source once the release's claim is bound, so qhubctl copies it.
"""

from __future__ import annotations

from typing import Any

from qhubctl import kube
from qhubctl.errors import ClusterError

PV_PATH = "/api/v1/persistentvolumes"


def claim_path(namespace: str, claim: str) -> str:
    return f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of a mirror's PersistentVolume or PersistentVolumeClaim."""
    meta = obj["metadata"]
    if obj["kind"] == "PersistentVolume":
        return f"{PV_PATH}/{meta['name']}"
    return claim_path(meta["namespace"], meta["name"])


def mirror(volume: dict[str, Any], name: str, namespace: str, claim: str,
           labels: dict[str, str]) -> list[dict[str, Any]]:
    """A PersistentVolume `name` with `volume`'s source, reserved for `claim` in `namespace`, and that claim."""
    spec = {k: v for k, v in volume["spec"].items()
            if k not in ("claimRef", "storageClassName", "persistentVolumeReclaimPolicy")}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels},
          "spec": {**spec, "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                   "claimRef": {"namespace": namespace, "name": claim}}}
    pvc_spec = {"accessModes": spec["accessModes"], "storageClassName": "", "volumeName": name,
                "resources": {"requests": {"storage": spec["capacity"]["storage"]}}}
    if spec.get("volumeMode"):
        pvc_spec["volumeMode"] = spec["volumeMode"]
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": claim, "namespace": namespace, "labels": labels}, "spec": pvc_spec}
    return [pv, pvc]


def of_claim(api: Any, source: str, claim: str, name: str, namespace: str, labels: dict[str, str],
             needed_by: str) -> list[dict[str, Any]]:
    """The mirror of the volume bound to `source`/`claim`, for the claim of the same name in `namespace`; a clear
    error while that claim is not bound yet (`needed_by`: who has nothing to mount then)."""
    found = kube._rest(api, "GET", claim_path(source, claim)) or {}
    bound = (found.get("spec") or {}).get("volumeName")
    volume = kube._rest(api, "GET", f"{PV_PATH}/{bound}") if bound else None
    if not volume:
        raise ClusterError(f"the shared volume {source}/{claim} is not bound to a PersistentVolume yet, so "
                           f"{needed_by} has nothing to mount",
                           hint="`qhubctl status` shows the platform; deploy again once the volume is bound")
    return mirror(volume, name, namespace, claim, labels)


def apply(api: Any, objects: list[dict[str, Any]]) -> None:
    """Create or update the mirror (server-side apply; a bound claim and volume keep their binding)."""
    for obj in objects:
        kube._rest(api, "PATCH", object_path(obj),
                   query={"fieldManager": kube.FIELD_MANAGER, "force": "true"}, body=obj,
                   content_type=kube.APPLY_PATCH)


def remove(api: Any, name: str, namespace: str, claim: str) -> bool:
    """Delete the claim in `namespace` and the volume `name` (never the data); whether either was there."""
    found = False
    for path in (claim_path(namespace, claim), f"{PV_PATH}/{name}"):
        if kube._rest(api, "GET", path) is not None:
            kube._rest(api, "DELETE", path, query={"propagationPolicy": "Background"})
            found = True
    return found
