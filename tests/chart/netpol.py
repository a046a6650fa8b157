"""Rendered NetworkPolicies evaluated with Kubernetes' semantics, for the chart tests that reason about who reaches
whom (test_netcheck_policies.py, test_network_reach.py).

A pod is selected by a policy of its own namespace; a pod selected by any policy of a type (Ingress, Egress) is
isolated for it, and the rules of every policy selecting it add up; traffic needs the source's egress and the
destination pod's ingress. Peers: a podSelector alone means pods of the policy's namespace, a namespaceSelector
(with an optional podSelector) pods of the namespaces it matches (by their kubernetes.io/metadata.name label), an
ipBlock the addresses in it - pod addresses included, as Calico, Cilium and the VPC CNI apply it, which is the
case that matters for a server admitting its clients by address. Named ports resolve against the destination
pod's container ports.

An endpoint is a dict: a pod {"namespace", "labels", optional "ip", optional "ports" {name: (number, protocol)}},
or an address outside the cluster's pods {"ip"} (a node, the internet), which no policy isolates.
"""

from __future__ import annotations

import ipaddress
from typing import Any

Endpoint = dict[str, Any]
PROTOCOLS = ("TCP", "UDP", "SCTP")


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


def is_pod(endpoint: Endpoint) -> bool:
    return "labels" in endpoint


def pod_from(doc: dict[str, Any], namespace: str, ip: str | None = None) -> Endpoint:
    """The pod a rendered workload (Deployment, StatefulSet, DaemonSet, Job, CronJob) runs."""
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
             for c in template["spec"]["containers"] for p in c.get("ports") or [] if p.get("name")}
    pod = {"name": f"{doc['kind']}/{doc['metadata']['name']}", "namespace": doc["metadata"].get("namespace", namespace),
           "labels": dict(template["metadata"]["labels"]), "ports": ports}
    return {**pod, "ip": ip} if ip else pod


class Policies:
    """The NetworkPolicies of a render; objects without a namespace are in `namespace` (the release's)."""

    def __init__(self, docs: list[dict[str, Any]] | tuple[dict[str, Any], ...], namespace: str) -> None:
        self.items = [(d["metadata"].get("namespace", namespace), d["spec"]) for d in docs
                      if d["kind"] == "NetworkPolicy"]
        self.numbers = sorted({p["port"] for _, spec in self.items for key in ("ingress", "egress")
                               for rule in spec.get(key) or [] for p in rule.get("ports") or []
                               if isinstance(p.get("port"), int)})

    def selecting(self, pod: Endpoint, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """The (namespace, spec) of every policy of `kind` that selects `pod`."""
        if not is_pod(pod):
            return []
        return [(ns, spec) for ns, spec in self.items if ns == pod["namespace"]
                and kind in spec.get("policyTypes", ["Ingress", *(["Egress"] if "egress" in spec else [])])
                and matches(spec["podSelector"], pod["labels"])]

    def allows(self, kind: str, pod: Endpoint, other: Endpoint, port: int, protocol: str, dest: Endpoint) -> bool:
        """Whether `pod`'s policies of `kind` (Egress: to `other`; Ingress: from `other`) let traffic to `dest`'s
        `port` through."""
        selecting = self.selecting(pod, kind)
        if not selecting:
            return True
        key, peers = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        return any(rule_allows(rule, peers, ns, other, port, protocol, dest)
                   for ns, spec in selecting for rule in spec.get(key) or [])

    def reaches(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self.allows("Egress", src, dst, port, protocol, dst) and \
            self.allows("Ingress", dst, src, port, protocol, dst)

    def open_ports(self, src: Endpoint, dst: Endpoint) -> list[tuple[int, str]]:
        """Every (port, protocol) on which `src` reaches `dst`, or rather one port of each range that is open: each
        policy allows a union of port ranges, and two unions meet only if one range's first port lies in the
        other, so trying 1, every number a policy names and the destination's named ports decides "any port"."""
        candidates = {1, *self.numbers, *(number for number, _ in (dst.get("ports") or {}).values())}
        return [(port, proto) for proto in PROTOCOLS for port in sorted(candidates)
                if self.reaches(src, dst, port, proto)]


def rule_allows(rule: dict[str, Any], peers_key: str, policy_ns: str, other: Endpoint, port: int, protocol: str,
                dest: Endpoint) -> bool:
    """Whether one rule (peers under `peers_key`: "to" or "from") of a policy in `policy_ns` admits `other` on
    `dest`'s `port`."""
    peers = rule.get(peers_key)
    return _port_ok(rule, port, protocol, dest) and (not peers or any(_peer_ok(p, policy_ns, other) for p in peers))


def _port_ok(rule: dict[str, Any], port: int, protocol: str, dest: Endpoint) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        want = entry.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            named = (dest.get("ports") or {}).get(want)
            if named and named == (port, protocol):
                return True
            continue
        if want <= port <= entry.get("endPort", want):
            return True
    return False


def _peer_ok(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not other.get("ip"):
            return False
        ip = ipaddress.ip_address(other["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not is_pod(other):
        return False
    if "namespaceSelector" in peer:
        ns_ok = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other["namespace"]})
    else:
        ns_ok = other["namespace"] == policy_ns
    return ns_ok and matches(peer.get("podSelector") or {}, other["labels"])
