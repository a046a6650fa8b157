"""A conda channel served inside the local cluster, for journeys whose builds must not leave it: the channel's files
(written by tests/images/localchannel.py) in a ConfigMap, served by `python3 -m http.server` in the hub image (a pod
on the real node that Pod Security `restricted` admits) behind a Service, in a namespace of its own."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import qhubkit

from nodekit import restricted_pod, wait_for
from qhubctl import realnode
from qhubctl.localcluster import LocalCluster

PORT = 8000
NAME = "conda-channel"
CONFIGMAP_LIMIT = 1024 * 1024  # bytes: what one ConfigMap may hold


def _configmap(ns: str, root: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Every file under `root` as binaryData, and the volume items that put each back at its path."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    data = {str(p.relative_to(root)).replace("/", "__"): base64.b64encode(p.read_bytes()).decode() for p in files}
    size = sum(p.stat().st_size for p in files)
    assert size < CONFIGMAP_LIMIT * 3 // 4, f"the channel's {size} bytes do not fit one ConfigMap"
    items = [{"key": key, "path": key.replace("__", "/")} for key in data]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": ns},
            "binaryData": data}, items


def _objects(ns: str, root: Path) -> list[dict[str, Any]]:
    configmap, items = _configmap(ns, root)
    labels = {"app.kubernetes.io/name": NAME}
    pod = restricted_pod(NAME, ns, ["python3", "-m", "http.server", str(PORT), "--directory", "/channels"],
                         image=f"{realnode.REGISTRY}/qhub/jupyterhub:{qhubkit.app_version()}", labels=labels,
                         volumes=[{"name": "channels", "configMap": {"name": NAME, "items": items}}],
                         mounts=[{"name": "channels", "mountPath": "/channels", "readOnly": True}],
                         ports=[{"containerPort": PORT, "name": "http"}],
                         readiness={"tcpSocket": {"port": PORT}, "periodSeconds": 1})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": ns},
               "spec": {"selector": labels, "ports": [{"port": PORT, "targetPort": PORT, "name": "http"}]}}
    return [configmap, pod, service]


def serve(cluster: LocalCluster, ns: str, root: Path) -> str:
    """Serve the channels under `root` (e.g. root/conda-forge/linux-64/repodata.json) in namespace `ns` (made
    afresh) and wait until the server answers; the channel alias URL, e.g. http://conda-channel.<ns>.svc...:8000/.
    The hub image must already be on the node's registry (qhubkit.push_images)."""
    remove(cluster, ns)
    qhubkit.wait_namespace_gone(cluster, ns)
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": _objects(ns, root)}))
    wait_for(f"the channel server in {ns} to be Ready", lambda: _ready(cluster, ns), timeout=120, interval=1)
    return alias(ns)


def alias(ns: str) -> str:
    """The channel alias URL of the channels `serve` serves in `ns`."""
    return f"http://{NAME}.{ns}.svc.{realnode.CLUSTER_DOMAIN}:{PORT}/"


def _ready(cluster: LocalCluster, ns: str) -> bool:
    pod = json.loads(cluster.kubectl("get", "pod", NAME, "-n", ns, "-o", "json"))
    phase = pod["status"].get("phase")
    assert phase not in ("Failed", "Succeeded"), f"the channel server exited: {pod['status']}"
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def remove(cluster: LocalCluster, ns: str) -> None:
    cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false")
