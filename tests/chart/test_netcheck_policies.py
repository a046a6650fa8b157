"""The pass path of `qhubctl check`, as far as it can run without a policy-enforcing network: the chart's own
NetworkPolicies (every component on) are evaluated for the canary pod the check starts, with Kubernetes'
NetworkPolicy semantics (tests/chart/netpol.py). An enforcing network plugin would let the canary reach DNS and the
proxy's public port and stop it at the hub's internal port, the metadata address and the NFS server (whose
policy admits the node ranges, here holding the pods' addresses too), and `decide` turns exactly that into
"enforced". If a chart change ever opened the hub, the metadata address or the NFS server to user servers, or
closed DNS or the proxy to them, this test fails: the check's premises are the chart's policies."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml
from jhrender import helm_template, merge

from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.netcheck import METADATA, Result, canary_pod, decide, targets
from qhubctl.values import chart_values

from .netpol import Policies, rule_allows

pytestmark = pytest.mark.chart
NS = "qhub"


@cache
def network() -> Policies:
    cfg = parse_config({
        "schema_version": SCHEMA_VERSION, "project_name": "netcheck", "cluster": {"provider": "aws"},
        "components": {"dask_gateway": True, "conda_store": True, "kubessh": True, "jitsi": True},
        "domain": "qhub.example.org", "tls": {"type": "upstream"},
    }, environ={})
    values = merge(chart_values(cfg), {"nfs": {"service": {"clusterIP": "10.96.0.52"}}})
    found = Policies([d for d in yaml.safe_load_all(helm_template(values).stdout) if d], NS)
    assert len([ns for ns, _ in found.items if ns == NS]) >= 10, "every component's policy rendered"
    return found


def reaches(source: dict[str, Any], dest: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    return network().reaches(source, dest, port, protocol)


def component(name: str, chart: str = "jupyterhub") -> dict[str, Any]:
    return {"namespace": NS, "labels": {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": "qhub",
                                        "app.kubernetes.io/component": name}}


def test_an_enforcing_network_would_pass_the_check() -> None:
    cfg = parse_config({"schema_version": SCHEMA_VERSION, "project_name": "netcheck", "cluster": {"provider": "aws"}},
                       environ={})
    probes = targets(cfg, ("10.96.0.10", 8081), ("10.96.0.11", 80), ("10.96.0.52", 2049))
    canary = {"namespace": NS, "labels": canary_pod(cfg, "c", "i", {}, probes)["metadata"]["labels"],
              "ip": "10.244.1.9"}
    nfs = {**component("nfs", chart="nfs"), "ip": "10.244.2.7", "ports": {"nfs": (2049, "TCP")}}
    assert network().selecting(canary, "Egress"), "a policy selects it"
    kube_dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    outcome = {
        "DNS": reaches(canary, kube_dns, 53, "UDP"),
        "the proxy's public port": reaches(canary, component("proxy"), 8000),
        "the hub's internal port": reaches(canary, component("hub"), 8081),
        "the cloud metadata address": reaches(canary, {"ip": METADATA}, 80),
        "the NFS server": reaches(canary, nfs, 2049),
    }
    assert outcome == {"DNS": True, "the proxy's public port": True, "the hub's internal port": False,
                       "the cloud metadata address": False, "the NFS server": False}
    assert reaches({"ip": "10.0.3.4"}, nfs, 2049), "a node mounts"
    assert reaches({**canary, "labels": {}}, nfs, 2049), "a pod no policy selects would get in by its address"
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
    for ns, spec in network().items:
        if "Egress" not in spec.get("policyTypes", []) or not spec.get("egress"):
            continue  # no egress at all (the NFS server talks to no one)
        rules = spec["egress"]
        name = f"{ns}/{spec['podSelector']}"
        for proto in ("UDP", "TCP"):
            assert any(rule_allows(r, "to", ns, kube_dns, 53, proto, kube_dns) for r in rules), \
                f"{name}: DNS over {proto}"
            assert not any(rule_allows(r, "to", ns, elsewhere, 53, proto, elsewhere) for r in rules), \
                f"{name}: 53 beyond kube-dns"
