"""Kubernetes API calls qhubctl makes besides Helm: CRDs, the stored config, workload progress, diagnosis."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from urllib3.exceptions import HTTPError


def _import_kubernetes() -> None:
    """Import the kubernetes client without its optional kubernetes_validate hook, whose import (jsonschema format
    checkers) costs about 1.5 s of every command's start-up. Later imports of kubernetes_validate work as usual."""
    import sys

    if "kubernetes" in sys.modules or "kubernetes_validate" in sys.modules:
        return
    sys.modules["kubernetes_validate"] = None  # type: ignore[assignment]  # makes its import raise ImportError
    try:
        import kubernetes  # noqa: F401
    finally:
        del sys.modules["kubernetes_validate"]


_import_kubernetes()
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from qhubctl.errors import ClusterError
from qhubctl.values import CHART_DIR

FIELD_MANAGER = "qhubctl"
STATE_TYPE = "qhub.dev/applied-config"


def api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> k8s.ApiClient:
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        return k8s_config.new_client_from_config(config_file=str(path), context=context)
    except (k8s_config.ConfigException, FileNotFoundError, OSError) as exc:
        raise ClusterError(f"cannot load kubeconfig {path}: {exc}",
                           hint="set KUBECONFIG or `kubeconfig`/`kube_context` for this cluster") from None


def _api(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"Kubernetes API: {exc.status} {exc.reason}: {(exc.body or '')[:400]}") from None
    except HTTPError as exc:
        raise ClusterError(f"cannot reach the Kubernetes API: {exc}", hint="is the cluster up?") from None


def crd_files(chart_dir: Path = CHART_DIR) -> list[Path]:
    return sorted(chart_dir.glob("charts/*/crds/*.yaml")) + sorted(chart_dir.glob("crds/*.yaml"))


def apply_crds(api: k8s.ApiClient, chart_dir: Path = CHART_DIR) -> list[str]:
    """Server-side apply every CRD of the chart (Helm never upgrades crds/). Returns their names."""
    ext = k8s.ApiextensionsV1Api(api)
    names = []
    for path in crd_files(chart_dir):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            _api(ext.patch_custom_resource_definition, name, doc, field_manager=FIELD_MANAGER, force=True,
                 _content_type="application/apply-patch+yaml")
            names.append(name)
    return names


def ensure_namespace(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    if _api(core.read_namespace, namespace) is None:
        body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace, labels={"app.kubernetes.io/part-of": "qhub"}))
        try:
            core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise ClusterError(f"cannot create namespace {namespace}: {exc.reason}") from None


def read_secret(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    secret = _api(k8s.CoreV1Api(api).read_namespaced_secret, name, namespace)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def write_secret(api: k8s.ApiClient, namespace: str, name: str, data: dict[str, str], *, kind: str = "Opaque",
                 labels: dict[str, str] | None = None) -> None:
    """Create or replace a Secret (server-side apply, so repeated writes are cheap and conflict-free)."""
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER, **(labels or {})}},
        "stringData": data,
    }
    _api(k8s.CoreV1Api(api).patch_namespaced_secret, name, namespace, body, field_manager=FIELD_MANAGER, force=True,
         _content_type="application/apply-patch+yaml")


def delete_secret(api: k8s.ApiClient, namespace: str, name: str) -> None:
    _api(k8s.CoreV1Api(api).delete_namespaced_secret, name, namespace)


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
    apps = k8s.AppsV1Api(api)
    out: list[Workload] = []
    for kind, lister in (("Deployment", apps.list_namespaced_deployment),
                         ("StatefulSet", apps.list_namespaced_stateful_set)):
        items = _api(lister, namespace)
        for obj in items.items if items else []:
            status = obj.status
            out.append(Workload(
                kind, obj.metadata.name, obj.spec.replicas or 0, status.ready_replicas or 0,
                obj.metadata.generation or 0, status.observed_generation or 0,
                _template_hash(obj.spec.template),
            ))
    items = _api(apps.list_namespaced_daemon_set, namespace)
    for obj in items.items if items else []:
        st = obj.status
        out.append(Workload("DaemonSet", obj.metadata.name, st.desired_number_scheduled or 0, st.number_ready or 0,
                            obj.metadata.generation or 0, st.observed_generation or 0,
                            _template_hash(obj.spec.template)))
    return sorted(out, key=lambda w: (w.kind, w.name))


def _template_hash(template: Any) -> str:
    import hashlib
    import json

    data = k8s.ApiClient().sanitize_for_serialization(template)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def diagnose(api: k8s.ApiClient, namespace: str, limit: int = 15) -> list[str]:
    """Why pods are not ready: unschedulable pods, image pull and crash errors, recent Warning events."""
    core = k8s.CoreV1Api(api)
    reasons: list[str] = []
    pods = _api(core.list_namespaced_pod, namespace)
    for pod in pods.items if pods else []:
        name = pod.metadata.name
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                reasons.append(f"pod {name} is Pending: {cond.reason}: {cond.message}")
        for cs in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff",
                                              "CreateContainerConfigError", "InvalidImageName"):
                reasons.append(f"pod {name} container {cs.name}: {waiting.reason}: {waiting.message or cs.image}")
    events = _api(core.list_namespaced_event, namespace, field_selector="type=Warning")
    recent = sorted(events.items if events else [], key=lambda e: str(e.last_timestamp or e.event_time or ""))
    for ev in recent[-limit:]:
        obj = ev.involved_object
        reasons.append(f"event {obj.kind}/{obj.name}: {ev.reason}: {ev.message}")
    return reasons[: limit * 2]


def pvcs(api: k8s.ApiClient, namespace: str) -> list[str]:
    items = _api(k8s.CoreV1Api(api).list_namespaced_persistent_volume_claim, namespace)
    return sorted(p.metadata.name for p in (items.items if items else []))


def delete_pvcs(api: k8s.ApiClient, namespace: str) -> list[str]:
    names = pvcs(api, namespace)
    for name in names:
        _api(k8s.CoreV1Api(api).delete_namespaced_persistent_volume_claim, name, namespace)
    return names


def events(api: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items = _api(k8s.CoreV1Api(api).list_namespaced_event, namespace)
    return [api.sanitize_for_serialization(e) for e in (items.items if items else [])]


def pod_logs(api: k8s.ApiClient, namespace: str, tail: int = 2000) -> dict[str, str]:
    """Logs of every container of every pod, as {"<pod>/<container>": text}; errors become the text."""
    core = k8s.CoreV1Api(api)
    out: dict[str, str] = {}
    pods = _api(core.list_namespaced_pod, namespace)
    for pod in pods.items if pods else []:
        for container in pod.spec.containers + (pod.spec.init_containers or []):
            try:
                text = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container.name,
                                                    tail_lines=tail)
            except (ApiException, HTTPError) as exc:
                text = f"(no log: {getattr(exc, 'reason', exc)})"
            out[f"{pod.metadata.name}/{container.name}"] = text or ""
    return out
