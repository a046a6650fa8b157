"""The Pod Security level qhubctl gives the release namespace is the strictest one every QHub pod meets, as the
real API server's Pod Security admission judges it: each pod the chart renders for a config (every component on)
is created with --dry-run=server in namespaces enforcing privileged, baseline and restricted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from qhubctl.config import parse_config
from qhubctl.localcluster import LocalCluster, bin_dir
from qhubctl.podsecurity import LEVELS, PREFIX, enforce_level, namespaces
from qhubctl.proc import run
from qhubctl.chart import chart_dir
from qhubctl.values import chart_values

pytestmark = pytest.mark.cluster
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


def config(storage: dict[str, Any]) -> Any:
    return parse_config({
        "schema_version": 2, "project_name": "psa", "cluster": {"provider": "local"},
        "auth": {"type": "dummy", "users": {"demo": {}}},
        "components": {"dask_gateway": True, "conda_store": True, "kubessh": True, "jitsi": True},
        "jitsi": {"host": "meet.example.org"}, "storage": storage,
    }, environ={})


def rendered_pods(cfg: Any, cluster: LocalCluster, tmp_path: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every pod the chart would create for `cfg` (workload templates as Pods, plus helm-test Pods), with the
    namespace it would run in."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(cfg)))
    # helm template cannot ask the cluster for a free Service address: give the NFS Service one
    out = run(["helm", "template", "psa", str(chart_dir()), "-n", cfg.namespace, "-f", str(values),
               "--set", "nfs.service.clusterIP=10.96.0.40"], env=cluster.env, timeout=120).stdout
    pods = {}
    for doc in (d for d in yaml.safe_load_all(out) if d):
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            meta = {"name": doc["metadata"]["name"].lower(), "labels": template["metadata"].get("labels", {})}
            spec = dict(template["spec"])
            # a StatefulSet's pods mount their claims as persistentVolumeClaim volumes, as the controller adds them
            claims = [c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates") or []]
            spec["volumes"] = [*spec.get("volumes", []), *({"name": c, "persistentVolumeClaim": {
                "claimName": f"{c}-{meta['name']}-0"}} for c in claims)]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        elif doc["kind"] == "Pod":
            pod = {**doc, "metadata": {"name": doc["metadata"]["name"]}}
        else:
            continue
        # admission would look the account up; Pod Security does not depend on it
        pod["spec"] = {k: v for k, v in pod["spec"].items() if k not in ("serviceAccountName", "serviceAccount")}
        pods[f"{doc['kind']}/{doc['metadata']['name']}"] = (doc["metadata"].get("namespace") or cfg.namespace, pod)
    return pods


@pytest.fixture(scope="module")
def level_namespaces(cluster: LocalCluster) -> Iterator[dict[str, str]]:
    """One namespace per Pod Security level, enforcing it."""
    suffix = uuid.uuid4().hex[:6]
    names = {level: f"psa-{level}-{suffix}" for level in LEVELS}
    for level, ns in names.items():
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("label", "namespace", ns, f"{PREFIX}/enforce={level}")
    yield names
    for ns in names.values():
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def admitted(cluster: LocalCluster, pod: dict[str, Any], ns: str) -> tuple[bool, str]:
    result = run([str(bin_dir() / "kubectl"), "create", "--dry-run=server", "-n", ns, "-f", "-"], env=cluster.env,
                 input=json.dumps(pod), check=False, timeout=60)
    return result.ok, result.stderr.strip()


STORAGE = {
    "existing-storage": {"type": "existing", "storage_class": "rwx", "size": "10Gi"},
    "nfs-server": {"type": "nfs", "size": "10Gi"},
    "nfs-server-own-namespace": {"type": "nfs", "size": "10Gi", "server_namespace": "qhub-nfs"},
}


@pytest.mark.parametrize("storage", list(STORAGE))
def test_namespace_level_is_the_strictest_every_pod_meets(cluster: LocalCluster, level_namespaces: dict[str, str],
                                                          tmp_path: Any, storage: str) -> None:
    cfg = config(STORAGE[storage])
    wanted = {ns: labels[f"{PREFIX}/enforce"] for ns, labels in namespaces(cfg).items()}
    pods = rendered_pods(cfg, cluster, tmp_path)
    assert len(pods) >= 8, sorted(pods)
    assert {ns for ns, _ in pods.values()} == set(wanted), "qhubctl labels every namespace the chart uses"
    refused: dict[tuple[str, str], list[str]] = {}
    for level, probe in level_namespaces.items():
        for name, (ns, pod) in pods.items():
            ok, message = admitted(cluster, pod, probe)
            if not ok:
                assert "violates PodSecurity" in message, message
                refused.setdefault((ns, level), []).append(f"{name}: {message}")
    for ns, chosen in wanted.items():
        assert not refused.get((ns, chosen)), f"pods {ns} ({chosen}) would refuse:\n" + "\n".join(
            refused[(ns, chosen)])
        for level in LEVELS[LEVELS.index(chosen) + 1:]:  # the strictest: each stricter level refuses some pod
            assert refused.get((ns, level)), f"every pod of {ns} meets {level}: raise its level"
    if storage == "nfs-server":
        assert enforce_level(cfg)[0] == "privileged"
    else:
        assert wanted[cfg.namespace] == "restricted"


def test_deploy_labels_the_nfs_servers_own_namespace(cluster: LocalCluster, tmp_path: Any) -> None:
    """qhubctl deploy with storage.server_namespace: the NFS server runs (admitted) in its own privileged
    namespace, the deployment's namespace enforces restricted, and destroy --delete-data removes the server's
    disk there too."""
    from typer.testing import CliRunner

    from qhubctl.cli import app

    suffix = uuid.uuid4().hex[:6]
    ns, server_ns = f"psa-deploy-{suffix}", f"psa-deploy-{suffix}-nfs"
    path = tmp_path / "qhub-config.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 2, "project_name": "psadeploy", "namespace": ns, "release_name": "qp",
        "cluster": {"provider": "local"}, "auth": {"type": "dummy", "users": {"ann": {}}},
        "components": {"dask_gateway": False, "conda_store": False, "jitsi": False},
        "storage": {"type": "nfs", "size": "5Gi", "disk_storage_class": "standard", "server_namespace": server_ns},
    }))
    qhubctl = ["-c", str(path), "--kubeconfig", str(cluster.kubeconfig)]
    try:
        result = CliRunner().invoke(app, ["deploy", "--yes", "--timeout", "5m", *qhubctl])
        assert result.exit_code == 0, result.output

        def label(namespace: str) -> str:
            found = json.loads(cluster.kubectl("get", "namespace", namespace, "-o", "json"))["metadata"]["labels"]
            return found[f"{PREFIX}/enforce"]

        assert (label(ns), label(server_ns)) == ("restricted", "privileged")
        servers = json.loads(cluster.kubectl("get", "statefulset", "qp-nfs", "-n", server_ns, "-o", "json"))
        assert servers["status"].get("readyReplicas") == 1, "the NFS server's pod was admitted and is ready"
        result = CliRunner().invoke(app, ["destroy", "--yes", "--delete-data", *qhubctl])
        assert result.exit_code == 0, result.output
        left = json.loads(cluster.kubectl("get", "pvc", "-n", server_ns, "-o", "json"))["items"]
        assert all(c["metadata"].get("deletionTimestamp") for c in left), (result.output, left)
        assert f"{server_ns}/" in result.output, result.output
    finally:
        for namespace in (ns, server_ns):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
