"""The cluster add-on chart (charts/qhub-cluster-addons) as qhubctl.addons fills it for each provider: what renders
(AWS with and without a GPU group; AKS Traefik and, with a GPU group, the device plugin; only Traefik where the cloud
runs its own autoscaler, StorageClass and device plugin; nothing on existing and local clusters by default),
every object valid (kubernetes-validate --strict) on the pinned Kubernetes versions, helm lint --strict, and the
config's settings, placements and IAM role arriving where cluster-autoscaler and the device plugin read them (on AKS:
onto the agent pools qhubctl makes for the GPU groups, tolerating their taints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl import addons
from qhubctl import nodegroups as ng
from qhubctl.chart import addons_chart_dir
from qhubctl.config import PROVIDERS, parse_config
from qhubctl.errors import CommandError
from qhubctl.proc import run
from qhubctl.providers import azure
from qhubctl.providers.base import AddonFacts, desired_groups

from .manifests import kube_versions, validation_errors

pytestmark = pytest.mark.chart
CHART = addons_chart_dir()
ROLE = "arn:aws:iam::123456789012:role/qhub/demo/demo-cluster-autoscaler"
FACTS = AddonFacts("demo", "eu-west-1", {addons.AUTOSCALER: ROLE})
CLUSTER = {
    "aws": {"provider": "aws", "region": "eu-west-1"}, "gcp": {"provider": "gcp", "project": "my-gcp-project"},
    "azure": {"provider": "azure"}, "digitalocean": {"provider": "digitalocean"},
    "existing": {"provider": "existing"}, "local": {"provider": "local"},
}
GPU_GROUPS = {"gpu": {"gpu": {"type": "nvidia-tesla-t4", "count": 1}},
              "a100": {"instance_type": "p4d.24xlarge", "gpu": {"type": "nvidia-tesla-a100", "count": 8}}}
AUTOSCALER_OBJECTS = {("ServiceAccount", "cluster-autoscaler"), ("ClusterRole", "qhub-cluster-addons-cluster-autoscaler"),
                      ("ClusterRoleBinding", "qhub-cluster-addons-cluster-autoscaler"),
                      ("Role", "qhub-cluster-addons-cluster-autoscaler"),
                      ("RoleBinding", "qhub-cluster-addons-cluster-autoscaler"),
                      ("Deployment", "qhub-cluster-addons-cluster-autoscaler")}
# Clouds whose GPU nodes get the NVIDIA driver but not the device plugin (EKS's NVIDIA AMI, AKS's GPU agent pools)
DEVICE_PLUGIN_PROVIDERS = ("aws", "azure")
DEVICE_PLUGIN_OBJECTS = {("DaemonSet", "qhub-cluster-addons-nvidia-device-plugin")}
TRAEFIK_OBJECTS = {("IngressClass", "qhub"), ("ServiceAccount", "qhub-cluster-addons-traefik"),
                   ("ClusterRole", "qhub-cluster-addons-traefik"), ("ClusterRoleBinding", "qhub-cluster-addons-traefik"),
                   ("Service", "qhub-cluster-addons-traefik"), ("Deployment", "qhub-cluster-addons-traefik")}


def config(provider: str, *, gpu: bool, extra: dict[str, Any] | None = None) -> Any:
    groups = dict(GPU_GROUPS) if gpu else {}
    if provider in ("existing", "local"):  # nodes qhubctl does not choose machine types for
        groups = {name: {"gpu": g["gpu"]} for name, g in groups.items()}
    if provider == "existing":  # an existing cluster's groups name their own nodes
        groups = {name: {**g, "node_selector": {"pool": name}} for name, g in groups.items()}
    return parse_config({"schema_version": 2, "project_name": "demo", "node_groups": groups,
                         "cluster": {**CLUSTER[provider], **(extra or {})}}, environ={})


def template(values: dict[str, Any], tmp_path: Path, kube_version: str = "1.35.0") -> list[dict[str, Any]]:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    out = run(["helm", "template", addons.RELEASE, str(CHART), "--namespace", addons.NAMESPACE,
               "--kube-version", kube_version, "-f", str(file)], timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def failure(values: dict[str, Any], tmp_path: Path, kube_version: str = "1.35.0") -> str:
    try:
        template(values, tmp_path, kube_version)
    except CommandError as err:
        return str(err)
    raise AssertionError(f"rendering {values} should have failed")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of `kind` besides Traefik's (tests/chart/test_ingress_controller_chart.py tests those)."""
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/name"] != "traefik"]
    return doc


@pytest.mark.parametrize("gpu", [False, True], ids=["no-gpu", "gpu"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_gets_what_its_cloud_lacks_and_it_validates(provider: str, gpu: bool, tmp_path: Path) -> None:
    values = addons.values(config(provider, gpu=gpu), FACTS)
    if provider in ("existing", "local"):  # not qhubctl's to change unless the config asks (ingress.controller)
        assert values == {}
        assert template(values, tmp_path) == []
        return
    # every cloud: Traefik; GKE, AKS and DOKS run their own autoscaler and StorageClass, GKE and DOKS their own
    # device plugin
    wanted = TRAEFIK_OBJECTS if provider != "aws" else AUTOSCALER_OBJECTS | {("StorageClass", "gp3")} | TRAEFIK_OBJECTS
    if gpu and provider in DEVICE_PLUGIN_PROVIDERS:
        wanted = wanted | DEVICE_PLUGIN_OBJECTS  # a new set: TRAEFIK_OBJECTS stays as it is
    for version in kube_versions():
        docs = template(values, tmp_path, version)
        assert {(d["kind"], d["metadata"]["name"]) for d in docs} == wanted
        assert validation_errors(docs, version) == [], f"Kubernetes {version}"
        if provider == "aws":
            image = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            assert f":v{version.rsplit('.', 1)[0]}." in image, "cluster-autoscaler's minor is the cluster's"


def test_helm_lint_strict_with_defaults_and_with_everything_on(tmp_path: Path) -> None:
    on = tmp_path / "aws.yaml"
    on.write_text(yaml.safe_dump(addons.values(config("aws", gpu=True), FACTS)))
    for extra in ([], ["-f", str(on)]):
        out = run(["helm", "lint", "--strict", str(CHART), "--kube-version", "1.35.0", *extra], timeout=120).stdout
        assert "0 chart(s) failed" in out, out


def test_autoscaler_settings_role_and_placement_come_from_the_config(tmp_path: Path) -> None:
    cfg = config("aws", gpu=False, extra={"autoscaler": {"expander": "most-pods", "scale_down_unneeded_minutes": 25,
                                                          "scale_down_delay_after_add_minutes": 0,
                                                          "scale_down_utilization_threshold": 0.7}})
    docs = template(addons.values(cfg, FACTS), tmp_path)
    spec = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    for arg in ("--expander=most-pods", "--scale-down-unneeded-time=25m", "--scale-down-delay-after-add=0m",
                "--scale-down-utilization-threshold=0.7", "--cloud-provider=aws", "--namespace=kube-system",
                "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/demo"):
        assert arg in args
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in spec["containers"][0]["env"]
    assert spec["nodeSelector"] == cfg.placements()[ng.GENERAL].node_selector == {ng.LABEL: ng.GENERAL}
    assert spec["serviceAccountName"] == "cluster-autoscaler"
    account = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    # the IAM role trusts exactly this account (providers.aws.iam), in the namespace the release goes to
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == ("kube-system", "cluster-autoscaler")


def test_autoscaler_rbac_is_least_privilege(tmp_path: Path) -> None:
    docs = template(addons.values(config("aws", gpu=False), FACTS), tmp_path)
    cluster_rules = by_kind(docs, "ClusterRole")["rules"]
    writes = {(g, r, v) for rule in cluster_rules for g in rule["apiGroups"] for r in rule["resources"]
              for v in rule["verbs"] if v not in ("get", "list", "watch")}
    assert writes == {("", "nodes", "update"), ("", "pods/eviction", "create"), ("", "pods/status", "update"),
                      ("", "events", "create"), ("", "events", "patch"), ("events.k8s.io", "events", "create"),
                      ("events.k8s.io", "events", "patch")}
    assert not any("secrets" in rule["resources"] or "*" in rule["resources"] + rule["verbs"] for rule in cluster_rules)
    role = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "kube-system"
    named = [rule for rule in role["rules"] if set(rule["verbs"]) - {"create"}]
    assert all(rule.get("resourceNames") for rule in named), "reads and writes in its namespace only by name"
    binding = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": "kube-system"}]


@pytest.mark.parametrize("provider", DEVICE_PLUGIN_PROVIDERS)
def test_device_plugin_runs_on_every_gpu_group_and_tolerates_their_taints(provider: str, tmp_path: Path) -> None:
    cfg = config(provider, gpu=True)
    spec = by_kind(template(addons.values(cfg, FACTS), tmp_path), "DaemonSet")["spec"]["template"]["spec"]
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": ng.LABEL, "operator": "In", "values": ["gpu", "a100"]}]
    taints = {t for name in ("gpu", "a100") for t in cfg.placements()[name].taints}
    assert {(t["key"], t["value"], t["effect"]) for t in spec["tolerations"]} == \
        {(t.key, t.value, t.effect) for t in taints}
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.19.0"


def tolerates(tolerations: list[dict[str, str]], taint: str) -> bool:
    """Whether a pod with these tolerations may run on a node with this taint (AKS's `key=value:Effect` text)."""
    keyval, _, effect = taint.partition(":")
    key, _, value = keyval.partition("=")
    return any(t["key"] == key and t.get("effect", effect) == effect
               and (t.get("operator") == "Exists" or t.get("value", "") == value) for t in tolerations)


def test_device_plugin_lands_on_the_aks_agent_pools_of_the_gpu_groups(tmp_path: Path) -> None:
    """AKS runs no device plugin on the pools qhubctl makes (AKS installs only the driver there): the release's
    DaemonSet must select exactly those pools' nodes by their labels and tolerate every taint they carry."""
    cfg = config("azure", gpu=True)
    spec = by_kind(template(addons.values(cfg, FACTS), tmp_path), "DaemonSet")["spec"]["template"]["spec"]
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    [expression] = term["matchExpressions"]
    pools = {g.name: azure.pool_body(g) for g in desired_groups(cfg)}
    for name, pool in pools.items():
        selected = pool["nodeLabels"].get(expression["key"]) in expression["values"]
        assert selected == (cfg.node_groups[name].gpu is not None), name
        if selected:
            assert pool["nodeTaints"] and all(tolerates(spec["tolerations"], t) for t in pool["nodeTaints"]), name


def test_storage_class_is_the_encrypted_gp3_default(tmp_path: Path) -> None:
    sc = by_kind(template(addons.values(config("aws", gpu=False), FACTS), tmp_path), "StorageClass")
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["parameters"]["type"] == "gp3" and sc["parameters"]["encrypted"] == "true"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"


def test_mistakes_are_refused_naming_the_value(tmp_path: Path) -> None:
    on = {"clusterAutoscaler": {"enabled": True, "awsRegion": "eu-west-1", "clusterName": "demo"}}
    no_name = {"clusterAutoscaler": {"enabled": True, "awsRegion": "eu-west-1"}}
    assert "clusterAutoscaler.clusterName is required" in failure(no_name, tmp_path)
    assert "clusterAutoscaler.image.tags has no cluster-autoscaler release for Kubernetes 1.40" in \
        failure(on, tmp_path, "1.40.0")
    pinned = template({"clusterAutoscaler": {**on["clusterAutoscaler"], "image": {"tag": "v1.40.1"}}}, tmp_path,
                      "1.40.0")
    assert by_kind(pinned, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.40.1")
    assert "expander" in failure({"clusterAutoscaler": {**on["clusterAutoscaler"], "expander": "price"}}, tmp_path)
    assert "scaleDownUnneededTime" in failure(
        {"clusterAutoscaler": {**on["clusterAutoscaler"], "scaleDownUnneededTime": "ten minutes"}}, tmp_path)
