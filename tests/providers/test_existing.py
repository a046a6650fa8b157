"""Provider existing against the local test cluster: a config whose groups match the nodes plans clean; one that
selects labels no node carries says exactly what is missing. And release_cloud_resources (what the gcp provider
runs before deleting a cluster) deletes LoadBalancer Services and claims, and keeps Retain volumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster
from qhubctl.providers.release import release_cloud_resources

pytestmark = pytest.mark.cluster


def write(path: Path, groups: dict) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo",
                                    "cluster": {"provider": "existing"}, "node_groups": groups}))
    return path


def test_existing_checks_node_labels(cluster: LocalCluster, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    ok = CliRunner().invoke(app, ["cluster", "plan", "-c", str(write(tmp_path / "ok.yaml", {}))])
    assert ok.exit_code == 0, ok.output
    assert "no changes" in ok.output
    bad = CliRunner().invoke(app, ["cluster", "plan", "-c", str(write(tmp_path / "bad.yaml", {
        "general": {"node_selector": {"example.org/pool": "core"}}}))])
    assert bad.exit_code == 1, bad.output
    assert "node group general: no node has the labels example.org/pool=core" in bad.output
    assert "kubectl label node" in bad.output
    gone = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(tmp_path / "ok.yaml"), "--yes"])
    assert gone.exit_code == 0 and "nothing to destroy" in gone.output


def test_release_cloud_resources(cluster: LocalCluster) -> None:
    ns = "qhub-release-test"
    cluster.kubectl("create", "namespace", ns)
    try:
        manifests = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": ns},
             "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "internal", "namespace": ns},
             "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {"app": "x"}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "home", "namespace": ns},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                      "storageClassName": "none-such"}},
        ]
        for manifest in manifests:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        lines: list[str] = []
        released = release_cloud_resources(yaml.safe_load(cluster.kubeconfig.read_text()), lines.append, timeout=60,
                                           namespace=ns)
        assert f"service/{ns}/lb" in released and f"pvc/{ns}/home" in released
        services = json.loads(cluster.kubectl("get", "svc", "-n", ns, "-o", "json"))["items"]
        assert [s["metadata"]["name"] for s in services] == ["internal"]
        assert json.loads(cluster.kubectl("get", "pvc", "-n", ns, "-o", "json"))["items"] == []
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
