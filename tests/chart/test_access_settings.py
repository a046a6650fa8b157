"""The SSH gateway's Service and Jitsi's media address, set in qhub-config.yaml (kubessh.service_type,
kubessh.load_balancer_source_ranges, jitsi.advertise_ips), reach the rendered objects (issue 15, item 17)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from qhubctl.config import load_config, parse_config
from qhubctl.helm import Helm
from qhubctl.values import chart_values

pytestmark = pytest.mark.chart
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OFFLINE = {"clusterIP": "10.96.0.50"}  # helm template has no cluster to pick the NFS server's address from


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    values["nfs"]["service"] = OFFLINE
    return asyncio.run(Helm(kubeconfig=os.devnull).render("qhub", "qhub", values))


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_config_sets_the_ssh_service_and_the_media_address() -> None:
    docs = _render(chart_values(load_config(CONFIGS / "aws.ok.ssh-jitsi-access.yaml", environ={})))
    ssh = _get(docs, "Service", "qhub-kubessh")
    assert ssh["spec"]["type"] == "LoadBalancer"
    assert ssh["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24", "2001:db8:1::/48"]
    jvb = _get(docs, "Deployment", "qhub-jitsi-jvb")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in jvb["env"]}
    assert env["JVB_ADVERTISE_IPS"] == "203.0.113.10,2001:db8::10" and "JVB_STUN_SERVERS" not in env
    for doc in (ssh, _get(docs, "Deployment", "qhub-jitsi-jvb")):
        kubernetes_validate.validate(doc, "1.35.0", strict=True)


def test_ssh_service_type_from_the_config() -> None:
    cfg = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "aws"},
                        "kubessh": {"service_type": "ClusterIP"}}, environ={})
    ssh = _get(_render(chart_values(cfg)), "Service", "qhub-kubessh")
    assert ssh["spec"]["type"] == "ClusterIP" and "loadBalancerSourceRanges" not in ssh["spec"]
