"""Every provider x feature combination maps to values that `helm template` renders into objects that pass
kubernetes-validate --strict (the chart as it is on disk)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from qhubctl.config import PROVIDERS, parse_config
from qhubctl.helm import Helm
from qhubctl.values import chart_values

pytestmark = pytest.mark.chart
REPO = Path(__file__).resolve().parents[2]
VERSIONS = os.environ.get("VALIDATE_KUBE_VERSIONS", "")
KUBE_VERSION = (VERSIONS.split() or ["1.35.0"])[-1]
# helm template has no cluster to pick the NFS server's ClusterIP from; a deploy gets it from the cluster.
_VALID: set[str] = set()
OFFLINE = {"nfs": {"service": {"clusterIP": "10.96.0.50"}}}

CLUSTER = {
    "aws": {"provider": "aws"}, "gcp": {"provider": "gcp", "project": "my-gcp-project"},
    "azure": {"provider": "azure"}, "digitalocean": {"provider": "digitalocean"},
    "existing": {"provider": "existing"}, "local": {"provider": "local"},
}
FEATURES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "domain-tls-github": {
        "domain": "qhub.example.org", "tls": {"type": "cert-manager", "issuer": "letsencrypt"},
        "auth": {"type": "github", "client_id": "x", "allowed_organizations": ["org"],
                 "client_secret": {"secretRef": {"name": "gh", "key": "secret"}},
                 "users": {"ann": {"groups": ["ml"]}}, "groups": {"ml": {"gid": 3001}}, "admins": ["ann"]},
    },
    "gpu-custom-groups": {
        "node_groups": {"gpu": {"gpu": {"type": "nvidia-tesla-t4", "count": 1}}, "highmem": {"max_nodes": 2}},
        "profiles": {
            "jupyterlab": [{"name": "small", "display_name": "S", "default": True},
                           {"name": "gpu", "display_name": "G", "gpus": 1, "node_group": "gpu"},
                           {"name": "big", "display_name": "B", "node_group": "highmem"}],
            "dask_worker": [{"name": "w", "display_name": "W", "gpus": 1, "node_group": "gpu"}],
        },
        # GPU profiles are for profiles.gpu_group's members unless opened to everyone
        "auth": {"type": "native", "admins": ["admin"], "users": {"admin": {"groups": ["gpu-users"]}},
                 "groups": {"gpu-users": {"gid": 3100}}},
    },
    "existing-storage-oidc": {
        "storage": {"type": "existing", "storage_class": "rwx"},
        "auth": {"type": "oidc", "client_id": "q", "client_secret": {"secretRef": {"name": "o", "key": "k"}},
                 "authorize_url": "https://id.example.com/a", "token_url": "https://id.example.com/t",
                 "userdata_url": "https://id.example.com/u", "groups_claim": "groups", "allowed_groups": ["staff"]},
    },
    "hub-only": {"components": {"dask_gateway": False, "conda_store": False, "kubessh": False, "jitsi": False}},
    "everything-dummy": {"components": {"jitsi": True}, "auth": {"type": "dummy", "users": {"t": {}}},
                         "domain": "qhub.example.net", "tls": {"type": "secret", "secret_name": "tls"}},
}


def _config(provider: str, feature: str) -> dict[str, Any]:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": dict(CLUSTER[provider]),
           **copy.deepcopy(FEATURES[feature])}
    return raw


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(kubeconfig=os.devnull)


@pytest.mark.parametrize("feature", sorted(FEATURES))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_render_validates(helm: Helm, provider: str, feature: str) -> None:
    cfg = parse_config(_config(provider, feature), environ={})
    values = chart_values(cfg)
    if values["nfs"]["enabled"]:
        values = _merge(values, OFFLINE)
    docs = asyncio.run(helm.render("qhub", "qhub", values))
    kinds = {d["kind"] for d in docs}
    assert "Deployment" in kinds
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        if "." in group and not group.endswith("k8s.io"):
            continue  # custom resources: no upstream schema to check them against
        key = json.dumps(doc, sort_keys=True)
        if key not in _VALID:  # identical objects recur across combinations; validate each once
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            _VALID.add(key)
    placed = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    selectors = {tuple(sorted((d["spec"]["template"]["spec"].get("nodeSelector") or {}).items())) for d in placed}
    assert selectors <= {tuple(sorted(g["nodeSelector"].items())) for g in values["global"]["nodeGroups"].values()}
