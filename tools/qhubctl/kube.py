"""Kubernetes API calls qhubctl makes besides Helm: CRDs, the stored config, workload progress, diagnosis."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml
from urllib3.exceptions import HTTPError

from qhubctl.chart import chart_dir as located_chart
from qhubctl.errors import ClusterError, UserError
from qhubctl.kubeconfig import KUBECONFIG_HINT, check_kubeconfig

if TYPE_CHECKING:
    from kubernetes import client as k8s

FIELD_MANAGER = "qhubctl"
STATE_TYPE = "qhub.dev/applied-config"
APPLY_PATCH = "application/apply-patch+yaml"


@functools.cache
def kubernetes() -> ModuleType:
    """The kubernetes client package, imported on first use without its optional kubernetes_validate hook, whose
    import (jsonschema format checkers) costs about 1.5 s; a later `import kubernetes_validate` works as usual.
    qhubctl's modules take the kubernetes package from here rather than importing it themselves."""
    if "kubernetes" in sys.modules or "kubernetes_validate" in sys.modules:
        return importlib.import_module("kubernetes")
    sys.modules["kubernetes_validate"] = None  # type: ignore[assignment]  # makes its import raise ImportError
    try:
        return importlib.import_module("kubernetes")
    finally:
        del sys.modules["kubernetes_validate"]


def api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> k8s.ApiClient:
    source = "--kubeconfig" if kubeconfig else "KUBECONFIG" if os.environ.get("KUBECONFIG") else "kubeconfig"
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    check_kubeconfig(path, source)
    k8s_config = kubernetes().config
    try:
        return k8s_config.new_client_from_config(config_file=str(path), context=context)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, AttributeError) as exc:
        what = f"context {context!r} of " if context else ""
        raise UserError(f"cannot use {what}kubeconfig {path}: {exc}",
                        hint="`kubectl config get-contexts` lists its contexts (the config's cluster.kube_context "
                             "picks one)" if context else KUBECONFIG_HINT) from None


def _rest(api: k8s.ApiClient, method: str, path: str, *, query: dict[str, Any] | None = None,
          body: Any = None, content_type: str = "application/json", raw: bool = False) -> Any:
    """One REST call on plain JSON: the typed API classes of the kubernetes client import hundreds of model
    modules (about a second of every command's start-up) that qhubctl does not need. None on 404."""
    headers = {"Accept": "application/json", "Content-Type": content_type}
    api_exception = kubernetes().client.exceptions.ApiException
    try:
        method, url, headers, payload, _ = api.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        resp = api.call_api(method, url, header_params=headers, body=payload)
        resp.read()
    except api_exception as exc:
        raise ClusterError(f"cannot reach the Kubernetes API: {exc.reason}", hint="is the cluster up?") from None
    except HTTPError as exc:
        raise ClusterError(f"cannot reach the Kubernetes API: {exc}", hint="is the cluster up?") from None
    if resp.status == 404:
        return None
    if not 200 <= resp.status < 300:
        raise ClusterError(f"Kubernetes API: {resp.status} {resp.reason}: {resp.data.decode(errors='replace')[:400]}")
    data = resp.data.decode()
    return data if raw else json.loads(data or "null")


def _items(api: k8s.ApiClient, path: str, **query: Any) -> list[dict[str, Any]]:
    listed = _rest(api, "GET", path, query=query or None)
    return (listed or {}).get("items") or []


def crd_files(chart_dir: Path | None = None) -> list[Path]:
    chart_dir = chart_dir or located_chart()
    return sorted(chart_dir.glob("charts/*/crds/*.yaml")) + sorted(chart_dir.glob("crds/*.yaml"))


def apply_crds(api: k8s.ApiClient, chart_dir: Path | None = None) -> list[str]:
    """Server-side apply every CRD of the chart (Helm never upgrades crds/). Returns their names."""
    names = []
    for path in crd_files(chart_dir):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            _rest(api, "PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                  query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=doc, content_type=APPLY_PATCH)
            names.append(name)
    return names


PART_OF = {"app.kubernetes.io/part-of": "qhub"}
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


def ensure_namespace(api: k8s.ApiClient, namespace: str, labels: dict[str, str] | None = None) -> None:
    """Create the namespace with `labels` (Pod Security levels). One qhubctl created before gets them too; a
    namespace made by someone else keeps Pod Security labels of its own (never loosened behind their back)."""
    labels = {**PART_OF, **(labels or {})}
    found = _rest(api, "GET", f"/api/v1/namespaces/{namespace}")
    if found is None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}}
        try:
            _rest(api, "POST", "/api/v1/namespaces", body=body)
            return
        except ClusterError as exc:
            if " 409 " not in str(exc):
                raise ClusterError(f"cannot create namespace {namespace}: {exc.message}") from None
            found = _rest(api, "GET", f"/api/v1/namespaces/{namespace}") or {}
    have = (found.get("metadata") or {}).get("labels") or {}
    ours = all(have.get(k) == v for k, v in PART_OF.items())
    if not ours and PSA_ENFORCE in have:
        labels = {k: v for k, v in labels.items() if not k.startswith("pod-security.kubernetes.io/")}
    if any(have.get(k) != v for k, v in labels.items()):
        _rest(api, "PATCH", f"/api/v1/namespaces/{namespace}", body={"metadata": {"labels": labels}},
              content_type="application/merge-patch+json")


def read_secret(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    secret = _rest(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def write_secret(api: k8s.ApiClient, namespace: str, name: str, data: dict[str, str], *, kind: str = "Opaque",
                 labels: dict[str, str] | None = None) -> None:
    """Create or replace a Secret (server-side apply, so repeated writes are cheap and conflict-free)."""
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER, **(labels or {})}},
        "stringData": data,
    }
    _rest(api, "PATCH", f"/api/v1/namespaces/{namespace}/secrets/{name}",
          query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=body, content_type=APPLY_PATCH)


def delete_secret(api: k8s.ApiClient, namespace: str, name: str) -> None:
    _rest(api, "DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    desired: int
    ready: int
    generation: int
    observed: int
    template_hash: str

    @property
    def done(self) -> bool:
        return self.ready >= self.desired and self.observed >= self.generation


def workloads(api: k8s.ApiClient, namespace: str) -> list[Workload]:
    out: list[Workload] = []
    for kind, plural in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"), ("DaemonSet", "daemonsets")):
        for obj in _items(api, f"/apis/apps/v1/namespaces/{namespace}/{plural}"):
            spec, status, meta = obj.get("spec", {}), obj.get("status", {}), obj["metadata"]
            if kind == "DaemonSet":
                desired, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
            else:
                desired, ready = spec.get("replicas", 0), status.get("readyReplicas", 0)
            out.append(Workload(kind, meta["name"], desired or 0, ready or 0, meta.get("generation", 0),
                                status.get("observedGeneration", 0), _template_hash(spec.get("template", {}))))
    return sorted(out, key=lambda w: (w.kind, w.name))


def _template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


WAITING_ERRORS = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError",
                  "InvalidImageName")


def diagnose(api: k8s.ApiClient, namespace: str, limit: int = 15) -> list[str]:
    """Why pods are not ready: unschedulable pods, image pull and crash errors, recent Warning events."""
    reasons: list[str] = []
    for pod in _items(api, f"/api/v1/namespaces/{namespace}/pods"):
        name, status = pod["metadata"]["name"], pod.get("status", {})
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reasons.append(f"pod {name} is Pending: {cond.get('reason')}: {cond.get('message')}")
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in WAITING_ERRORS:
                reasons.append(f"pod {name} container {cs['name']}: {waiting['reason']}: "
                               f"{waiting.get('message') or cs.get('image')}")
    warnings = _items(api, f"/api/v1/namespaces/{namespace}/events", fieldSelector="type=Warning")
    recent = sorted(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    for ev in recent[-limit:]:
        obj = ev.get("involvedObject", {})
        reasons.append(f"event {obj.get('kind')}/{obj.get('name')}: {ev.get('reason')}: {ev.get('message')}")
    return reasons[: limit * 2]


def pvcs(api: k8s.ApiClient, namespace: str, selector: str = "") -> list[str]:
    query = {"labelSelector": selector} if selector else {}
    return sorted(p["metadata"]["name"]
                  for p in _items(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", **query))


def delete_pvcs(api: k8s.ApiClient, namespace: str, selector: str = "") -> list[str]:
    names = pvcs(api, namespace, selector)
    for name in names:
        _rest(api, "DELETE", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
    return names


def events(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    return _items(api, f"/api/v1/namespaces/{namespace}/events")


def pod_logs(api: k8s.ApiClient, namespace: str, tail: int = 2000) -> dict[str, str]:
    """Logs of every container of every pod, as {"<pod>/<container>": text}; errors become the text."""
    out: dict[str, str] = {}
    for pod in _items(api, f"/api/v1/namespaces/{namespace}/pods"):
        name, spec = pod["metadata"]["name"], pod.get("spec", {})
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            try:
                text = _rest(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log",
                             query={"container": container["name"], "tailLines": tail}, raw=True)
            except ClusterError as exc:
                text = f"(no log: {exc.message})"
            out[f"{name}/{container['name']}"] = text or ""
    return out
