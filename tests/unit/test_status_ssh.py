"""`qhubctl status`'s SSH line on a NodePort: the gateway's Service keeps clients' addresses (externalTrafficPolicy
Local), so only the nodes running a gateway pod answer, and status names one of those (or the local cluster's own
address), never an arbitrary node."""

from __future__ import annotations

from typing import Any

import pytest

from qhubctl import status
from qhubctl.config import SCHEMA_VERSION, parse_config

pytestmark = pytest.mark.unit

NODEPORT = {"spec": {"type": "NodePort", "ports": [{"port": status.SSH_PORT, "nodePort": 30022}]}}


def config(provider: str) -> Any:
    return parse_config({"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": {"provider": provider},
                         "kubessh": {"service_type": "NodePort"}}, environ={})


def fake_cluster(monkeypatch: pytest.MonkeyPatch, pods: list[dict[str, Any]], nodes: dict[str, Any]) -> list[str]:
    asked: list[str] = []

    def rest(api: Any, method: str, path: str, **kw: Any) -> Any:
        asked.append(path)
        if path.endswith("/services/qhub-kubessh"):
            return NODEPORT
        return nodes.get(path.rsplit("/", 1)[-1]) if "/nodes/" in path else None

    def items(api: Any, path: str, **query: Any) -> list[dict[str, Any]]:
        asked.append(f"{path}?{query}")
        return pods if path.endswith("/pods") else []

    monkeypatch.setattr(status.kube, "_rest", rest)
    monkeypatch.setattr(status.kube, "_items", items)
    return asked


def node(*addresses: tuple[str, str]) -> dict[str, Any]:
    return {"status": {"addresses": [{"type": kind, "address": value} for kind, value in addresses]}}


def test_the_line_names_a_node_that_runs_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_cluster(monkeypatch, [{"spec": {"nodeName": "n2"}}],
                         {"n1": node(("ExternalIP", "203.0.113.1")),
                          "n2": node(("InternalIP", "10.0.0.2"), ("ExternalIP", "203.0.113.2"))})
    line, = status.ssh_access(config("existing"), None)
    assert line.startswith("ssh: ssh -p 30022 <user>@203.0.113.2 "), line
    assert any("app.kubernetes.io/component=kubessh" in a and "app.kubernetes.io/instance=qhub" in a for a in asked)


def test_an_internal_address_when_the_node_has_no_external_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cluster(monkeypatch, [{"spec": {"nodeName": "n1"}}], {"n1": node(("InternalIP", "10.0.0.7"))})
    assert "<user>@10.0.0.7 " in status.ssh_access(config("existing"), None)[0]


def test_no_running_gateway_says_which_node_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cluster(monkeypatch, [{"spec": {}}], {})  # pending: no node yet
    assert "<user>@<the address of a node that runs the gateway's pod> " in status.ssh_access(config("existing"),
                                                                                               None)[0]


def test_the_local_cluster_answers_on_its_own_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_cluster(monkeypatch, [], {})
    assert "<user>@127.0.0.1 " in status.ssh_access(config("local"), None)[0]
    assert not any("/pods" in a for a in asked)
