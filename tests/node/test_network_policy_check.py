"""`qhubctl check` on the real node: QHub deployed by `qhubctl deploy` into a namespace enforcing Pod Security
restricted, then the check's canary pod runs there on `real-0`. The real node's network is the
containernetworking-plugins bridge with host-local addresses, which has no policy engine, so the release's
NetworkPolicies are ignored and the expected result on this machine is the check's failure: exit 1, "not
enforced", naming the local cluster's bridge CNI, with the control probes (DNS, the proxy's public port) through
and the hub's internal port reached. The pass path (a CNI that enforces) cannot run here; tests/unit/test_netcheck.py
covers its decision."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import qhubkit
from qhubkit import Platform
from typer.testing import CliRunner

from qhubctl.cli import app
from qhubctl.config import load_config
from qhubctl.localcluster import LocalCluster
from qhubctl.netcheck import CANARY, CANARY_LABEL, METADATA, canary_pod, targets

pytestmark = pytest.mark.node

NS = "qhub-netpol"
RELEASE = "qnetpol"
IMAGES = ("jupyterhub",)


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The hub and proxy only: what the check probes."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["components"] = {**(cfg.get("components") or {}), "dask_gateway": False, "conda_store": False,
                         "kubessh": False, "jitsi": False}
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("netpol"), NS, RELEASE, cfg, IMAGES) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _report(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(platform, request)


def _host_reaches(host: str, port: int) -> bool:
    """Whether this machine's own network reaches host:port (pods leave the node masqueraded through it)."""
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except OSError:
        return False


def _get(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", "-n", NS, *args, "-o", "json"))


def test_check_fails_clearly_on_the_bridge_cni(platform: Platform, cluster: LocalCluster) -> None:
    namespace = json.loads(cluster.kubectl("get", "namespace", NS, "-o", "json"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # the canary is what the user servers' NetworkPolicy selects
    policy = _get(cluster, "networkpolicy", f"{RELEASE}-singleuser")
    cfg = load_config(platform.config, environ={})
    canary = canary_pod(cfg, "x", "x", {}, targets(cfg, ("10.0.0.1", 8081), ("10.0.0.2", 80)))
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= canary["metadata"]["labels"].items()
    metadata_open = _host_reaches(METADATA, 80)

    begun = time.monotonic()
    result = CliRunner().invoke(app, ["check", "-c", str(platform.config), "--kubeconfig", str(cluster.kubeconfig)],
                                catch_exceptions=False)
    seconds = time.monotonic() - begun
    out = result.output
    print(f"\n[netcheck] qhubctl check took {seconds:.1f}s; its output:\n{out}")
    assert result.exit_code == 1, out
    assert "Traceback" not in out
    assert "NetworkPolicies are not enforced on this cluster" in out
    assert "containernetworking-plugins bridge + host-local" in out, "names what to turn on for provider local"
    assert re.search(rf"canary pod {NS}/{RELEASE}-netcheck-[0-9a-f]{{6}} \(image [^)]*qhub/jupyterhub:", out), out
    hub_ip = _get(cluster, "service", f"{RELEASE}-hub")["spec"]["clusterIP"]
    proxy_ip = _get(cluster, "service", f"{RELEASE}-proxy-public")["spec"]["clusterIP"]
    lines = {line.strip().split(" (")[0]: line for line in out.splitlines() if "must " in line}
    # controls: DNS resolves the hub's name to its Service, the proxy's public port answers
    assert f"resolved to {hub_ip}" in lines[f"- DNS {RELEASE}-hub.{NS}.svc"], lines
    assert "(control, must pass): reached" in lines[f"- the proxy's public port {proxy_ip}:80"], lines
    # the hub's internal port answers a pod its policy refuses: nothing enforces that here
    assert "(denied, must fail): reached - connected" in lines[f"- the hub's internal port {hub_ip}:8081"], lines
    metadata = lines[f"- the cloud metadata address {METADATA}:80"]
    assert ("must fail): reached" in metadata) is metadata_open, (metadata, metadata_open)
    # cleaned up: no canary left in the namespace
    left = _get(cluster, "pods", "-l", f"{CANARY_LABEL}={CANARY}")["items"]
    assert left == [], [p["metadata"]["name"] for p in left]
    # the canary ran as a pod of the namespace (its events stay behind after it is gone)
    events = _get(cluster, "events")["items"]
    assert any(e["involvedObject"].get("name", "").startswith(f"{RELEASE}-netcheck-") and e["reason"] == "Started"
               for e in events), "the canary's container started on the node"
