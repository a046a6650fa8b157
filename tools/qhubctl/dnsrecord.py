"""The DNS record a platform with a domain needs: `qhubctl deploy` (at its end) and `qhubctl status` print it.

With QHub's Traefik (the cluster add-ons) the record points at its Service: an A record for a load balancer with
an IP address, a CNAME for one with a host name (AWS), "pending" with the reason while the cloud has given it no
address yet, and on a cluster without load balancers (local) the NodePorts to reach it on. With another
controller it points at the address that controller published in the platform's Ingress status. Nothing without a
domain: the platform is then reached by the addresses `status` lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qhubctl import addons, kube
from qhubctl.config.model import QHubConfig


@dataclass(frozen=True)
class Target:
    """Where the domain must point: what serves it, and what the API says about it (None: not there)."""

    what: str  # e.g. "Traefik's Service kube-system/qhub-cluster-addons-traefik"
    obj: dict[str, Any] | None
    warnings: tuple[str, ...] = ()  # the object's Warning events, newest last
    makes_it: str = "`qhubctl cluster create` installs QHub's Traefik with the cluster add-ons"


def _address(obj: dict[str, Any]) -> tuple[str, str] | None:
    """("A", ip) or ("CNAME", hostname) of the first load-balancer ingress point in the object's status."""
    for point in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if point.get("ip"):
            return "A", str(point["ip"])
        if point.get("hostname"):
            return "CNAME", f"{point['hostname']}."
    return None


def _node_ports(svc: dict[str, Any]) -> dict[int, int]:
    return {int(p["port"]): int(p["nodePort"]) for p in (svc.get("spec") or {}).get("ports") or []
            if p.get("nodePort")}


def record_lines(domain: str, target: Target, node_host: str) -> list[str]:
    """The lines saying which record to create for `domain`, or why there is none yet."""
    if target.obj is None:
        return [f"DNS: pending: {target.what} does not exist yet ({target.makes_it})"]
    spec = target.obj.get("spec") or {}
    if spec.get("type") == "NodePort":
        ports = _node_ports(target.obj)
        return [f"DNS: {target.what} is a NodePort (no load balancer on this cluster): point {domain} at a node "
                f"({node_host}, e.g. `{node_host} {domain}` in /etc/hosts) and use "
                f"http://{domain}:{ports.get(80, '?')}/ and https://{domain}:{ports.get(443, '?')}/"]
    address = _address(target.obj)
    if address is not None:
        kind, value = address
        return [f"DNS: create the record  {domain}. {kind} {value}  (at your DNS provider; {target.what})"]
    reason = target.warnings[-1] if target.warnings else "the cloud is still creating the load balancer"
    return [f"DNS: pending: {target.what} has no address yet ({reason}); run `qhubctl status` again in a minute"]


def _warnings(api: Any, namespace: str, kind: str, name: str) -> tuple[str, ...]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
    events = kube._items(api, f"/api/v1/namespaces/{namespace}/events", fieldSelector=selector)
    events.sort(key=lambda ev: ev.get("lastTimestamp") or ev.get("eventTime") or "")
    return tuple(f"{ev.get('reason')}: {ev.get('message', '').strip()}" for ev in events)


def target(cfg: QHubConfig, api: Any) -> Target:
    """QHub's Traefik Service when it is the controller, else the platform's Ingress."""
    if cfg.ingress_controller:
        ns, name = addons.NAMESPACE, addons.TRAEFIK_SERVICE
        svc = kube._rest(api, "GET", f"/api/v1/namespaces/{ns}/services/{name}")
        warnings = _warnings(api, ns, "Service", name) if svc is not None else ()
        return Target(f"Traefik's Service {ns}/{name}", svc, warnings)
    name = cfg.release_name  # the chart's Ingress carries the release's full name
    ingress = kube._rest(api, "GET", f"/apis/networking.k8s.io/v1/namespaces/{cfg.namespace}/ingresses/{name}")
    what = f"the Ingress {cfg.namespace}/{name} (its controller publishes the address)"
    return Target(what, ingress, ("your ingress controller has not published an address in its status",),
                  "`qhubctl deploy` creates it")


def lines(cfg: QHubConfig, api: Any) -> list[str]:
    """`deploy` and `status`: the record to create for the config's domain; nothing without a domain."""
    if not cfg.domain:
        return []
    return record_lines(cfg.domain, target(cfg, api), cfg.cluster.node_address)
