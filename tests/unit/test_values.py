"""Config -> Helm values mapping: deterministic, secret-free, faithful to the config and the shared node groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qhubctl import nodegroups as ng
from qhubctl.config import load_config, parse_config
from qhubctl.config.profiles import GPU_GROUP
from qhubctl.schema import reference_markdown
from qhubctl.errors import ConfigError
from qhubctl.values import IMAGE_ENVIRONMENT, chart_values, image_parts, kubespawner_bytes, subchart_defaults

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "configs"


def _cfg(name: str, **environ: str):
    return load_config(CONFIGS / name, environ=environ)


def test_deterministic_and_sorted() -> None:
    a = json.dumps(chart_values(_cfg("aws.ok.full.yaml")))
    b = json.dumps(chart_values(_cfg("aws.ok.full.yaml")))
    assert a == b
    assert list(json.loads(a)) == sorted(json.loads(a))


def test_node_groups_from_shared_definition() -> None:
    values = chart_values(_cfg("aws.ok.full.yaml"))
    groups = values["global"]["nodeGroups"]
    assert groups["general"] == {"nodeSelector": {ng.LABEL: "general"}, "tolerations": []}
    assert groups["gpu"]["tolerations"] == [
        {"key": ng.LABEL, "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
    ]
    assert "highmem" in groups


def test_no_secret_values_in_output() -> None:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
           "auth": {"type": "github", "client_id": "cid", "allowed_organizations": ["org"]}}
    cfg = parse_config(raw, environ={"QHUB_SECRET__auth__client_secret": "topsecret-123"})
    values = chart_values(cfg)
    assert "topsecret-123" not in json.dumps(values)
    github = values["jupyterhub"]["auth"]["github"]
    assert (github["existingSecret"], github["key"]) == ("qhub-qhubctl-secrets", "auth-client-secret")


def test_profiles_replace_chart_defaults() -> None:
    values = chart_values(_cfg("aws.ok.full.yaml"))
    profiles = values["jupyterhub"]["singleuser"]["profiles"]
    chart_slugs = set((subchart_defaults("jupyterhub").get("singleuser") or {}).get("profiles") or {})
    for slug in chart_slugs - {"small", "gpu", "big"}:
        assert profiles[slug] == {"enabled": False}
    assert profiles["gpu"]["gpus"] == 1 and profiles["gpu"]["groups"] == ["ml"]
    assert profiles["big"]["memory"] == {"guarantee": "24G", "limit": "32G"}
    dask = values["dask-gateway"]["clusters"]
    assert [p["name"] for p in dask["profiles"]] == ["small", "gpu"]
    assert dask["profiles"][1]["memory"] == 16


def test_gpu_profiles_go_to_the_gpu_group_unless_opened() -> None:
    """A GPU profile without access groups: the hub gets the gate group (it applies the rule to JupyterLab profiles);
    Dask worker profiles carry the resulting groups, since the dask-gateway chart has no GPU rule of its own."""
    values = chart_values(_cfg("aws.ok.full.yaml"))
    lab = values["jupyterhub"]["singleuser"]
    assert lab["gpuGroup"] == "gpu-users" == GPU_GROUP
    assert (lab["profiles"]["gpu"]["groups"], lab["profiles"]["gpu"]["allowAll"]) == (["ml"], False)
    assert (lab["profiles"]["small"]["groups"], lab["profiles"]["small"]["allowAll"]) == ([], False)
    dask = {p["name"]: p for p in values["dask-gateway"]["clusters"]["profiles"]}
    assert dask["gpu"]["groups"] == ["gpu-users"] and dask["small"]["groups"] == []
    opened = chart_values(_cfg("gcp.ok.gpu.yaml"))["jupyterhub"]["singleuser"]["profiles"]["gpu"]
    assert (opened["groups"], opened["allowAll"]) == ([], True)
    renamed = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                            "auth": {"type": "dummy", "allow_all": True, "groups": {"ml": {"gid": 3001}}},
                            "node_groups": {"gpu": {"gpu": {"count": 1}}},
                            "profiles": {"gpu_group": "ml", "dask_worker": [
                                {"name": "gpu", "display_name": "GPU", "gpus": 1, "node_group": "gpu"}]}},
                           environ={})
    values = chart_values(renamed)
    assert values["jupyterhub"]["singleuser"]["gpuGroup"] == "ml"
    assert values["dask-gateway"]["clusters"]["profiles"][0]["groups"] == ["ml"]


def _dask_envs(components: dict[str, bool], environments: list[dict] | None = None) -> list[dict[str, str]]:
    raw: dict = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                 "components": components}
    if environments is not None:
        raw["environments"] = environments
    return chart_values(parse_config(raw))["dask-gateway"]["clusters"]["environments"]


def test_config_environments_become_dask_environment_choices() -> None:
    """With conda-store on, each environment with `dask` (default true) is a choice at its global prefix, after the
    image's own environment (the default choice); without an environment to offer, or conda-store, no choice."""
    geo = {"name": "geo", "dependencies": ["python=3.12", "dask", "distributed"]}
    notes = {"name": "notes", "dependencies": ["python=3.12", "ipykernel"], "dask": False}
    envs = _dask_envs({"conda_store": True}, [geo, notes, {**geo, "name": "ml"}])
    assert envs == [
        {"name": IMAGE_ENVIRONMENT, "displayName": "The Dask image's own environment", "prefix": ""},
        {"name": "geo", "displayName": "geo (conda-store, global)", "prefix": "/opt/conda-store/global/envs/geo"},
        {"name": "ml", "displayName": "ml (conda-store, global)", "prefix": "/opt/conda-store/global/envs/ml"},
    ]
    # the prefix is where the dask-gateway chart mounts conda-store's folder, under conda-store's global namespace
    mount = subchart_defaults("dask-gateway")["clusters"]["condaStore"]["mountPath"]
    namespace = subchart_defaults("conda-store")["permissions"]["globalNamespace"]
    assert envs[1]["prefix"] == f"{mount}/{namespace}/envs/geo"
    assert [e["name"] for e in _dask_envs({"conda_store": True})] == [IMAGE_ENVIRONMENT, "dask"]  # the default env
    assert _dask_envs({"conda_store": True}, [notes]) == []
    assert _dask_envs({"conda_store": True}, []) == []
    assert _dask_envs({"conda_store": False}, [geo]) == []


def test_the_image_choice_cannot_clash_with_an_environment_name() -> None:
    with pytest.raises(ConfigError):
        parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                      "environments": [{"name": IMAGE_ENVIRONMENT, "dependencies": ["dask"]}]})


def test_gpu_group_default_matches_the_chart() -> None:
    assert subchart_defaults("jupyterhub")["singleuser"]["gpuGroup"] == GPU_GROUP


def test_components_storage_and_tls() -> None:
    values = chart_values(_cfg("azure.ok.existing-storage.yaml"))
    assert values["nfs"]["enabled"] is False
    assert values["sharedStorage"] == {"existingStorageClass": "azurefile-csi", "size": "500Gi"}
    values = chart_values(_cfg("azure.ok.minimal-components.yaml"))
    assert values["dask-gateway"] == {"enabled": False}
    assert values["jupyterhub"]["hub"]["services"]["dask-gateway"]["enabled"] is False
    values = chart_values(_cfg("aws.ok.full.yaml"))
    assert values["global"]["tls"] == {"mode": "cert-manager", "secretName": "",
                                       "certManager": {"issuer": "letsencrypt", "issuerKind": "ClusterIssuer"}}
    assert values["jupyterhub"]["singleuser"]["image"] == {"registry": "ghcr.io", "repository": "org/lab",
                                                           "tag": "2025.1"}
    assert values["jupyterhub"]["groups"] == {"ml": {"gid": 3001, "users": ["alice"]},
                                              "gpu-users": {"gid": 3002, "users": []}}


def test_helpers() -> None:
    assert image_parts("jupyter/lab") == {"registry": "", "repository": "jupyter/lab", "tag": ""}
    assert image_parts("localhost:5000/lab:1")["registry"] == "localhost:5000"
    assert kubespawner_bytes("8Gi") == "8G" and kubespawner_bytes("1500Mi") == "1500M"


def test_config_reference_is_current() -> None:
    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == reference_markdown(), "run: python scripts/gen_config_reference.py"


def test_ssh_service_and_jitsi_media_address_come_from_the_config() -> None:
    """kubessh.service_type / load_balancer_source_ranges and jitsi.advertise_ips reach the chart's
    kubessh.service and jitsi.jvb.advertiseIPs; left unset, the provider's default type (NodePort on local)."""
    values = chart_values(load_config(CONFIGS / "aws.ok.ssh-jitsi-access.yaml", environ={}))
    assert values["kubessh"]["service"] == {"loadBalancerSourceRanges": ["198.51.100.0/24", "2001:db8:1::/48"]}
    assert values["jitsi"]["jvb"]["advertiseIPs"] == ["203.0.113.10", "2001:db8::10"]
    base = {"schema_version": 2, "project_name": "demo"}
    local = chart_values(parse_config({**base, "cluster": {"provider": "local"}}, environ={}))
    assert local["kubessh"]["service"] == {"loadBalancerSourceRanges": [], "type": "NodePort"}
    private = chart_values(parse_config({**base, "cluster": {"provider": "local"},
                                         "kubessh": {"service_type": "ClusterIP"}}, environ={}))
    assert private["kubessh"]["service"]["type"] == "ClusterIP"
