"""Checks every rendered manifest of the chart must pass, shared by the values matrix (test_matrix.py) and the
offline render of the bare defaults (test_offline_render.py): valid on every pinned Kubernetes version, and every
pod bounded and Pod Security "restricted" (but the NFS server)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate

REPO = Path(__file__).resolve().parents[2]
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
# The one pod allowed outside Pod Security "restricted" (documented in charts/nfs/values.yaml).
PRIVILEGED_OK = {("StatefulSet", "nfs")}


def kube_versions() -> list[str]:
    for line in (REPO / "ci" / "versions.env").read_text().splitlines():
        if line.startswith("VALIDATE_KUBE_VERSIONS="):
            return shlex.split(line.split("=", 1)[1])[0].split()
    raise AssertionError("VALIDATE_KUBE_VERSIONS is not set in ci/versions.env")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def validation_errors(docs: list[dict[str, Any]] | tuple[dict[str, Any], ...], version: str) -> list[str]:
    """What kubernetes-validate --strict refuses in `docs` on Kubernetes `version`."""
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.message}")
    return errors


def pod_problems(docs: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[str]:
    """Pods without requests and limits, or (but the NFS server) outside Pod Security "restricted"."""
    problems = []
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(doc)
        who = f"{doc['kind']}/{doc['metadata']['name']}"
        containers = spec.get("initContainers", []) + spec["containers"]
        for c in containers:
            res = c.get("resources", {})
            if not (res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
                    and res.get("limits", {}).get("cpu") and res.get("limits", {}).get("memory")):
                problems.append(f"{who}/{c['name']}: requests and limits of cpu and memory")
        if (doc["kind"], doc["metadata"]["labels"].get("app.kubernetes.io/name")) in PRIVILEGED_OK:
            continue
        psc = spec.get("securityContext", {})
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{who}: host namespaces")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{who}: seccompProfile RuntimeDefault")
        for c in containers:
            sc = c.get("securityContext", {})
            if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")) or sc.get("runAsUser") == 0:
                problems.append(f"{who}/{c['name']}: runAsNonRoot")
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                problems.append(f"{who}/{c['name']}: allowPrivilegeEscalation false")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                problems.append(f"{who}/{c['name']}: drop ALL capabilities")
    return problems
