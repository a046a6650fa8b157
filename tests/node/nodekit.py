"""Helpers for tests on the local cluster's real node: pods that Pod Security `restricted` admits, placed on the
node, a namespace per test, and the report (pod states, events, logs) a failing test leaves behind."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qhubctl import localcluster, realnode
from qhubctl.localcluster import LocalCluster

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "node"


def busybox() -> str:
    return realnode.image_ref("busybox")


def restricted_pod(name: str, ns: str, command: list[str], *, volumes: list[dict] | None = None,
                   mounts: list[dict] | None = None, image: str | None = None, labels: dict[str, str] | None = None,
                   ports: list[dict] | None = None, readiness: dict | None = None) -> dict:
    """A pod on the real node that Pod Security `restricted` admits: non-root, no capabilities, read-only root."""
    container: dict[str, Any] = {
        "name": "main",
        "image": image or busybox(),
        "command": command,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "volumeMounts": mounts or [],
    }
    if ports:
        container["ports"] = ports
    if readiness:
        container["readinessProbe"] = readiness
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "nodeSelector": {realnode.REAL_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [container],
            "volumes": volumes or [],
        },
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(interval)


class Node:
    """Per-test access: a fresh `restricted` namespace, apply, pod status and logs."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.ns = f"node-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "namespace", self.ns)
        cluster.kubectl("label", "namespace", self.ns, "pod-security.kubernetes.io/enforce=restricted")

    def apply(self, *objects: dict) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": list(objects)}))

    def pod(self, name: str) -> dict:
        return json.loads(self.cluster.kubectl("get", "pod", name, "-n", self.ns, "-o", "json"))

    def phase(self, name: str) -> str:
        return self.pod(name)["status"].get("phase", "")

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 120) -> str:
        return wait_for(f"pod {name} to reach {'/'.join(phases)}",
                        lambda: (p := self.phase(name)) in phases and p, timeout=timeout)

    def wait_ready(self, name: str, timeout: float = 120) -> dict:
        def ready() -> dict | None:
            pod = self.pod(name)
            conds = pod["status"].get("conditions", [])
            ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            return pod if ok else None

        return wait_for(f"pod {name} to be Ready", ready, timeout=timeout)

    def logs(self, name: str) -> str:
        return self.cluster.kubectl("logs", "-n", self.ns, name)

    def run_to_completion(self, name: str, manifest: dict, timeout: float = 120) -> str:
        """Apply a pod, wait until it exits 0 and return its log (read through the kubelet)."""
        self.apply(manifest)
        phase = self.wait_phase(name, ("Succeeded", "Failed"), timeout=timeout)
        out = self.logs(name)
        assert phase == "Succeeded", f"pod {name} failed:\n{out}"
        return out

    def report(self) -> str:
        return localcluster.namespace_report(self.cluster, self.ns, logs=True)
