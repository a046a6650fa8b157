"""Dask on the real node, the way a user meets it: QHub deployed by `qhubctl deploy` with Dask-Gateway (API server,
controller and Traefik, all built here), and from a notebook kernel in the user's own server - reached through the
proxy with the user's token, as JupyterLab does - a cluster made with the default options, scaled to two workers,
a result that needs both, a worker reading and writing the user's home, the worker pods on the real node running
as the user in the Dask clusters' namespace (<namespace>-dask, apart from the release's Secrets), the scheduler
refusing every client without the cluster's own certificate, and the pods gone after shutdown. A cluster nobody uses stops itself after its idle timeout."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import qhubkit
from qhubkit import Platform

from nodekit import wait_for
from qhubctl import daskclusters, realnode
from qhubctl.localcluster import LocalCluster

pytestmark = [pytest.mark.node, pytest.mark.long_journey]  # run_tests.py: a session of their own

NS = "qhub-dask"
RELEASE = "qdask"
CLUSTERS_NS = f"{NS}-dask"  # daskclusters.namespace: the chart's global.daskClusters.namespace
USER = "demo"
IMAGES = ("jupyterhub", "jupyterlab", "kubessh", "dask-gateway-server", "dask-worker", "traefik")
CLUSTER_PODS = "app.kubernetes.io/name=dask-gateway"


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    cfg = qhubkit.local_config(NS, RELEASE)
    assert cfg["components"].get("dask_gateway", True), "`qhubctl init local` turns Dask-Gateway on"
    assert cfg["storage"]["type"] == "existing", "the local demo's storage: qhubctl binds it in the clusters' namespace"
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("dask"), NS, RELEASE, cfg, IMAGES) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _report(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure, what the pods of both namespaces did (the release's, then the clusters')."""
    failed = request.session.testsfailed
    yield from qhubkit.report_on_failure(platform, request)
    if request.session.testsfailed > failed:
        clusters = dataclasses.replace(platform, ns=CLUSTERS_NS).report(request.node.name)
        print(f"\n[node] what the pods of {CLUSTERS_NS} did: {clusters}")


def _cluster_pods(platform: Platform, name: str) -> list[dict[str, Any]]:
    """The pods of the cluster the client calls `name` (<namespace>.<id>; the pods are labelled with the id)."""
    return [p for p in platform.pods("gateway.dask.org/cluster=" + name.rsplit(".", 1)[-1], ns=CLUSTERS_NS)
            if not p["metadata"].get("deletionTimestamp")]


TWO_WORKERS = """
import json, os, pathlib, socket, time
from dask_gateway import Gateway
home = pathlib.Path.home()
(home / "from-lab.txt").write_text("written in the lab")
(home / "from-worker.txt").unlink(missing_ok=True)
begun = time.monotonic()
gateway = Gateway()
options = gateway.cluster_options()
cluster = gateway.new_cluster(options)
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=300)
ready = time.monotonic() - begun
workers = sorted(client.scheduler_info()["workers"])
# one piece of the data on each worker; the sum needs both
parts = [client.submit(lambda i: (list(range(i * 1000, (i + 1) * 1000)), socket.gethostname()), i,
                       workers=[w], allow_other_workers=False, pure=False) for i, w in enumerate(workers)]
total = client.submit(lambda pieces: sum(sum(p[0]) for p in pieces), parts).result()
hosts = [h for _, h in client.gather(parts)]

def in_home():
    # on a worker: the user's home, through the clusters' namespace's own claim on the shared storage
    mine = pathlib.Path.home()
    (mine / "from-worker.txt").write_text("written on " + socket.gethostname())
    return {"read": (mine / "from-lab.txt").read_text(), "uid": os.getuid(), "home": str(mine)}

worker_home = client.submit(in_home, workers=[workers[0]], pure=False).result()
print(json.dumps({"name": cluster.name, "ready_seconds": ready, "workers": workers, "hosts": hosts,
                  "total": total, "options": sorted(options), "worker_home": worker_home,
                  "lab_reads": (home / "from-worker.txt").read_text()}))
"""


# In the same kernel, with the cluster of TWO_WORKERS still up: its scheduler's own address (SCHEDULER, tls://pod
# IP:8786) reached directly, as any pod could where NetworkPolicies are not enforced (this node's bridge CNI; on a
# cluster that enforces them no user server has a route there at all). Only the cluster's own certificate gets in.
STRANGERS = """
import asyncio, json, ssl
from distributed import Security
from distributed.comm import connect

async def attempt(address, **args):
    try:
        comm = await connect(address, timeout=15, **args)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {str(exc)[:160]}"
    await comm.close()
    return "connected"

no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
no_cert.check_hostname, no_cert.verify_mode = False, ssl.CERT_NONE
# what another cluster holds: a certificate of its own (made the way its gateway makes one), presented while
# trusting any server, so that a refusal is the scheduler's, not this client's
other = Security.temporary().get_connection_args("client")
other["ssl_context"].check_hostname, other["ssl_context"].verify_mode = False, ssl.CERT_NONE
verdict = {
    "own": await attempt("SCHEDULER", **cluster.security.get_connection_args("client")),
    "no_certificate": await attempt("SCHEDULER", ssl_context=no_cert, require_encryption=True),
    "other_certificate": await attempt("SCHEDULER", **other),
    "plain_tcp": await attempt("SCHEDULER".replace("tls://", "tcp://")),
}
print(json.dumps(verdict))
"""


def test_a_notebook_makes_a_two_worker_cluster_on_the_real_node_and_shuts_it_down(platform: Platform) -> None:
    kernel = platform.kernel(USER)
    out = json.loads(kernel.run(TWO_WORKERS, timeout=420).strip().splitlines()[-1])
    assert out["total"] == sum(range(2000)), out
    assert len(out["workers"]) == 2 and len(set(out["hosts"])) == 2, out
    assert out["name"].startswith(f"{CLUSTERS_NS}."), out["name"]
    identities = platform.identities()
    assert out["worker_home"] == {"read": "written in the lab", "uid": identities["users"][USER],
                                  "home": f"/home/{USER}"}, out
    assert out["lab_reads"].startswith("written on ") and out["lab_reads"].split()[-1] in out["hosts"], out
    pods = _cluster_pods(platform, out["name"])
    roles = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component", "") for p in pods)
    assert roles == ["dask-scheduler", "dask-worker", "dask-worker"], roles
    workers = {p["metadata"]["name"] for p in pods
               if "worker" in p["metadata"]["labels"]["app.kubernetes.io/component"]}
    assert set(out["hosts"]) == workers, (out["hosts"], workers)
    assert not platform.pods("app.kubernetes.io/component in (dask-scheduler,dask-worker)"), \
        "no Dask pod in the release namespace"
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["metadata"]["namespace"] == CLUSTERS_NS == daskclusters.namespace(platform_config(platform))
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME, f"{name} is not on the real node"
        assert pod["status"]["containerStatuses"][0]["imageID"].startswith(f"{realnode.REGISTRY}/qhub/dask-worker")
        assert pod["spec"]["securityContext"]["runAsUser"] == identities["users"][USER], name
    print(f"[node] Dask: 2 workers ready {out['ready_seconds']:.0f}s after the request; options {out['options']}")
    scheduler, = (p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-scheduler")
    address = f"tls://{scheduler['status']['podIP']}:8786"
    verdict = json.loads(kernel.run(STRANGERS.replace("SCHEDULER", address), timeout=120).strip().splitlines()[-1])
    assert verdict["own"] == "connected", verdict  # the check can succeed: the cluster's own certificate
    assert all(verdict[k].startswith("refused") for k in ("no_certificate", "other_certificate", "plain_tcp")), verdict
    print(f"[node] Dask: the scheduler at {address} admits its cluster's certificate only: {verdict}")
    memory = _working_set(platform)
    print(f"[node] memory in use with one user and one Dask cluster: {memory / 2**20:.0f} MiB (working sets)")

    kernel.run(f"from dask_gateway import Gateway\nGateway().connect({out['name']!r}).shutdown()", timeout=120)
    wait_for("the cluster's pods to go", lambda: not _cluster_pods(platform, out["name"]), timeout=180, interval=2)


def test_an_idle_cluster_stops_itself(platform: Platform) -> None:
    kernel = platform.kernel(USER)
    name = kernel.run(
        "from dask_gateway import Gateway\n"
        "gateway = Gateway()\n"
        "options = gateway.cluster_options()\n"
        "options.idle_timeout_minutes = 1\n"
        "cluster = gateway.new_cluster(options)\n"
        "print(cluster.name)", timeout=300).strip()
    wait_for("the scheduler pod", lambda: _cluster_pods(platform, name), timeout=180, interval=2)
    begun = time.monotonic()
    wait_for("the idle cluster to stop itself", lambda: not _cluster_pods(platform, name), timeout=300, interval=5)
    stopped = json.loads(kernel.run(
        "import json\nfrom dask_gateway import Gateway\n"
        "print(json.dumps([c.name for c in Gateway().list_clusters()]))"))
    assert name not in stopped, stopped
    print(f"[node] idle Dask cluster stopped {time.monotonic() - begun:.0f}s after its scheduler started")


def platform_config(platform: Platform) -> Any:
    from qhubctl.config.loader import load_config

    return load_config(platform.config, environ={})


def _working_set(platform: Platform) -> int:
    raw = platform.cluster.kubectl("get", "--raw", f"/api/v1/nodes/{realnode.NODE_NAME}/proxy/stats/summary")
    return sum(int((c.get("memory") or {}).get("workingSetBytes") or 0)
               for p in json.loads(raw).get("pods", []) if p["podRef"]["namespace"] in (NS, CLUSTERS_NS)
               for c in p.get("containers", []))
