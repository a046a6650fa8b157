"""Who reaches the NFS server, and what user servers still reach, by the rendered chart's NetworkPolicies
(tests/chart/netpol.py), with the NFS server in the release namespace (the default) and in a namespace of its own.

The threat: the server admits its clients by address (nfs.clientCIDRs, by default every private range, so that
kubelets mount from any node) and trusts the uid a client sends (SecType=sys). On many network plugins pods take
addresses in those ranges (Calico's 192.168.0.0/16, flannel's 10.244.0.0/16, the VPC CNI's node subnets), so a
user-space NFS client in a pod could act as any user; only the egress policies of the pods users control keep
them off. So every pod here gets an address in the pod range under test, inside the server's client ranges, and
an ipBlock admits it like any other address. The pods users control: user servers (labels as the hub's spawner
config sets them), Dask schedulers and workers (labels as the gateway's config makes them, in the clusters'
namespace), conda-store build pods (the chart's pod template) and the conda-store worker (which runs builds
itself with the conda-lock backend).

The JupyterHub proxy's egress is held to the routes it has: the hub's config (its registered services and extra
routes, the proxy's default target, the spawner's port) gives the URLs, each Service's targetPort the pod and port
behind it, and the policies must open exactly those."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jhrender import find, helm_template, import_hub_modules, merge, write_hub_files

from .netpol import Endpoint, Policies, matches, pod_from

pytestmark = pytest.mark.chart

NS, DASK_NS, NFS_NS = "qhub", "qhub-dask", "qhub-nfs"
BASE = {"nfs": {"service": {"clusterIP": "10.96.0.52"}}, "jitsi": {"enabled": True, "host": "meet.example.org"},
        "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": True}}}}}
PLACEMENTS = {"release namespace": BASE,
              "own namespace": {**BASE, "nfs": {**BASE["nfs"], "server": {"namespace": NFS_NS}}}}
# Pod ranges inside the NFS server's default client ranges: kubeadm/flannel, Calico's default, shared address
# space (EKS custom networking), a Docker-style one.
POD_CIDRS = ["10.244.0.0/16", "192.168.0.0/16", "100.64.0.0/16", "172.20.0.0/16"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
NODE = {"ip": "10.0.3.4"}  # a node in the default client ranges (where the kubelet mounts from)
# The proxy's targets: every routed service on, MinIO (conda-store's artifact store) rendered as a pod it must not
# reach; the services it routes to only when registered switched off; every Service on a port other than its pods'.
MINIO = {"conda-store": {"storage": {"type": "minio"}}}
SCENARIOS = {
    **PLACEMENTS,
    **{f"{name}, MinIO": merge(values, MINIO) for name, values in PLACEMENTS.items()},
    "Jitsi and conda-store off": merge(BASE, {
        "jitsi": {"enabled": False}, "conda-store": {"enabled": False},
        "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": False}, "conda-store": {"enabled": False}}}}}),
    "Service ports moved": merge(BASE, {**MINIO, "global": {"services": {
        "jupyterhub": {"port": 8443}, "dask-gateway": {"port": 8080}, "conda-store": {"port": 80},
        "jitsi": {"port": 8443}}}}),
}


@cache
def render(scenario: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(helm_template(SCENARIOS[scenario]).stdout) if d)


def config_json(docs: tuple[dict[str, Any], ...], configmap: str, key: str) -> dict[str, Any]:
    return json.loads(find(list(docs), "ConfigMap", configmap)["data"][key])


def hub_config(docs: tuple[dict[str, Any], ...], tmp: Any) -> Any:
    """The traitlets config the hub builds from a render: its spawner and its services (with the proxy's routes)."""
    from traitlets.config import Config

    config_dir, secret_dir = write_hub_files(list(docs), tmp)
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, config_dir.parent / "shared", NS)
    c = Config()
    mods["qhub_hub_spawner"].configure_spawner(c, settings)
    mods["qhub_hub_setup"].configure_services(c, settings)
    return c


@pytest.fixture(scope="module")
def singleuser_labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user server's labels as KubeSpawner sets them from the hub's config: its common labels, the access labels
    and the component label."""
    ks = hub_config(render("release namespace"), tmp_path_factory.mktemp("hub")).KubeSpawner
    return {**ks.common_labels, **ks.extra_labels, "app.kubernetes.io/component": ks.component_label,
            "component": ks.component_label}


def addresses(cidr: str) -> Iterator[str]:
    hosts = ipaddress.ip_network(cidr).hosts()
    next(hosts)  # the .1: a bridge's address on some plugins
    return (str(ip) for ip in hosts)


def pods(scenario: str, cidr: str, singleuser: dict[str, str]) -> dict[str, Endpoint]:
    """Every pod the chart runs, and those its components start for users, each with an address in `cidr`."""
    docs, ips = render(scenario), addresses(cidr)
    found = {p["name"]: p for p in (pod_from(d, NS, next(ips)) for d in docs if d["kind"] in WORKLOADS)}
    gateway = config_json(docs, "qhub-dask-gateway-config", "gateway.json")
    for component in ("dask-scheduler", "dask-worker"):
        labels = {**gateway["commonLabels"], "gateway.dask.org/instance": gateway["instance"],
                  "gateway.dask.org/cluster": "c0ffee", "app.kubernetes.io/component": component,
                  **gateway["clusters"]["podLabels"]}
        found[component] = {"name": component, "namespace": gateway["namespace"], "labels": labels, "ip": next(ips)}
    if any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == "qhub-conda-store-config" for d in docs):
        build = config_json(docs, "qhub-conda-store-config", "settings.json")["buildPod"]["podTemplate"]
        found["conda-store-build"] = {"name": "conda-store-build", "namespace": NS,
                                      "labels": build["metadata"]["labels"], "ip": next(ips)}
    found["singleuser"] = {"name": "singleuser", "namespace": NS, "labels": singleuser, "ip": next(ips)}
    return found


def user_controlled(found: dict[str, Endpoint]) -> dict[str, Endpoint]:
    names = ["singleuser", "dask-scheduler", "dask-worker", "conda-store-build", "Deployment/qhub-conda-store-worker"]
    return {name: found[name] for name in names}


@pytest.mark.parametrize("cidr", POD_CIDRS)
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_no_pod_users_control_reaches_the_nfs_server(placement: str, cidr: str,
                                                    singleuser_labels: dict[str, str]) -> None:
    """Not on 2049 and not on any other port, wherever the server runs; the server's own policy admits these
    addresses (the node ranges hold them), so the pods' egress is what stops them - a pod no policy selects, at
    such an address, gets in, and a node mounts."""
    found = pods(placement, cidr, singleuser_labels)
    net = Policies(render(placement), NS)
    nfs = found["StatefulSet/qhub-nfs"]
    assert nfs["namespace"] == (NS if placement == "release namespace" else NFS_NS)
    assert nfs["ports"]["nfs"] == (2049, "TCP")
    for name, pod in user_controlled(found).items():
        assert net.selecting(pod, "Egress"), f"{name}: a policy limits its egress"
        assert not net.reaches(pod, nfs, 2049), f"{name} reaches NFS on 2049"
        assert net.open_ports(pod, nfs) == [], f"{name} reaches the NFS server"
    stray = {"namespace": NS, "labels": {"app": "unlabelled"}, "ip": next(addresses(cidr))}
    assert net.open_ports(stray, nfs) == [(2049, "TCP")], "the server's own policy admits pod addresses"
    assert net.open_ports(NODE, nfs) == [(2049, "TCP")], "kubelets mount from the nodes"


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_only_the_nodes_reach_the_nfs_server(placement: str, singleuser_labels: dict[str, str]) -> None:
    """No pod the chart runs or starts, users' or not, has a path to the server, but the pods of `helm test` (no
    policy selects them; they run only when an admin asks)."""
    found = pods(placement, POD_CIDRS[0], singleuser_labels)
    net = Policies(render(placement), NS)
    nfs = found.pop("StatefulSet/qhub-nfs")
    unselected = sorted(name for name, pod in found.items() if not net.selecting(pod, "Egress"))
    assert unselected == [], "every pod's egress is limited (helm test pods are Pods, not workloads)"
    reaching = sorted(name for name, pod in found.items() if net.open_ports(pod, nfs))
    assert reaching == []
    tests = [d for d in render(placement) if d["kind"] == "Pod"]
    assert tests and all("helm.sh/hook" in d["metadata"]["annotations"] for d in tests)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_user_servers_reach_what_they_use_and_nothing_else(placement: str, singleuser_labels: dict[str, str]) -> None:
    """The proxy (pages, the hub API), Dask-Gateway's proxy (API, scheduler connections), conda-store and DNS, on
    those ports only; not the hub, the gateway's API, databases, the SSH gateway, Jitsi's token service (reached
    through the proxy) or another user's server."""
    found = pods(placement, POD_CIDRS[1], singleuser_labels)
    net = Policies(render(placement), NS)
    user = found["singleuser"]
    kube_dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    assert net.reaches(user, kube_dns, 53, "UDP") and net.reaches(user, kube_dns, 53, "TCP")
    expected = {
        "Deployment/qhub-proxy": [(8000, "TCP")],
        "Deployment/qhub-dask-gateway-proxy": [(8000, "TCP"), (8786, "TCP")],
        "Deployment/qhub-conda-store": [(8080, "TCP")],
    }
    reached = {name: net.open_ports(user, pod) for name, pod in found.items() if net.open_ports(user, pod)}
    assert reached == expected
    other = {**user, "ip": "192.168.200.9"}
    assert net.open_ports(user, other) == [], "another user's server"
    assert net.reaches(user, {"ip": "203.0.113.7"}, 443), "public addresses (allowInternet)"
    assert not net.reaches(user, {"ip": "10.1.2.3"}, 2049), "private ranges stay closed"


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_dask_pods_keep_their_cluster_and_the_gateway(placement: str, singleuser_labels: dict[str, str]) -> None:
    """The evaluation is not vacuous for Dask pods: workers reach their scheduler and each other on Dask's comm ports
    (8786 and random ones, mutual TLS), the scheduler reaches the gateway API, the gateway's proxy reaches the
    scheduler and its dashboard, the gateway's API the scheduler's API; build pods reach nothing. Dask pods (of any
    user's cluster: one namespace, one label set) reach no dashboard (8787, plain HTTP) and no scheduler API (8788)."""
    found = pods(placement, POD_CIDRS[0], singleuser_labels)
    net = Policies(render(placement), NS)
    scheduler, worker = found["dask-scheduler"], found["dask-worker"]
    assert scheduler["namespace"] == worker["namespace"] == DASK_NS
    assert net.reaches(worker, scheduler, 8786) and net.reaches(scheduler, worker, 40123)
    assert net.open_ports(scheduler, found["Deployment/qhub-dask-gateway-api"]) == [(8000, "TCP")]
    assert net.reaches(found["Deployment/qhub-dask-gateway-proxy"], scheduler, 8786)
    assert net.reaches(found["Deployment/qhub-dask-gateway-proxy"], scheduler, 8787)
    assert net.reaches(found["Deployment/qhub-dask-gateway-api"], scheduler, 8788)
    for port in (8787, 8788):
        assert not net.reaches(worker, scheduler, port) and not net.reaches(scheduler, worker, port), port
        assert not net.reaches(worker, worker, port), port
    assert net.reaches(worker, worker, 8785) and net.reaches(worker, worker, 8789) and net.reaches(worker, worker, 65535)
    assert net.reaches(found["singleuser"], found["Deployment/qhub-dask-gateway-proxy"], 8786)
    build = found["conda-store-build"]
    assert not [name for name, pod in found.items() if name != "conda-store-build" and net.open_ports(build, pod)]


def proxy_routes(docs: tuple[dict[str, Any], ...], tmp: Any) -> tuple[dict[str, str], int]:
    """The proxy's routes as the hub sets them, {path: target URL}: the default target (the hub, from the proxy's
    command line), each registered service with a URL at /services/<name>/, and Proxy.extra_routes; and the port
    of the routes to user servers (KubeSpawner's, one route per server, to its pod's address)."""
    c = hub_config(docs, tmp)
    args = find(list(docs), "Deployment", "qhub-proxy")["spec"]["template"]["spec"]["containers"][0]["command"]
    routes = {"/": next(a.split("=", 1)[1] for a in args if a.startswith("--default-target="))}
    routes.update({f"/services/{s['name']}/": s["url"] for s in c.JupyterHub.services if s.get("url")})
    routes.update(c.Proxy.extra_routes)
    return routes, c.KubeSpawner.port


def route_target(docs: tuple[dict[str, Any], ...], found: dict[str, Endpoint], url: str) -> tuple[str, int]:
    """The pod (workload name) and pod port a URL reaches: its host's Service, the Service port's targetPort, named
    ports resolved on the pod the Service selects."""
    parts = urlsplit(url)
    service = find(list(docs), "Service", parts.hostname.split(".")[0])
    entry = next(p for p in service["spec"]["ports"] if p["port"] == (parts.port or 80))
    selected = [p for p in found.values() if p["namespace"] == service["metadata"].get("namespace", NS)
                and matches({"matchLabels": service["spec"]["selector"]}, p["labels"])]
    assert len(selected) == 1, f"{url}: Service {service['metadata']['name']} selects {selected}"
    target = entry.get("targetPort", entry["port"])
    return selected[0]["name"], selected[0]["ports"][target][0] if isinstance(target, str) else target


PROXY_TARGETS = {  # what the proxy routes to, written out: the derivation below must arrive at it
    "Deployment/qhub-hub": [(8081, "TCP")],
    "singleuser": [(8888, "TCP")],
    "Deployment/qhub-dask-gateway-proxy": [(8000, "TCP")],
    "Deployment/qhub-conda-store": [(8080, "TCP")],
    "Deployment/qhub-jitsi-token": [(8000, "TCP")],
}
OFF = ("Deployment/qhub-conda-store", "Deployment/qhub-jitsi-token")
PROXY_SCENARIOS = {
    "release namespace, MinIO": PROXY_TARGETS,
    "own namespace, MinIO": PROXY_TARGETS,
    "Service ports moved": PROXY_TARGETS,
    "Jitsi and conda-store off": {k: v for k, v in PROXY_TARGETS.items() if k not in OFF},
}


@pytest.mark.parametrize("scenario", list(PROXY_SCENARIOS))
def test_the_proxy_reaches_what_it_routes_to_and_nothing_else(scenario: str, singleuser_labels: dict[str, str],
                                                             tmp_path: Any) -> None:
    """DNS, and each pod the proxy routes to on the port its Service sends to (not the Service's port: with every
    Service moved, the pods still listen where they did): the hub on its API port only, user servers, and the
    gateway's proxy, conda-store and Jitsi's token service while the hub registers them. Nothing else of the
    release or the clusters' namespace."""
    docs = render(scenario)
    found = pods(scenario, POD_CIDRS[1], singleuser_labels)
    net = Policies(docs, NS)
    proxy = found["Deployment/qhub-proxy"]
    assert net.selecting(proxy, "Egress"), "a policy limits the proxy's egress"
    kube_dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    assert net.reaches(proxy, kube_dns, 53, "UDP") and net.reaches(proxy, kube_dns, 53, "TCP")
    routes, user_port = proxy_routes(docs, tmp_path)
    routed: dict[str, list[tuple[int, str]]] = {"singleuser": [(user_port, "TCP")]}
    for url in routes.values():
        name, port = route_target(docs, found, url)
        routed[name] = sorted({*routed.get(name, []), (port, "TCP")})
    assert routed == PROXY_SCENARIOS[scenario], routes
    reached = {name: net.open_ports(proxy, pod) for name, pod in found.items() if net.open_ports(proxy, pod)}
    assert reached == routed


@pytest.mark.parametrize("scenario", ["release namespace, MinIO", "own namespace, MinIO"])
def test_the_proxy_reaches_no_backend(scenario: str, singleuser_labels: dict[str, str]) -> None:
    """By name, so that none of them can go missing from the render unnoticed: the NFS server (wherever it runs),
    conda-store's database, Redis and MinIO, the gateway's API and controller, the SSH server, Dask pods, and
    Jitsi's other pods (jicofo has a port 8888, jvb one 8080): no port of any."""
    found = pods(scenario, POD_CIDRS[0], singleuser_labels)
    net = Policies(render(scenario), NS)
    proxy = found["Deployment/qhub-proxy"]
    backends = ["StatefulSet/qhub-nfs", "StatefulSet/qhub-conda-store-postgresql",
                "Deployment/qhub-conda-store-redis", "StatefulSet/qhub-conda-store-minio",
                "Deployment/qhub-conda-store-worker", "Deployment/qhub-dask-gateway-api",
                "Deployment/qhub-dask-gateway-controller", "Deployment/qhub-kubessh", "dask-scheduler", "dask-worker",
                "Deployment/qhub-jitsi-jicofo", "Deployment/qhub-jitsi-jvb", "Deployment/qhub-jitsi-prosody",
                "Deployment/qhub-jitsi-web"]
    assert {name: net.open_ports(proxy, found[name]) for name in backends} == {name: [] for name in backends}
    assert net.open_ports(proxy, found["Deployment/qhub-hub"]) == [(8081, "TCP")], "the hub's API port only"
    assert not net.reaches(proxy, {"ip": "203.0.113.7"}, 443), "no addresses outside the cluster"
    assert not net.reaches(proxy, {"ip": "10.1.2.3"}, 8000)


def test_the_proxy_has_no_rule_for_a_service_the_hub_does_not_register() -> None:
    """With Jitsi and conda-store off their rules are gone, not merely unmatched: the proxy's egress names the hub,
    user servers and the gateway's proxy, each by instance and component, and no 'everything but' selector."""
    policy = find(list(render("Jitsi and conda-store off")), "NetworkPolicy", "qhub-proxy")["spec"]
    targets = [(peer["podSelector"], rule["ports"]) for rule in policy["egress"] for peer in rule["to"]
               if "k8s-app" not in peer["podSelector"].get("matchLabels", {})]
    assert [(s["matchLabels"]["app.kubernetes.io/component"], p) for s, p in targets] == [
        ("hub", [{"port": 8081, "protocol": "TCP"}]),
        ("singleuser", [{"port": 8888, "protocol": "TCP"}]),
        ("dask-gateway-proxy", [{"port": 8000, "protocol": "TCP"}]),
    ]
    assert all(s["matchLabels"]["app.kubernetes.io/instance"] == "qhub" and "matchExpressions" not in s
               for s, _ in targets)
    assert all("namespaceSelector" not in peer for rule in policy["egress"][1:] for peer in rule["to"])


@pytest.mark.parametrize("scenario", ["release namespace, MinIO", "Service ports moved"])
def test_the_proxy_admits_the_platform_and_the_hub(scenario: str, singleuser_labels: dict[str, str]) -> None:
    """In: its public port (where the Ingress' backend for /, the proxy-public Service, sends) from anywhere - the
    ingress controller in its own namespace, a load balancer's or a client's address, user servers; its API port
    from the hub only."""
    docs = render(scenario)
    found = pods(scenario, POD_CIDRS[0], singleuser_labels)
    net = Policies(docs, NS)
    proxy, hub = found["Deployment/qhub-proxy"], found["Deployment/qhub-hub"]
    paths = find(list(docs), "Ingress", "qhub")["spec"]["rules"][0]["http"]["paths"]
    backend = next(p["backend"]["service"] for p in paths if p["path"] == "/")
    public = f"http://{backend['name']}:{backend['port']['number']}"
    assert route_target(docs, found, public) == ("Deployment/qhub-proxy", 8000)
    controller = {"namespace": "ingress-nginx", "labels": {"app.kubernetes.io/name": "ingress-nginx"},
                  "ip": "10.244.9.9"}
    for source in (controller, {"ip": "203.0.113.7"}, found["singleuser"]):
        assert net.open_ports(source, proxy) == [(8000, "TCP")]
    assert net.open_ports(hub, proxy) == [(8001, "TCP")], "the hub sets routes (its own egress has no 8000)"
    assert [name for name, pod in found.items() if net.reaches(pod, proxy, 8001)] == ["Deployment/qhub-hub"]


def test_the_private_ranges_are_one_list() -> None:
    """The ranges user-controlled pods may not reach (the chart's qhub.privateRanges, rendered into the user servers'
    and the conda-store worker's policies) are what the value defaults written in YAML repeat: the Dask pods'
    `clusters.egress` exceptions, and the NFS server's clients (the same ranges but link-local, where no node is)."""
    docs = render("release namespace")
    excepted = [set(block["ipBlock"]["except"]) for d in docs if d["kind"] == "NetworkPolicy"
                for rule in d["spec"].get("egress") or [] for block in rule.get("to") or []
                if "10.0.0.0/8" in (block.get("ipBlock") or {}).get("except", [])]  # not the metadata-only ones
    assert len(excepted) >= 3 and all(e == excepted[0] for e in excepted), excepted
    ranges = excepted[0]
    charts = Path(__file__).resolve().parents[2] / "charts" / "qhub" / "charts"
    dask = yaml.safe_load((charts / "dask-gateway" / "values.yaml").read_text())["clusters"]["egress"]
    assert [set(e["except"]) for e in dask] == [ranges]
    nfs = set(yaml.safe_load((charts / "nfs" / "values.yaml").read_text())["clientCIDRs"])
    assert nfs == ranges - {"169.254.0.0/16"}
