"""The pass path of `qhubctl check`, as far as it can run without a policy-enforcing network: the chart's own
NetworkPolicies (every component on) are evaluated for the canary pod the check starts, with Kubernetes'
NetworkPolicy semantics (a pod selected by any policy of a type is isolated for it; rules of all selecting
policies add up; traffic needs the source's egress and the destination pod's ingress). An enforcing network
plugin would let the canary reach DNS and the proxy's public port and stop it at the hub's internal port and the
metadata address, and `decide` turns exactly that into "enforced". If a chart change ever opened the hub or the
metadata address to user servers, or closed DNS or the proxy to them, this test fails: the check's premises
are the chart's policies."""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

import pytest
import yaml
from jhrender import helm_template, merge

from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.netcheck import METADATA, Result, canary_pod, decide, targets
from qhubctl.values import chart_values

pytestmark = pytest.mark.chart
NS = "qhub"


@cache
def policies() -> tuple[dict[str, Any], ...]:
    cfg = parse_config({
        "schema_version": SCHEMA_VERSION, "project_name": "netcheck", "cluster": {"provider": "aws"},
        "components": {"dask_gateway": True, "conda_store": True, "kubessh": True, "jitsi": True},
        "domain": "qhub.example.org", "tls": {"type": "upstream"},
    }, environ={})
    values = merge(chart_values(cfg), {"nfs": {"service": {"clusterIP": "10.96.0.52"}}})
    docs = [d for d in yaml.safe_load_all(helm_template(values).stdout) if d]
    found = tuple(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"].get("namespace", NS) == NS)
    assert len(found) >= 10, "every component's policy rendered"
    return found


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in vals) or (op == "NotIn" and key in labels and labels[key] in vals) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def peer_matches(peer: dict[str, Any], other: dict[str, Any]) -> bool:
    """`other`: {"labels", "namespace"} for a pod, {"ip"} for an address outside the cluster's pods."""
    if "ipBlock" in peer:
        if "ip" not in other:
            return False
        ip = ipaddress.ip_address(other["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if "ip" in other:
        return False
    same_ns = other["namespace"] == NS
    if "namespaceSelector" in peer:
        ns_ok = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other["namespace"]})
    else:
        ns_ok = same_ns
    return ns_ok and matches(peer.get("podSelector") or {}, other["labels"])


def rule_allows(rule: dict[str, Any], peers_key: str, other: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_matches(p, other) for p in peers)


def allowed(kind: str, pod: dict[str, Any], other: dict[str, Any], port: int, protocol: str) -> bool:
    """Whether `pod`'s policies of `kind` (Egress: to `other`; Ingress: from `other`) let the traffic through."""
    if pod["namespace"] != NS:
        return True  # no QHub policy selects pods elsewhere (kube-dns in kube-system)
    selecting = [p["spec"] for p in policies() if matches(p["spec"]["podSelector"], pod["labels"])
                 and kind in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    key, peers = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    return any(rule_allows(rule, peers, other, port, protocol) for spec in selecting for rule in spec.get(key) or [])


def reaches(source: dict[str, Any], dest: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    if not allowed("Egress", source, dest, port, protocol):
        return False
    return "ip" in dest or allowed("Ingress", dest, source, port, protocol)


def component(name: str, chart: str = "jupyterhub") -> dict[str, Any]:
    return {"namespace": NS, "labels": {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": "qhub",
                                        "app.kubernetes.io/component": name}}


def test_an_enforcing_network_would_pass_the_check() -> None:
    cfg = parse_config({"schema_version": SCHEMA_VERSION, "project_name": "netcheck", "cluster": {"provider": "aws"}},
                       environ={})
    probes = targets(cfg, ("10.96.0.10", 8081), ("10.96.0.11", 80))
    canary = {"namespace": NS, "labels": canary_pod(cfg, "c", "i", {}, probes)["metadata"]["labels"]}
    assert any(matches(p["spec"]["podSelector"], canary["labels"]) for p in policies()), "a policy selects it"
    kube_dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    outcome = {
        "DNS": reaches(canary, kube_dns, 53, "UDP"),
        "the proxy's public port": reaches(canary, component("proxy"), 8000),
        "the hub's internal port": reaches(canary, component("hub"), 8081),
        "the cloud metadata address": reaches(canary, {"ip": METADATA}, 80),
    }
    assert outcome == {"DNS": True, "the proxy's public port": True, "the hub's internal port": False,
                       "the cloud metadata address": False}
    verdict = decide([Result(t, outcome[t.name], "evaluated") for t in probes], "aws")
    assert verdict.enforced and verdict.conclusive, verdict


def test_the_evaluator_is_not_vacuous() -> None:
    """The same evaluation admits what the policies do allow: the proxy reaches the hub's 8081, a pod labelled
    qhub.dev/access-hub does too, and user servers reach public addresses."""
    proxy, hub = component("proxy"), component("hub")
    assert reaches(proxy, hub, 8081)
    helper = {"namespace": NS, "labels": {"qhub.dev/access-hub": "true", "app.kubernetes.io/instance": "qhub"}}
    assert reaches(helper, hub, 8081)
    assert reaches(component("singleuser"), {"ip": "203.0.113.7"}, 443)
    assert not reaches(component("singleuser"), {"ip": "10.1.2.3"}, 443), "private ranges stay closed"


def test_dns_goes_to_the_cluster_dns_only() -> None:
    """Every policy with egress lets its pods resolve names, through kube-dns pods only: port 53 of other pods stays
    closed (public addresses are a separate matter, open to the pods that may use the internet)."""
    kube_dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    elsewhere = {"namespace": "kube-system", "labels": {"k8s-app": "not-dns"}}
    for pol in policies():
        spec = pol["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not spec.get("egress"):
            continue  # no egress at all (the NFS server talks to no one)
        rules = spec["egress"]
        name = pol["metadata"]["name"]
        for proto in ("UDP", "TCP"):
            assert any(rule_allows(r, "to", kube_dns, 53, proto) for r in rules), f"{name}: DNS over {proto}"
            assert not any(rule_allows(r, "to", elsewhere, 53, proto) for r in rules), f"{name}: 53 beyond kube-dns"
