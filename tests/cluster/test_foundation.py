"""Smoke tests of the local test cluster itself: the ground every other cluster test stands on."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from qhubctl.localcluster import SIMULATED_GROUPS, NODE_GROUP_LABEL, LocalCluster, node_schedulable
from qhubctl.proc import run

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def pinned(name: str) -> str:
    for line in (REPO / "ci" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"{name} is not pinned in ci/versions.env")


def nodes(cluster: LocalCluster) -> list[dict]:
    return json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]


def group_nodes(cluster: LocalCluster, group: str) -> list[dict]:
    return [n for n in nodes(cluster) if n["metadata"]["labels"].get(NODE_GROUP_LABEL) == group]


def wait_for(what: str, check, timeout: float = 120, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def namespace(cluster: LocalCluster, labels: dict[str, str] | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(ns))
    return name


def pod(name: str, ns: str, group: str, gpu: bool = False) -> dict:
    tolerations = [{"key": NODE_GROUP_LABEL, "operator": "Equal", "value": group, "effect": "NoSchedule"}]
    resources: dict = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    if gpu:
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
        resources["limits"]["nvidia.com/gpu"] = "1"
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeSelector": {NODE_GROUP_LABEL: group}, "tolerations": tolerations,
                 "containers": [{"name": "main", "image": "qhub/probe:1", "resources": resources}]},
    }


def test_api_server_reports_pinned_version(cluster: LocalCluster) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version"))
    assert version["gitVersion"] == pinned("KUBE_VERSION")
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json"))
    assert client["clientVersion"]["gitVersion"] == pinned("KUBE_VERSION")


def test_general_group_is_always_on_and_labelled(cluster: LocalCluster) -> None:
    general = group_nodes(cluster, "general")
    assert general and all(node_schedulable(n) for n in general)
    assert all(not n["spec"].get("taints") for n in general), "general nodes carry no taint"
    assert all(n["metadata"]["labels"][NODE_GROUP_LABEL] == "general" for n in general)


def test_every_group_scales_up_for_pending_pods_and_back_down(cluster: LocalCluster) -> None:
    ns = namespace(cluster)
    wanted = {"user": False, "worker": False, "gpu": True}
    for group, gpu in wanted.items():
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod(f"needs-{group}", ns, group, gpu)))
    for group in wanted:
        found = wait_for(f"a Ready {group} node", lambda g=group: [n for n in group_nodes(cluster, g) if node_schedulable(n)])
        spec = next(g for g in SIMULATED_GROUPS if g.name == group)
        taints = {(t["key"], t["value"], t["effect"]) for t in found[0]["spec"]["taints"]}
        assert (NODE_GROUP_LABEL, group, "NoSchedule") in taints
        if spec.gpus:
            assert ("nvidia.com/gpu", "present", "NoSchedule") in taints
            assert found[0]["status"]["capacity"]["nvidia.com/gpu"] == str(spec.gpus)
    for group in wanted:
        phase = wait_for(f"pod needs-{group} running", lambda g=group: json.loads(
            cluster.kubectl("get", "pod", f"needs-{g}", "-n", ns, "-o", "json"))["status"].get("phase") == "Running")
        assert phase
        bound = json.loads(cluster.kubectl("get", "pod", f"needs-{group}", "-n", ns, "-o", "json"))["spec"]["nodeName"]
        assert bound.startswith(f"{group}-")
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "reason=TriggeredScaleUp", "-o", "name")
    assert len(events.split()) >= 3
    cluster.kubectl("delete", "namespace", ns, "--wait=true", timeout=180)
    for group in wanted:
        wait_for(f"{group} group back to 0 nodes", lambda g=group: not group_nodes(cluster, g), timeout=150)


def test_group_never_exceeds_its_max(cluster: LocalCluster) -> None:
    gpu = next(g for g in SIMULATED_GROUPS if g.name == "gpu")
    ns = namespace(cluster)
    for i in range(gpu.max_nodes + 2):  # one GPU per node: more pods than the group may have nodes
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod(f"gpu-{i}", ns, "gpu", gpu=True)))
    wait_for("gpu group at max", lambda: len(group_nodes(cluster, "gpu")) == gpu.max_nodes)
    time.sleep(6)  # several autoscaler rounds with pods still pending
    assert len(group_nodes(cluster, "gpu")) == gpu.max_nodes
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
    assert sum(1 for p in pods if p["status"].get("phase") == "Pending") == 2
    cluster.kubectl("delete", "namespace", ns, "--wait=true", timeout=180)
    wait_for("gpu group back to 0 nodes", lambda: not group_nodes(cluster, "gpu"), timeout=150)


def test_simulated_storage_class_binds_claims(cluster: LocalCluster) -> None:
    """The kwok nodes' `standard` class (not the default: that is the real node's local-path class)."""
    ns = namespace(cluster)
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                    "storageClassName": "standard"}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pvc))
    claim = wait_for("the claim to bind", lambda: (c := json.loads(cluster.kubectl(
        "get", "pvc", "data", "-n", ns, "-o", "json")))["status"].get("phase") == "Bound" and c)
    assert claim["spec"]["storageClassName"] == "standard"
    volume = json.loads(cluster.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json"))
    assert volume["spec"]["claimRef"]["namespace"] == ns
    cluster.kubectl("delete", "namespace", ns, "--wait=true", timeout=180)
    wait_for("the released volume to be reclaimed", lambda: run(
        ["kubectl", "get", "pv", claim["spec"]["volumeName"]], env=cluster.env, check=False).returncode != 0)


def test_pod_security_admission_and_rbac_are_enforced(cluster: LocalCluster) -> None:
    ns = namespace(cluster, {"pod-security.kubernetes.io/enforce": "restricted"})
    bad = pod("root", ns, "general")
    result = run(["kubectl", "apply", "-f", "-"], env=cluster.env, input=json.dumps(bad), check=False)
    assert result.returncode != 0 and 'violates PodSecurity "restricted' in result.stderr
    can = run(["kubectl", "auth", "can-i", "create", "pods", "-n", ns, f"--as=system:serviceaccount:{ns}:default"],
              env=cluster.env, check=False)
    assert can.stdout.strip() == "no"
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_another_local_cluster_leaves_this_ones_kubeconfig_alone(cluster: LocalCluster, monkeypatch) -> None:
    """kwokctl merges each cluster it creates into $KUBECONFIG and takes it out on delete; starting and deleting a
    second cluster while KUBECONFIG names this one's file must not touch that file."""
    from qhubctl import localcluster

    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    before = cluster.kubeconfig.read_text()
    other = localcluster.up("qhub-other", groups=[localcluster.SimulatedGroup("general", 1, 1)], log=lambda _: None,
                            with_real_node=False)
    try:
        assert other.kubeconfig != cluster.kubeconfig
        assert json.loads(other.kubectl("get", "--raw", "/version"))["gitVersion"] == pinned("KUBE_VERSION")
        # it holds the cluster's admin key: written for its owner only, from the first byte
        assert other.kubeconfig.stat().st_mode & 0o777 == 0o600
    finally:
        localcluster.down("qhub-other", log=lambda _: None)
    assert cluster.kubeconfig.read_text() == before
    assert group_nodes(cluster, "general"), "this cluster still answers with its own nodes"
