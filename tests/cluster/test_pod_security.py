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
from qhubctl.podsecurity import LEVELS, PREFIX, enforce_level, namespace_labels
from qhubctl.proc import run
from qhubctl.values import CHART_DIR, chart_values

pytestmark = pytest.mark.cluster
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


def config(storage: dict[str, Any]) -> Any:
    return parse_config({
        "schema_version": 2, "project_name": "psa", "cluster": {"provider": "local"},
        "auth": {"type": "dummy", "users": {"demo": {}}},
        "components": {"dask_gateway": True, "conda_store": True, "kubessh": True, "jitsi": True},
        "jitsi": {"host": "meet.example.org"}, "storage": storage,
    }, environ={})


def rendered_pods(cfg: Any, cluster: LocalCluster, tmp_path: Any) -> dict[str, dict[str, Any]]:
    """Every pod the chart would create for `cfg` (workload templates as Pods, plus helm-test Pods)."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(cfg)))
    # helm template cannot ask the cluster for a free Service address: give the NFS Service one
    out = run(["helm", "template", "psa", str(CHART_DIR), "-n", "psa", "-f", str(values),
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
            pods[f"{doc['kind']}/{doc['metadata']['name']}"] = {
                "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        elif doc["kind"] == "Pod":
            pods[f"Pod/{doc['metadata']['name']}"] = {**doc, "metadata": {"name": doc["metadata"]["name"]}}
    for pod in pods.values():  # admission would look the account up; Pod Security does not depend on it
        pod["spec"] = {k: v for k, v in pod["spec"].items() if k not in ("serviceAccountName", "serviceAccount")}
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


@pytest.mark.parametrize("storage", [{"type": "existing", "storage_class": "rwx", "size": "10Gi"},
                                     {"type": "nfs", "size": "10Gi"}], ids=["existing-storage", "nfs-server"])
def test_namespace_level_is_the_strictest_every_pod_meets(cluster: LocalCluster, level_namespaces: dict[str, str],
                                                          tmp_path: Any, storage: dict[str, Any]) -> None:
    cfg = config(storage)
    chosen, why = enforce_level(cfg)
    assert namespace_labels(cfg)[f"{PREFIX}/enforce"] == chosen
    pods = rendered_pods(cfg, cluster, tmp_path)
    assert len(pods) >= 8, sorted(pods)
    refused: dict[str, list[str]] = {level: [] for level in LEVELS}
    for level, ns in level_namespaces.items():
        for name, pod in pods.items():
            ok, message = admitted(cluster, pod, ns)
            if not ok:
                assert "violates PodSecurity" in message, message
                refused[level].append(f"{name}: {message}")
    assert refused[chosen] == [], f"pods the {chosen} namespace would refuse:\n" + "\n".join(refused[chosen])
    stricter = LEVELS[LEVELS.index(chosen) + 1:]
    for level in stricter:  # `chosen` is the strictest: each stricter level refuses some pod (the reason given)
        assert refused[level], f"every pod meets {level}: raise the namespace's level ({why})"
