"""`qhubctl status`: what runs, where, and how to reach and log in to it, read from the cluster's real Services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from qhubctl import addons, dnsrecord, kube
from qhubctl.backup import schedule
from qhubctl.config.model import QHubConfig
from qhubctl.helm import Deployed, Helm

PATHS = {"jupyterhub": "/hub/", "dask_gateway": "/services/dask-gateway/", "conda_store": "/conda-store/"}
SSH_PORT = 8022  # the kubessh Service's ssh port (SFTP-only: 8023)


@dataclass
class Status:
    release: Deployed | None
    workloads: list[kube.Workload]
    access: list[str] = field(default_factory=list)  # how to reach each service and log in, one line each
    node_groups: dict[str, str] = field(default_factory=dict)
    backups: list[str] = field(default_factory=list)  # the backup schedule and how its last runs ended

    @property
    def healthy(self) -> bool:
        return self.release is not None and self.release.status == "deployed" and all(w.done for w in self.workloads)


def _service(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return kube._rest(api, "GET", f"/api/v1/namespaces/{namespace}/services/{name}")


def _node_port(svc: dict[str, Any], port: int) -> int | None:
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("port") == port and p.get("nodePort"):
            return int(p["nodePort"])
    return None


def _lb_address(svc: dict[str, Any]) -> str | None:
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if ing.get("hostname") or ing.get("ip"):
            return str(ing.get("hostname") or ing.get("ip"))
    return None


def _node_host(cfg: QHubConfig) -> str:
    # the local cluster's real node answers NodePorts on the loopback address; elsewhere any node's address does
    return cfg.cluster.node_address


def hub_access(cfg: QHubConfig, api: Any) -> tuple[str | None, list[str]]:
    """The base URL of the platform (None when it needs a port-forward first) and the lines saying how to reach it."""
    if cfg.domain:
        scheme = "http" if cfg.tls.type == "none" else "https"
        return f"{scheme}://{cfg.domain}", dnsrecord.lines(cfg, api)
    if cfg.ingress_controller:  # the Ingress serves any host through QHub's Traefik: its address
        traefik = _service(api, addons.NAMESPACE, addons.TRAEFIK_SERVICE)
        if traefik is not None and _lb_address(traefik):
            return f"http://{_lb_address(traefik)}", [f"(through Traefik, {addons.NAMESPACE}/{addons.TRAEFIK_SERVICE})"]
    name = f"{cfg.release_name[:40].rstrip('-')}-proxy-public"
    svc = _service(api, cfg.namespace, name)
    if svc is None:
        return None, [f"the Service {name} does not exist (JupyterHub off or not deployed yet)"]
    kind = (svc.get("spec") or {}).get("type")
    if kind == "NodePort" and _node_port(svc, 80):
        return f"http://{_node_host(cfg)}:{_node_port(svc, 80)}", []
    if kind == "LoadBalancer" and _lb_address(svc):
        return f"http://{_lb_address(svc)}", []
    forward = f"kubectl --namespace {cfg.namespace} port-forward service/{name} 8080:80"
    return "http://localhost:8080", [f"first run: {forward}  (the Service is {kind}, not reachable from here)"]


def _gateway_node(cfg: QHubConfig, api: Any) -> str:
    """Where the SSH NodePorts answer. The Service keeps clients' addresses (externalTrafficPolicy Local), so only
    the nodes that run a gateway pod answer: on a cluster without load balancers, qhubctl's own (the local one), its
    known address; elsewhere the external (else internal) address of the node a gateway pod runs on."""
    if cfg.cluster.node_ports:
        return _node_host(cfg)
    selector = f"app.kubernetes.io/instance={cfg.release_name},app.kubernetes.io/component=kubessh"
    for pod in kube._items(api, f"/api/v1/namespaces/{cfg.namespace}/pods", labelSelector=selector):
        node = (pod.get("spec") or {}).get("nodeName")
        found = kube._rest(api, "GET", f"/api/v1/nodes/{node}") if node else None
        listed = ((found or {}).get("status") or {}).get("addresses") or []
        addresses = {a.get("type"): a.get("address") for a in listed}
        if addresses.get("ExternalIP") or addresses.get("InternalIP"):
            return str(addresses.get("ExternalIP") or addresses.get("InternalIP"))
    return "<the address of a node that runs the gateway's pod>"


def ssh_access(cfg: QHubConfig, api: Any) -> list[str]:
    name = f"{cfg.release_name[:40].rstrip('-')}-kubessh"
    svc = _service(api, cfg.namespace, name)
    if svc is None:
        return [f"ssh: the Service {name} does not exist"]
    kind = (svc.get("spec") or {}).get("type")
    how = "user name and a JupyterHub API token (from /hub/token) as the password"
    if kind == "NodePort" and _node_port(svc, SSH_PORT):
        return [f"ssh: ssh -p {_node_port(svc, SSH_PORT)} <user>@{_gateway_node(cfg, api)}  ({how}; NodePort of "
                f"{name})"]
    if kind == "LoadBalancer" and _lb_address(svc):
        return [f"ssh: ssh -p {SSH_PORT} <user>@{_lb_address(svc)}  ({how})"]
    return [f"ssh: first run: kubectl --namespace {cfg.namespace} port-forward service/{name} {SSH_PORT}:{SSH_PORT}",
            f"     then: ssh -p {SSH_PORT} <user>@localhost  ({how})"]


def login_lines(cfg: QHubConfig) -> list[str]:
    from qhubctl.deploy import ADMIN_PASSWORDS_KEY, hub_secret_name

    secret = f"kubectl --namespace {cfg.namespace} get secret {hub_secret_name(cfg)} -o jsonpath="
    kind = cfg.auth.type
    admins = ", ".join(getattr(cfg.auth, "admins", []) or [])
    if kind == "native":
        return [f"log in: admins ({admins or 'none configured'}) with the password generated at the first deploy: "
                f"{secret}'{{.data.{ADMIN_PASSWORDS_KEY}}}' | base64 -d",
                "        others sign up at /hub/signup and wait for an admin's approval at /hub/authorize"]
    if kind == "dummy":
        return [f"log in (trial mode): an allowed user name with the shared password: "
                f"{secret}'{{.data.dummy-password}}' | base64 -d"]
    return [f"log in: the hub's \"Sign in\" button ({kind}); admins: {admins or 'none configured'}"]


def access(cfg: QHubConfig, api: Any) -> list[str]:
    lines: list[str] = []
    if cfg.components.jupyterhub:
        base, notes = hub_access(cfg, api)
        for comp, path in PATHS.items():
            if getattr(cfg.components, comp) and base:
                lines.append(f"{comp}: {base}{path}")
        lines += notes
        lines += login_lines(cfg)
    if cfg.components.kubessh:
        lines += ssh_access(cfg, api)
    return lines


def gather(cfg: QHubConfig, helm: Helm, api: Any) -> Status:
    release = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    groups = {name: ", ".join(f"{k}={v}" for k, v in p.node_selector.items())
              for name, p in cfg.placements().items()}
    if release is None:  # nothing to reach: no URLs that would not answer
        return Status(None, kube.workloads(api, cfg.namespace), [], groups)
    return Status(release, kube.workloads(api, cfg.namespace), access(cfg, api), groups,
                  schedule.last_runs(api, cfg))
