"""DOKS: plan logic as pure functions, and pydo's calls checked against the request templates pydo generates from
DigitalOcean's OpenAPI document (see do_contract.py for why not the document itself)."""

from __future__ import annotations

from pathlib import Path

import pydo
import pytest
import yaml
from azure.core.pipeline.policies import SansIOHTTPPolicy
from do_contract import FakeDOKS, body_template, check_body
from fakeapi import FakeAPI, Violation

from qhubctl.config import load_config
from qhubctl.errors import UserError
from qhubctl.providers import digitalocean as do
from qhubctl.providers.base import desired_groups

def config(tmp_path: Path, worker_max: int = 5):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": 2, "project_name": "demo",
        "cluster": {"provider": "digitalocean", "region": "nyc3", "kubernetes_version": "1.33"},
        "node_groups": {"worker": {"max_nodes": worker_max}}}))
    return load_config(path)


class Bearer(SansIOHTTPPolicy):
    def __init__(self, token: str) -> None:
        self.token = token

    def on_request(self, request) -> None:  # type: ignore[no-untyped-def]
        request.http_request.headers["Authorization"] = f"Bearer {self.token}"


def client(url: str, token: str = "do-test-token") -> pydo.Client:
    return pydo.Client(token=token, endpoint=url, authentication_policy=Bearer(token))


@pytest.mark.unit
def test_plan_is_pure_over_observed_state(tmp_path: Path) -> None:
    desired = desired_groups(config(tmp_path))
    assert [a.op for a in do.plan_actions("demo", "1.33", desired, None)] == ["create"]
    observed = {"version": "1.33.5-do.2", "node_pools": [do.pool_body(g) for g in desired]}
    assert do.plan_actions("demo", "1.33", desired, observed) == []
    observed["node_pools"][2]["max_nodes"] = 2
    observed["node_pools"][1]["size"] = "s-4vcpu-8gb"
    actions = do.plan_actions("demo", "1.33", desired, observed)
    assert [(a.op, a.name) for a in actions] == [("replace", "user"), ("update", "worker")]


@pytest.mark.unit
def test_templates_parse_and_catch_mistakes() -> None:
    schema = body_template("create_cluster")
    assert schema[("name",)] == (str, True) and schema[("node_pools", "[]", "min_nodes")][0] is int
    assert ("node_pools", "[]", "taints", "[]", "effect") in schema
    with pytest.raises(Violation, match="node_pools.\\[\\].autoscale is not a field"):
        check_body("create_cluster", {"name": "x", "region": "nyc3", "version": "1.33.5-do.2",
                                      "node_pools": [{"name": "a", "size": "s", "count": 1, "autoscale": True}]})
    with pytest.raises(Violation, match="wrong type"):
        check_body("update_node_pool", {"name": "a", "count": "three"})


@pytest.mark.unit
def test_doks_has_no_network_policy_setting_to_turn_on() -> None:
    """DOKS runs Cilium, which enforces NetworkPolicies, on every cluster: its create API offers no network plugin
    or policy field (nothing for qhubctl to set), and `qhubctl check` names Cilium where it finds no enforcement."""
    from qhubctl.netcheck import ENFORCEMENT

    fields = {part for path in body_template("create_cluster") for part in path}
    assert "node_pools" in fields and "vpc_uuid" in fields, "the template parsed"
    words = ("cni", "network_polic", "netpol", "cilium", "calico")
    assert not [f for f in fields if any(word in f for word in words)], "DOKS offers a network plugin setting now"
    assert "Cilium" in ENFORCEMENT["digitalocean"].enforcer and "cilium" in ENFORCEMENT["digitalocean"].turn_on


@pytest.mark.cloud
def test_sdk_calls_fit_the_contract(tmp_path: Path) -> None:
    fake = FakeDOKS()
    api = FakeAPI(fake).start()
    try:
        provider = do.DigitalOcean(config(tmp_path), log=lambda _: None, client=client(api.url))
        assert "ops@example.org" in provider.check_credentials()
        provider.apply(provider.plan())
        assert api.violations == []
        (cluster,) = fake.clusters.values()
        assert cluster["version"] == "1.33.5-do.2" and "qhub-project:demo" in cluster["tags"]
        assert [p["name"] for p in cluster["node_pools"]] == ["general", "user", "worker"]
        assert cluster["node_pools"][2]["taints"] == [{"key": "qhub.dev/node-group", "value": "worker",
                                                       "effect": "NoSchedule"}]
        assert provider.plan().actions == []

        provider.cfg = config(tmp_path, worker_max=7)
        fake.calls.clear()
        provider.apply(provider.plan())
        assert [c for c in fake.calls if c.startswith(("PUT", "POST", "DELETE"))] == [
            f"PUT /v2/kubernetes/clusters/{cluster['id']}/node_pools/{cluster['id']}-worker"]
        assert provider.plan().actions == [] and api.violations == []
        assert provider.kubeconfig()["clusters"][0]["name"] == f"do-{cluster['id']}"

        destroy = provider.destroy_plan()
        assert [(a.kind, a.name) for a in destroy.actions] == [
            ("load-balancer", "a1b2c3"), ("volume", "pvc-home"), ("doks-cluster", "demo")]
        provider.destroy(destroy)
        assert fake.deleted_with_resources == [cluster["id"]] and fake.clusters == {}
        assert provider.destroy_plan().actions == [] and api.violations == []

        bad = do.DigitalOcean(config(tmp_path), log=lambda _: None, client=client(api.url, token="nope"))
        with pytest.raises(UserError, match="DigitalOcean rejected the token"):
            bad.check_credentials()
    finally:
        api.stop()
