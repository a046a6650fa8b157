"""A real dask-gateway-server (API server + Kubernetes controller) running the chart's own rendered config on the
host against the test cluster, authenticating users through a real JupyterHub.

Containers never run on the simulated nodes, so no scheduler process exists: the test plays the scheduler's
one part the controller waits on (its heartbeat asking for N workers, sent to the real gateway API with the
cluster's own API token). Everything else (DaskCluster object, scheduler/worker pods with the profile's
resources and node group, autoscaling of the `worker` group and back down) is done by the real programs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from qhubctl.localcluster import NODE_GROUP_LABEL, LocalCluster, node_schedulable
from qhubctl.proc import run

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
CRDS = CHART / "charts" / "dask-gateway" / "crds"
BIN = Path(sys.executable).parent
GIB = 2**30
ALICE_UID = 100000

HUB_CONFIG = """
from jupyterhub.proxy import Proxy


class MemoryProxy(Proxy):
    # The hub's routing table kept in memory: no configurable-http-proxy process, the hub API is untouched.
    should_start = False
    routes = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


c.JupyterHub.proxy_class = MemoryProxy
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = %(hub_port)d
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = %(public_port)d
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.db_url = "sqlite:///%(work)s/hub.sqlite"
c.JupyterHub.cookie_secret_file = "%(work)s/cookie_secret"
c.JupyterHub.pid_file = "%(work)s/hub.pid"
c.JupyterHub.services = [
    {"name": "dask-gateway", "api_token": "%(gateway_token)s"},
    {"name": "test-admin", "api_token": "%(admin_token)s"},
]
c.JupyterHub.load_roles = [
    {"name": "test-admin", "scopes": ["admin:users", "admin:groups", "tokens"], "services": ["test-admin"]},
    {"name": "user", "scopes": ["self", "access:services!service=dask-gateway"]},
]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, subprocess.SubprocessError) as err:
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Daemon:
    """A long-lived host process with its log in a file; stopped by its own pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / f"{name}.log"
        self.name = name
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def kget(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


RBAC = [f"charts/dask-gateway/templates/{part}/{kind}.yaml" for part in ("api", "controller")
        for kind in ("serviceaccount", "role", "rolebinding")] + [
    f"charts/dask-gateway/templates/api/{kind}-clusters.yaml" for kind in ("role", "rolebinding")]


def render_gateway_parts(ns: str, dest: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What `helm template` renders for namespace `ns`: the gateway ConfigMap (written out as files); the Dask
    clusters' namespace; the API server's and controller's ServiceAccounts and RBAC (in both namespaces); the nfs
    subchart's shared PersistentVolume + PVC of the clusters' namespace that Dask pods mount (the NFS server behind
    it never runs here)."""
    parts = ["charts/dask-gateway/templates/config/configmap.yaml", *RBAC,
             "charts/dask-gateway/templates/clusters/namespace.yaml",
             "charts/nfs/templates/dask/pv.yaml",
             "charts/nfs/templates/dask/pvc.yaml"]
    out = run(
        ["helm", "template", "qhub", str(CHART), "--namespace", ns, "--set", "nfs.service.clusterIP=10.96.0.20",
         *(a for p in parts for a in ("--show-only", p))],
        timeout=120,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    for name, text in cm["data"].items():
        (dest / name).write_text(text)
    # the clusters' namespace first: kubectl applies a List in order
    objects = sorted((d for d in docs if d["kind"] != "ConfigMap"), key=lambda d: d["kind"] != "Namespace")
    for d in objects:
        if d["kind"] not in ("PersistentVolume", "ClusterRole", "ClusterRoleBinding", "Namespace"):
            d["metadata"].setdefault("namespace", ns)
    return json.loads(cm["data"]["gateway.json"]), objects


def service_account_kubeconfig(cluster: LocalCluster, ns: str, account: str, dest: Path) -> Path:
    """A kubeconfig that acts as the chart's ServiceAccount `account`: the gateway runs with exactly the
    permissions the chart grants it in a real install."""
    token = cluster.kubectl("create", "token", account, "-n", ns, "--duration=2h").strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "test", "user": account, "namespace": ns}}],
    }
    path = dest / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def gateway(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("dask-gateway")
    ns = f"dg-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    for crd in sorted(CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/daskclusters.gateway.dask.org",
                    "crd/ingressroutes.traefik.io", "crd/ingressroutetcps.traefik.io")
    cfg, objects = render_gateway_parts(ns, work)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    api_kubeconfig = service_account_kubeconfig(cluster, ns, "qhub-dask-gateway-api", work)
    controller_kubeconfig = service_account_kubeconfig(cluster, ns, "qhub-dask-gateway-controller", work)

    hub_port, public_port, gw_port, ctl_port = (free_port() for _ in range(4))
    tokens = {"gateway_token": secrets.token_hex(16), "admin_token": secrets.token_hex(16)}
    (work / "jupyterhub_config.py").write_text(
        HUB_CONFIG % {"hub_port": hub_port, "public_port": public_port, "work": work, **tokens}
    )
    env = {**cluster.env, "JUPYTERHUB_API_TOKEN": tokens["gateway_token"]}
    hub_api = f"http://127.0.0.1:{hub_port}/hub/api"
    daemons = [Daemon("jupyterhub", [str(BIN / "jupyterhub"), "-f", str(work / "jupyterhub_config.py")], env, work)]
    try:
        wait_for("the hub API", lambda: requests.get(hub_api, timeout=2).ok, 90)
        common = ["--config", str(work / "dask_gateway_config.py")]
        daemons.append(Daemon("gateway-api", [
            str(BIN / "dask-gateway-server"), *common,
            f"--DaskGateway.address=127.0.0.1:{gw_port}",
            f"--JupyterHubAuthenticator.jupyterhub_api_url={hub_api}",
        ], {**env, "KUBECONFIG": str(api_kubeconfig)}, work))
        daemons.append(Daemon("gateway-controller", [
            str(BIN / "dask-gateway-server"), "kube-controller", *common,
            f"--KubeController.address=127.0.0.1:{ctl_port}",
        ], {**env, "KUBECONFIG": str(controller_kubeconfig)}, work))
        gw = f"http://127.0.0.1:{gw_port}"
        wait_for("the gateway API", lambda: requests.get(f"{gw}/api/health", timeout=2).ok, 90)
        for d in daemons:
            assert d.alive(), f"{d.name} exited:\n{d.tail()}"
        # Both run as the chart's ServiceAccounts: their informers started without RBAC errors.
        wait_for("the controller's informers", lambda: "started!" in (work / "gateway-controller.log").read_text(), 60)
        admin = {"Authorization": f"token {tokens['admin_token']}"}
        requests.post(f"{hub_api}/users/alice", headers=admin, timeout=10).raise_for_status()
        # alice's uid in the identities record, as the hub writes it when it first sees her
        record = {"serial": 1, "users": {"alice": ALICE_UID}, "groups": {}}
        cluster.kubectl("create", "configmap", cfg["identities"]["configMap"], "-n", ns,
                        f"--from-literal=identities.json={json.dumps(record)}")
        r = requests.post(f"{hub_api}/users/alice/tokens", headers=admin, json={"note": "test"}, timeout=10)
        r.raise_for_status()
        yield {"ns": ns, "cfg": cfg, "url": gw, "user_token": r.json()["token"], "daemons": daemons, "work": work}
    finally:
        for d in reversed(daemons):
            d.stop()
        cluster.kubectl("delete", "namespace", ns, cfg["namespace"], "--wait=false", "--ignore-not-found")
        for d in objects:
            if d["kind"] in ("PersistentVolume", "ClusterRole", "ClusterRoleBinding"):
                cluster.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--wait=false")


def group_nodes(cluster: LocalCluster, group: str) -> list[dict[str, Any]]:
    nodes = kget(cluster, "nodes")["items"]
    return [n for n in nodes if n["metadata"]["labels"].get(NODE_GROUP_LABEL) == group and node_schedulable(n)]


def dask_pods(cluster: LocalCluster, ns: str, cluster_name: str, component: str) -> list[dict[str, Any]]:
    selector = f"gateway.dask.org/cluster={cluster_name},app.kubernetes.io/component={component}"
    return kget(cluster, "pods", "-n", ns, "-l", selector)["items"]


def test_gateway_rejects_tokens_the_hub_does_not_know(gateway: dict[str, Any]) -> None:
    # The hub answers 403 for an unknown token; dask-gateway-server turns that into an error, never the options.
    r = requests.get(f"{gateway['url']}/api/v1/options", headers={"Authorization": "jupyterhub nope"}, timeout=10)
    assert r.status_code in (401, 403, 500) and "cluster_options" not in r.text
    r = requests.get(f"{gateway['url']}/api/v1/options", timeout=10)
    assert r.status_code == 401


def test_cluster_request_creates_pods_on_node_groups_and_worker_group_scales(
    cluster: LocalCluster, gateway: dict[str, Any]
) -> None:
    from dask_gateway import Gateway, JupyterHubAuth

    ns = gateway["cfg"]["namespace"]  # the clusters' namespace: DaskClusters, pods, their Secrets
    assert ns == f"{gateway['ns']}-dask"
    client = Gateway(address=gateway["url"], auth=JupyterHubAuth(api_token=gateway["user_token"]))
    options = client.cluster_options()
    assert set(options) == {"profile", "idle_timeout_minutes"}
    profiles = {p["name"]: p for p in gateway["cfg"]["clusters"]["profiles"]}
    assert options.profile == gateway["cfg"]["clusters"]["defaultProfile"]
    assert list(options._fields["profile"].options) == list(profiles)
    options.profile = "medium"
    options.idle_timeout_minutes = 45
    medium = profiles["medium"]
    workers_before = len(group_nodes(cluster, "worker"))

    name = client.submit(cluster_options=options)
    short = name.split(".", 1)[1]
    try:
        obj = kget(cluster, "daskclusters.gateway.dask.org", short, "-n", ns)
        assert obj["spec"]["username"] == "alice"
        assert obj["spec"]["options"]["profile"] == "medium"
        assert obj["spec"]["config"]["idle_timeout"] == 45 * 60

        # The controller brings the scheduler pod up on `general`; the cluster turns Running.
        report = wait_for("the cluster to run", lambda: (r := client.get_cluster(name)).status.name == "RUNNING" and r,
                          180, 2)
        assert report.options["profile"] == "medium"
        sched = dask_pods(cluster, ns, short, "dask-scheduler")
        assert len(sched) == 1
        spec = sched[0]["spec"]
        assert spec["nodeSelector"] == {NODE_GROUP_LABEL: "general"}
        assert "qhub.dev/access-nfs" not in sched[0]["metadata"]["labels"], "pods never reach NFS"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert kget(cluster, "node", spec["nodeName"])["metadata"]["labels"][NODE_GROUP_LABEL] == "general"

        # The scheduler's heartbeat asks for 6 workers (2 cores, 8 GiB each): more than one 4-core worker node
        # holds, so the worker group has to grow.
        status = kget(cluster, "daskclusters.gateway.dask.org", short, "-n", ns)["status"]
        secret = kget(cluster, "secret", "-n", ns, status["credentials"])
        api_token = base64.b64decode(secret["data"]["api-token"]).decode()
        beat = {"count": 6, "active_workers": [], "closing_workers": [], "closed_workers": []}
        r = requests.post(f"{gateway['url']}/api/v1/clusters/{name}/heartbeat", json=beat,
                          headers={"Authorization": f"token {api_token}"}, timeout=10)
        assert r.ok, r.text
        wait_for("6 worker pods", lambda: len(dask_pods(cluster, ns, short, "dask-worker")) == 6, 120, 2)

        def all_workers_placed() -> bool:
            pods = dask_pods(cluster, ns, short, "dask-worker")
            return len(pods) == 6 and all(p["spec"].get("nodeName") for p in pods)

        wait_for("the worker group to scale up and take every worker", all_workers_placed, 300, 3)
        grown = len(group_nodes(cluster, "worker"))
        assert grown >= workers_before + 2, f"worker group has {grown} nodes, had {workers_before}"
        for pod in dask_pods(cluster, ns, short, "dask-worker"):
            spec = pod["spec"]
            container = spec["containers"][0]
            assert spec["nodeSelector"] == {NODE_GROUP_LABEL: "worker"}
            assert {"key": NODE_GROUP_LABEL, "operator": "Equal", "value": "worker", "effect": "NoSchedule"} in \
                spec["tolerations"]
            node = kget(cluster, "node", spec["nodeName"])
            assert node["metadata"]["labels"][NODE_GROUP_LABEL] == "worker"
            res = container["resources"]
            assert float(res["requests"]["cpu"]) == medium["cores"] == float(res["limits"]["cpu"])
            assert int(res["requests"]["memory"]) == medium["memory"] * GIB == int(res["limits"]["memory"])
            assert "--nthreads" in container["args"]
            assert container["args"][container["args"].index("--nthreads") + 1] == str(medium["threads"])
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/opt/conda-store"]["readOnly"] is True and mounts["/home/alice"]["subPath"] == "home/alice"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (ALICE_UID,) * 2
            assert "fsGroup" not in spec["securityContext"]
            assert spec["initContainers"][0]["name"] == "home"

        # The per-cluster limits reach the gateway: at most 15 medium workers fit in 32 cores with a scheduler.
        limits = gateway["cfg"]["clusters"]["limits"]
        config = kget(cluster, "daskclusters.gateway.dask.org", short, "-n", ns)["spec"]["config"]
        assert config["cluster_max_cores"] == limits["maxCores"]
        assert config["cluster_max_memory"] == limits["maxMemory"] * GIB
        assert config["cluster_max_workers"] == min(limits["maxWorkers"], 15)
    finally:
        client.stop_cluster(name)

    wait_for("the cluster's pods to go", lambda: not dask_pods(cluster, ns, short, "dask-worker")
             and not dask_pods(cluster, ns, short, "dask-scheduler"), 120, 2)
    assert kget(cluster, "daskclusters.gateway.dask.org", short, "-n", ns)["status"]["phase"] == "Stopped"
    wait_for("the worker group to scale back down", lambda: len(group_nodes(cluster, "worker")) <= workers_before,
             300, 5)
    for d in gateway["daemons"]:
        assert d.alive(), f"{d.name} exited:\n{d.tail()}"
        if d.name.startswith("gateway"):  # no Kubernetes call was refused to the chart's ServiceAccounts
            assert "Reason: Forbidden" not in d.log.read_text(), d.tail()
