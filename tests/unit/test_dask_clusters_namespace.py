"""qhubctl's part in the Dask clusters' namespace (daskclusters.py): the chart values, the shared storage bound there
with storage.type existing (a second volume with the same source, reclaim Retain, removed again when the gateway is
off and on destroy), and the clusters an upgrade from the single-namespace layout stops, named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qhubctl import daskclusters, kube
from qhubctl.config.loader import load_config
from qhubctl.errors import ClusterError
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHARED = {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"], "hostPath": {"path": "/srv/shared"},
          "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
          "claimRef": {"namespace": "qhub", "name": "qhub-shared"}}


class Api:
    """The objects qhubctl reads, and the calls it makes."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str]] = []

    def rest(self, api: Any, method: str, path: str, *, query: Any = None, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path))
        if method == "PATCH":
            self.objects[path] = body
        if method == "DELETE":
            self.objects.pop(path, None)
        return self.objects.get(path) if method == "GET" else {}


def existing(**components: bool) -> Any:
    cfg = load_config(CONFIGS / "existing.ok.backup-schedule.yaml", environ={})
    return cfg.model_copy(update={"components": cfg.components.model_copy(update=components)})


def bound(cfg: Any) -> dict[str, Any]:
    return {f"/api/v1/namespaces/{cfg.namespace}/persistentvolumeclaims/{cfg.release_name}-shared":
            {"spec": {"volumeName": "pvc-1"}}, "/api/v1/persistentvolumes/pvc-1": {"spec": SHARED}}


def test_qhubctl_names_the_namespace_the_chart_uses() -> None:
    cfg = existing()
    values = chart_values(cfg)["global"]["daskClusters"]
    assert values == {"enabled": True, "namespace": f"{cfg.namespace}-dask", "createNamespace": True}
    assert chart_values(existing(dask_gateway=False))["global"]["daskClusters"]["enabled"] is False


def test_existing_storage_is_bound_in_the_clusters_namespace_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = existing()
    api = Api(bound(cfg))
    monkeypatch.setattr(kube, "_rest", api.rest)
    (said,) = daskclusters.sync(None, cfg)
    ns, pv_name = f"{cfg.namespace}-dask", f"{cfg.namespace}-dask-{cfg.release_name}-shared"
    assert ns in said and pv_name in said
    pv = api.objects[f"/api/v1/persistentvolumes/{pv_name}"]
    assert pv["spec"]["hostPath"] == SHARED["hostPath"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain", "deleting the mirror never deletes the data"
    assert pv["spec"]["claimRef"] == {"namespace": ns, "name": f"{cfg.release_name}-shared"}
    claim = api.objects[f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{cfg.release_name}-shared"]
    assert claim["spec"]["volumeName"] == pv_name and claim["spec"]["storageClassName"] == ""
    assert daskclusters.sync(None, cfg) == [], "an unchanged mirror is left alone"

    off = existing(dask_gateway=False)
    assert daskclusters.sync(None, off) == [f"Dask clusters' shared volume {pv_name} removed"]
    assert f"/api/v1/persistentvolumes/{pv_name}" not in api.objects
    assert f"/api/v1/persistentvolumes/pvc-1" in api.objects, "the release's own volume stays"


def test_an_unbound_shared_volume_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "_rest", Api({}).rest)
    with pytest.raises(ClusterError, match="is not bound to a PersistentVolume yet, so a Dask cluster has nothing"):
        daskclusters.sync(None, existing())


def test_nfs_storage_leaves_the_mirror_to_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(CONFIGS / "local.ok.minimal.yaml", environ={})
    cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"type": "nfs"})})
    api = Api({})
    monkeypatch.setattr(kube, "_rest", api.rest)
    assert daskclusters.sync(None, cfg) == [] and api.calls == []


def test_clusters_left_in_the_release_namespace_are_stopped_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = existing()
    path = f"/apis/gateway.dask.org/v1alpha1/namespaces/{cfg.namespace}/daskclusters"
    running = {"metadata": {"name": "abc"}, "spec": {"username": "alice"}, "status": {"phase": "Running"}}
    stopped = {"metadata": {"name": "old"}, "spec": {"username": "bob"}, "status": {"phase": "Stopped"}}
    api = Api({path: {"items": [running, stopped]}})
    monkeypatch.setattr(kube, "_rest", api.rest)
    assert daskclusters.stop_old_clusters(None, cfg) == ["alice/abc"]
    assert ("DELETE", f"{path}/abc") in api.calls and ("DELETE", f"{path}/old") in api.calls
    monkeypatch.setattr(kube, "_rest", Api({}).rest)
    assert daskclusters.stop_old_clusters(None, cfg) == [], "a first install (no DaskCluster kind yet)"


def test_destroy_removes_qhubctls_volume_of_the_clusters_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's namespace goes with the release; the second volume qhubctl made goes with destroy (the data
    stays: reclaim Retain)."""
    from qhubctl.deploy import destroy

    cfg = existing()
    api = Api(bound(cfg))
    monkeypatch.setattr(kube, "_rest", api.rest)
    daskclusters.sync(None, cfg)
    pv = f"/api/v1/persistentvolumes/{cfg.namespace}-dask-{cfg.release_name}-shared"
    assert pv in api.objects

    class Helm:
        async def deployed(self, release: str, namespace: str) -> object:
            return object()

        async def uninstall(self, release: str, namespace: str) -> None:
            api.calls.append(("UNINSTALL", release))

    monkeypatch.setattr(kube, "pvcs", lambda *a, **k: [])
    monkeypatch.setattr(kube, "delete_secret", lambda *a, **k: None)
    destroy(cfg, Helm(), None)  # type: ignore[arg-type]
    assert pv not in api.objects and "/api/v1/persistentvolumes/pvc-1" in api.objects
    assert api.calls.index(("UNINSTALL", cfg.release_name)) < api.calls.index(("DELETE", pv))
