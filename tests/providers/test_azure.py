"""AKS: plan logic as pure functions, and the azure-mgmt SDK calls validated against the contract the SDK's
generated models carry (see arm_contract.py for why not Microsoft's OpenAPI documents themselves)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml
from arm_contract import FakeARM
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy
from fakeapi import FakeAPI

from qhubctl.config import load_config
from qhubctl.providers import azure
from qhubctl.providers.base import desired_groups

def config(tmp_path: Path, worker_max: int = 5, spot: bool = True, version: str = "1.33"):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 2, "project_name": "demo",
        "cluster": {"provider": "azure", "region": "eastus", "kubernetes_version": version},
        "node_groups": {"worker": {"max_nodes": worker_max, "spot": spot}, "gpu": {"gpu": {"count": 1}}}}))
    return load_config(path)


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("test-token", 4_102_444_800)


class BearerForLoopback(SansIOHTTPPolicy):
    """azure-core refuses bearer tokens over http; the loopback fake is http."""

    def on_request(self, request) -> None:  # type: ignore[no-untyped-def]
        request.http_request.headers["Authorization"] = "Bearer test-token"


@pytest.mark.unit
def test_plan_is_pure_over_observed_state(tmp_path: Path) -> None:
    desired = desired_groups(config(tmp_path))
    fresh = azure.plan_actions("demo", "1.33", desired, False, None, {})
    assert [(a.op, a.kind) for a in fresh] == [("create", "resource-group"), ("create", "aks-cluster"),
                                               ("create", "agent-pool"), ("create", "agent-pool"),
                                               ("create", "agent-pool")]
    pools = {azure.pool_name(g.name): azure.pool_body(g) for g in desired}
    observed = {"kubernetesVersion": "1.33.2", "networkProfile": dict(azure.NETWORK_PROFILE)}
    assert azure.plan_actions("demo", "1.33", desired, True, observed, pools) == []
    pools["worker"]["maxCount"] = 2
    pools["user"]["scaleSetPriority"] = "Spot"
    actions = azure.plan_actions("demo", "1.34", desired, True, observed, pools)
    assert [(a.op, a.name) for a in actions] == [("update", "demo"), ("replace", "user"), ("update", "worker")]
    assert pools["worker"]["nodeTaints"] == ["qhub.dev/node-group=worker:NoSchedule"]
    assert pools["general"]["mode"] == "System" and pools["gpu"]["mode"] == "User"
    with pytest.raises(Exception, match="cannot be an AKS agent pool name"):
        azure.pool_name("9lives")


@pytest.mark.unit
def test_a_cluster_without_a_network_policy_engine_gets_calico() -> None:
    assert azure.network_policy_actions("demo", {"networkProfile": {"networkPlugin": "kubenet"}})[0].changes == {
        "networkPolicy": ("none", "calico")}
    (action,) = azure.network_policy_actions("demo", {"networkProfile": {"networkPolicy": "none"}})
    assert (action.op, action.kind) == ("update", "aks-network-policy")
    for engine in ("cilium", "calico", "azure"):
        assert azure.network_policy_actions("demo", {"networkProfile": {"networkPolicy": engine}}) == []


@pytest.mark.cloud
def test_sdk_calls_fit_the_contract(tmp_path: Path) -> None:
    fake = FakeARM()
    api = FakeAPI(fake).start()
    try:
        provider = azure.Azure(config(tmp_path), log=lambda _: None, credential=StaticToken(),
                               subscription_id="00000000-0000-0000-0000-000000000000",
                               client_kwargs={"base_url": api.url, "authentication_policy": BearerForLoopback()})
        assert "resource group demo-rg" in provider.check_credentials()
        provider.apply(provider.plan())
        assert api.violations == []
        assert fake.groups["demo-rg"]["tags"]["qhub-project"] == "demo"
        assert sorted(fake.pools["demo"]) == ["general", "gpu", "user", "worker"]
        network = fake.clusters["demo"]["properties"]["networkProfile"]
        assert {k: network[k] for k in azure.NETWORK_PROFILE} == {
            "networkPlugin": "azure", "networkPluginMode": "overlay", "networkDataplane": "cilium",
            "networkPolicy": "cilium"}, "Cilium enforces NetworkPolicies"
        assert fake.pools["demo"]["worker"]["scaleSetPriority"] == "Spot"
        assert provider.plan().actions == []

        provider.cfg = config(tmp_path, worker_max=9)
        plan = provider.plan()
        assert [(a.op, a.name, dict(a.changes)) for a in plan.actions] == [("update", "worker", {"max_nodes": (5, 9)})]
        fake.calls.clear()
        provider.apply(plan)
        assert [c for c in fake.calls if c[0] == "PUT"] == [("PUT", "pool")]
        assert fake.pools["demo"]["worker"]["maxCount"] == 9 and api.violations == []
        assert provider.kubeconfig()["clusters"][0]["name"] == "demo"

        # a cluster an older qhubctl made without a policy engine: Calico in place, the rest of it unchanged
        fake.clusters["demo"]["properties"]["networkProfile"] = {"networkPlugin": "kubenet"}
        plan = provider.plan()
        assert [(a.op, a.kind) for a in plan.actions] == [("update", "aks-network-policy")]
        pools_before = {n: dict(p) for n, p in fake.pools["demo"].items()}
        provider.apply(plan)
        assert fake.clusters["demo"]["properties"]["networkProfile"] == {"networkPlugin": "kubenet",
                                                                         "networkPolicy": "calico"}
        assert fake.pools["demo"] == pools_before and api.violations == []
        assert fake.clusters["demo"]["properties"]["kubernetesVersion"] == "1.33.2"
        # a version upgrade keeps the network profile a running cluster cannot change
        provider.cfg = config(tmp_path, worker_max=9, version="1.34")
        plan = provider.plan()
        assert [(a.op, a.kind) for a in plan.actions] == [("update", "aks-cluster")]
        provider.apply(plan)
        assert fake.clusters["demo"]["properties"]["networkProfile"] == {"networkPlugin": "kubenet",
                                                                         "networkPolicy": "calico"}
        assert provider.plan().actions == [] and api.violations == []
        assert provider.plan().actions == []

        destroy = provider.destroy_plan()
        assert [a.kind for a in destroy.actions] == ["aks-cluster", "resource-group"]
        provider.destroy(destroy)
        assert fake.clusters == {} and fake.groups == {} and api.violations == []
        assert provider.destroy_plan().actions == []

        # the validator is not vacuous: what the service would reject is a violation
        base = f"{api.url}/subscriptions/s/resourcegroups/g/providers/Microsoft.ContainerService/managedClusters/c"
        query = {"api-version": "2026-08-01"}
        bad = [{"location": "eastus", "properties": {"agentPoolProfiles": [{"name": "a", "vmSize": "x",
                                                                            "scaleSetPriority": "Cheap"}]}},
               {"location": "eastus", "properties": {"kubernetesVersoin": "1.33"}},
               {"location": "eastus", "properties": {"agentPoolProfiles": [{"name": "a", "count": "three"}]}}]
        for body in bad:
            assert requests.put(base, params=query, json=body, timeout=5).status_code == 400
        assert len(api.violations) == len(bad)
    finally:
        api.stop()
