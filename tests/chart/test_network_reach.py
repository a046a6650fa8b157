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
itself with the conda-lock backend)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml
from jhrender import find, helm_template, import_hub_modules, write_hub_files

from .netpol import Endpoint, Policies, pod_from

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


@cache
def render(placement: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(helm_template(PLACEMENTS[placement]).stdout) if d)


def config_json(docs: tuple[dict[str, Any], ...], configmap: str, key: str) -> dict[str, Any]:
    return json.loads(find(list(docs), "ConfigMap", configmap)["data"][key])


@pytest.fixture(scope="module")
def singleuser_labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user server's labels as KubeSpawner sets them from the hub's config: its common labels, the access labels
    and the component label."""
    from traitlets.config import Config

    config_dir, secret_dir = write_hub_files(list(render("release namespace")), tmp_path_factory.mktemp("hub"))
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, config_dir.parent / "shared", NS)
    c = Config()
    mods["qhub_hub_spawner"].configure_spawner(c, settings)
    ks = c.KubeSpawner
    return {**ks.common_labels, **ks.extra_labels, "app.kubernetes.io/component": ks.component_label,
            "component": ks.component_label}


def addresses(cidr: str) -> Iterator[str]:
    hosts = ipaddress.ip_network(cidr).hosts()
    next(hosts)  # the .1: a bridge's address on some plugins
    return (str(ip) for ip in hosts)


def pods(placement: str, cidr: str, singleuser: dict[str, str]) -> dict[str, Endpoint]:
    """Every pod the chart runs, and those its components start for users, each with an address in `cidr`."""
    docs, ips = render(placement), addresses(cidr)
    found = {p["name"]: p for p in (pod_from(d, NS, next(ips)) for d in docs if d["kind"] in WORKLOADS)}
    gateway = config_json(docs, "qhub-dask-gateway-config", "gateway.json")
    for component in ("dask-scheduler", "dask-worker"):
        labels = {**gateway["commonLabels"], "gateway.dask.org/instance": gateway["instance"],
                  "gateway.dask.org/cluster": "c0ffee", "app.kubernetes.io/component": component,
                  **gateway["clusters"]["podLabels"]}
        found[component] = {"name": component, "namespace": gateway["namespace"], "labels": labels, "ip": next(ips)}
    build = config_json(docs, "qhub-conda-store-config", "settings.json")["buildPod"]["podTemplate"]
    found["conda-store-build"] = {"name": "conda-store-build", "namespace": NS, "labels": build["metadata"]["labels"],
                                  "ip": next(ips)}
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
    """The evaluation is not vacuous for Dask pods: workers reach their scheduler and each other on any port, the
    scheduler reaches the gateway API, the gateway's proxy reaches the scheduler; build pods reach nothing."""
    found = pods(placement, POD_CIDRS[0], singleuser_labels)
    net = Policies(render(placement), NS)
    scheduler, worker = found["dask-scheduler"], found["dask-worker"]
    assert scheduler["namespace"] == worker["namespace"] == DASK_NS
    assert net.reaches(worker, scheduler, 8786) and net.reaches(scheduler, worker, 40123)
    assert net.open_ports(scheduler, found["Deployment/qhub-dask-gateway-api"]) == [(8000, "TCP")]
    assert net.reaches(found["Deployment/qhub-dask-gateway-proxy"], scheduler, 8786)
    assert net.reaches(found["singleuser"], found["Deployment/qhub-dask-gateway-proxy"], 8786)
    build = found["conda-store-build"]
    assert not [name for name, pod in found.items() if name != "conda-store-build" and net.open_ports(build, pod)]
