"""GKE: plan logic as pure functions, and google-cloud-container's REST calls validated against the container v1
discovery document (a request the real API would reject on shape, field names, enum values or types fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml
from fakeapi import FakeAPI
from gke_contract import DOC, FakeGKE
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1

from qhubctl.config import load_config
from qhubctl.providers import gcp
from qhubctl.providers.base import desired_groups

def config(tmp_path: Path, worker_max: int = 5, labels: dict | None = None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 2, "project_name": "demo",
        "cluster": {"provider": "gcp", "project": "my-project-1", "region": "us-central1",
                    "kubernetes_version": "1.33"},
        "node_groups": {"worker": {"max_nodes": worker_max, "spot": True, "labels": labels or {}},
                        "gpu": {"gpu": {"type": "nvidia-tesla-t4", "count": 1}}}}))
    return load_config(path)


@pytest.fixture
def gke():
    fake = FakeGKE()
    api = FakeAPI(fake).start()
    client = container_v1.ClusterManagerClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=api.url))
    yield fake, api, client
    api.stop()


@pytest.mark.unit
def test_plan_is_pure_over_observed_state(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    desired = desired_groups(cfg)
    assert [a.op for a in gcp.plan_actions("demo", "1.33", desired, None)] == ["create"]
    observed = {"currentMasterVersion": "1.33.5-gke.1200", "nodePools": [gcp.pool_body(g) for g in desired],
                "networkConfig": {"datapathProvider": "ADVANCED_DATAPATH"}}
    assert gcp.plan_actions("demo", "1.33", desired, observed) == []
    observed["nodePools"][2]["autoscaling"]["totalMaxNodeCount"] = 9
    observed["nodePools"][3]["config"]["machineType"] = "n1-standard-4"
    del observed["nodePools"][1]
    actions = gcp.plan_actions("demo", "1.34", desired, observed)
    assert [(a.op, a.kind, a.name) for a in actions] == [
        ("update", "gke-cluster", "demo"), ("create", "node-pool", "user"), ("update", "node-pool", "worker"),
        ("replace", "node-pool", "gpu")]
    assert actions[2].changes == {"max_nodes": (9, 5)}
    with pytest.raises(Exception, match="cannot downgrade"):
        gcp.plan_actions("demo", "1.32", desired, observed)


@pytest.mark.unit
def test_a_cluster_without_network_policy_enforcement_gets_it(tmp_path: Path) -> None:
    desired = desired_groups(config(tmp_path))
    pools = [gcp.pool_body(g) for g in desired]
    old = {"currentMasterVersion": "1.33.5-gke.1200", "nodePools": pools,
           "networkConfig": {"datapathProvider": "LEGACY_DATAPATH"}}
    (action,) = gcp.plan_actions("demo", "1.33", desired, old)
    assert (action.op, action.kind, dict(action.changes)) == (
        "update", "gke-network-policy", {"network policy": ("not enforced", "Calico")})
    assert "recreates the nodes" in action.detail
    calico = {**old, "networkPolicy": {"enabled": True, "provider": "CALICO"}}
    assert gcp.network_policy_enforced(calico) == "Calico" and gcp.plan_actions("demo", "1.33", desired, calico) == []
    assert gcp.network_policy_enforced({"networkConfig": {"datapathProvider": "ADVANCED_DATAPATH"}}) == "Dataplane V2"


@pytest.mark.unit
def test_pool_body_carries_labels_taints_spot_and_gpu(tmp_path: Path) -> None:
    groups = {g.name: gcp.pool_body(g) for g in desired_groups(config(tmp_path))}
    assert groups["worker"]["config"]["spot"] is True
    assert groups["worker"]["config"]["labels"] == {"qhub.dev/node-group": "worker"}
    assert groups["gpu"]["config"]["accelerators"] == [{"acceleratorCount": "1", "acceleratorType": "nvidia-tesla-t4",
                                                        "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}]
    assert {t["key"] for t in groups["gpu"]["config"]["taints"]} == {"qhub.dev/node-group", "nvidia.com/gpu"}
    assert groups["general"]["config"]["taints"] == []


@pytest.mark.cloud
def test_sdk_calls_fit_the_discovery_document(gke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, api, client = gke
    released: list[str] = []
    monkeypatch.setattr("qhubctl.providers.release.release_cloud_resources",
                        lambda kubeconfig, log: released.append(kubeconfig["clusters"][0]["cluster"]["server"]))
    provider = gcp.GCP(config(tmp_path), log=lambda _: None, client=client)
    plan = provider.plan()
    assert [a.kind for a in plan.actions] == ["gke-cluster"]
    provider.apply(plan)
    assert api.violations == []
    stored = fake.clusters["projects/my-project-1/locations/us-central1/clusters/demo"]
    assert stored["resourceLabels"]["qhub-project"] == "demo"
    # (the SDK sends enums as numbers; the cluster as the provider reads it back names them)
    assert provider.observe()["networkConfig"] == {"datapathProvider": "ADVANCED_DATAPATH"}, "Dataplane V2"
    assert [p["name"] for p in stored["nodePools"]] == ["general", "user", "worker", "gpu"]
    assert provider.plan().actions == []

    provider.cfg = config(tmp_path, worker_max=8, labels={"team": "science"})
    plan = provider.plan()
    assert [(a.op, a.name, sorted(a.changes)) for a in plan.actions] == [("update", "worker", ["labels", "max_nodes"])]
    fake.calls.clear()
    provider.apply(plan)
    assert api.violations == []
    changed = [(mid.rsplit(".", 1)[1], args[3]) for mid, args in fake.calls if "nodePools" in mid]
    assert changed == [("setAutoscaling", "worker"), ("get", "worker"), ("update", "worker")]
    assert provider.plan().actions == []

    # a cluster made without enforcement (an older qhubctl): the add-on, then network policy, then nothing to do
    del stored["networkConfig"]
    plan = provider.plan()
    assert [(a.op, a.kind) for a in plan.actions] == [("update", "gke-network-policy")]
    fake.calls.clear()
    provider.apply(plan)
    assert [mid.rsplit(".", 1)[1] for mid, _ in fake.calls if "operations" not in mid] == [
        "setAddons", "setNetworkPolicy"]
    assert provider.observe()["networkPolicy"] == {"enabled": True, "provider": "CALICO"} and api.violations == []
    assert provider.plan().actions == []

    kubeconfig = provider.kubeconfig()
    assert kubeconfig["users"][0]["user"]["exec"]["args"] == ["cluster", "gke-token"]
    destroy = provider.destroy_plan()
    provider.destroy(destroy)
    assert released == ["https://203.0.113.10"], "LoadBalancer Services and volumes are released first"
    assert fake.clusters == {} and api.violations == []
    assert provider.destroy_plan().actions == []


@pytest.mark.cloud
def test_validator_rejects_what_the_api_would(gke) -> None:
    _, api, _ = gke
    base = f"{api.url}/v1/projects/p/locations/l/clusters"
    bad = [
        {"cluster": {"name": "x", "nodePools": [{"name": "a", "autoscaling": {"maxNodes": 3}}]}},  # wrong field
        {"cluster": {"name": "x", "nodePools": [{"name": "a", "config": {"taints": [
            {"key": "k", "value": "v", "effect": "NoSchedule"}]}}]}},  # Kubernetes spelling, not the API enum
        {"cluster": {"name": "x", "nodePools": [{"name": "a", "initialNodeCount": "three"}]}},
        {"cluster": {"name": "x", "status": "RUNNING"}},  # output-only
    ]
    for body in bad:
        assert requests.post(base, json=body, timeout=5).status_code == 400
    assert len(api.violations) == len(bad)
    assert DOC["revision"], "the discovery document carries its revision"
