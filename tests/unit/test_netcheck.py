"""`qhubctl check`'s decision and canary: a verdict of "enforced" needs every control probe through and nothing
forbidden reached, so a canary that reaches nothing at all (no network, DNS down) is inconclusive, never a pass;
the failure names the provider's setting; the in-cluster NFS server's Service is one more denied target, looked
up where the server runs; the canary meets Pod Security restricted; the probe script itself runs against real
sockets here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest

from qhubctl.config import PROVIDERS, SCHEMA_VERSION, parse_config
from qhubctl import netcheck
from qhubctl.errors import ClusterError
from qhubctl.netcheck import ENFORCEMENT, METADATA, PROBE, Result, Target, canary_pod, decide, parse, targets

pytestmark = pytest.mark.unit
HUB, PROXY, NFS = ("10.96.0.10", 8081), ("10.96.0.11", 80), ("10.96.0.52", 2049)


def cfg(provider: str = "aws", storage: dict[str, Any] | None = None) -> Any:
    cluster = {"provider": provider, **({"project": "p-1"} if provider == "gcp" else {})}
    return parse_config({"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": cluster,
                         "namespace": "qhub", "release_name": "qhub",
                         **({"storage": storage} if storage else {})}, environ={})


def results(dns: bool = True, proxy: bool = True, hub: bool = False, metadata: bool = False) -> list[Result]:
    reached = {"DNS": dns, "the proxy's public port": proxy, "the hub's internal port": hub,
               "the cloud metadata address": metadata}
    return [Result(t, reached[t.name], "connected" if reached[t.name] else "no answer (dropped)")
            for t in targets(cfg(), HUB, PROXY)]


def test_targets_are_the_hub_port_metadata_and_two_controls() -> None:
    found = {t.name: t for t in targets(cfg(), HUB, PROXY)}
    assert (found["the hub's internal port"].where, found["the hub's internal port"].allowed) == ("10.96.0.10:8081",
                                                                                                  False)
    assert (found["the cloud metadata address"].where, found["the cloud metadata address"].allowed) == (
        f"{METADATA}:80", False)
    assert found["DNS"].host == "qhub-hub.qhub.svc" and found["DNS"].expect == HUB[0] and found["DNS"].allowed
    assert found["the proxy's public port"].where == "10.96.0.11:80" and found["the proxy's public port"].allowed


def test_enforced_only_when_controls_pass_and_nothing_forbidden_is_reached() -> None:
    verdict = decide(results(), "aws")
    assert verdict.enforced and verdict.conclusive and not verdict.fix
    assert "NetworkPolicies are enforced (the VPC CNI's network policy agent" in verdict.summary
    assert len(verdict.lines) == 4 and "(control, must pass): reached" in verdict.lines[0]


@pytest.mark.parametrize(("hub", "metadata", "named"), [
    (True, False, ["the hub's internal port (10.96.0.10:8081)"]),
    (False, True, ["the cloud metadata address (169.254.169.254:80)"]),
    (True, True, ["the hub's internal port", "and the cloud metadata address"]),
])
def test_a_forbidden_target_reached_is_not_enforced(hub: bool, metadata: bool, named: list[str]) -> None:
    verdict = decide(results(hub=hub, metadata=metadata), "gcp")
    assert not verdict.enforced and verdict.conclusive
    assert verdict.summary.startswith("NetworkPolicies are not enforced on this cluster")
    for text in named:
        assert text in verdict.summary
    assert verdict.fix.startswith("provider gcp: turn on GKE Dataplane V2")


def test_the_nfs_server_is_one_more_forbidden_target() -> None:
    """With the in-cluster NFS server, its Service's port is denied too: the server admits the node ranges, which
    often hold pod addresses, and trusts the uid a client sends, so only the user servers' policy keeps them off."""
    probes = targets(cfg(), HUB, PROXY, NFS)
    assert [t.name for t in probes][:4] == [t.name for t in targets(cfg(), HUB, PROXY)]
    nfs = probes[4]
    assert (nfs.name, nfs.kind, nfs.where, nfs.allowed) == ("the NFS server", "tcp", "10.96.0.52:2049", False)
    reached = {"DNS": True, "the proxy's public port": True, "the NFS server": True}
    verdict = decide([Result(t, reached.get(t.name, False), "x") for t in probes], "aws")
    assert not verdict.enforced and verdict.conclusive
    assert "reached the NFS server (10.96.0.52:2049)" in verdict.summary and verdict.fix
    blocked = decide([Result(t, t.allowed, "x") for t in probes], "aws")
    assert blocked.enforced and len(blocked.lines) == 5


class FakeCluster:
    """kube._rest/_items over a dict of paths: the release's policy, Services and EndpointSlices."""

    def __init__(self, nfs_ns: str | None, nfs_ready: bool = True) -> None:
        self.paths: dict[str, Any] = {
            "/apis/networking.k8s.io/v1/namespaces/qhub/networkpolicies/qhub-singleuser": {"spec": {}}}
        for ns, svc, ip, port, ready in [("qhub", "qhub-hub", HUB[0], ("http", 8081), True),
                                         ("qhub", "qhub-proxy-public", PROXY[0], ("http", 80), True),
                                         (nfs_ns, "qhub-nfs", NFS[0], ("nfs", 2049), nfs_ready)]:
            if ns is None:
                continue
            self.paths[f"/api/v1/namespaces/{ns}/services/{svc}"] = {
                "spec": {"clusterIP": ip, "ports": [{"name": port[0], "port": port[1]}]}}
            self.paths[f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?{svc}"] = {
                "items": [{"endpoints": [{"conditions": {"ready": ready}}]}]}

    def rest(self, api: Any, method: str, path: str, *, query: dict[str, Any] | None = None, **_: Any) -> Any:
        assert method == "GET", (method, path)
        if path.endswith("/endpointslices"):
            path += "?" + (query or {})["labelSelector"].split("=", 1)[1]
        return self.paths.get(path)

    def items(self, api: Any, path: str, **query: Any) -> list[dict[str, Any]]:
        return (self.rest(api, "GET", path, query=query) or {}).get("items") or []


@pytest.mark.parametrize(("storage", "nfs_ns"), [
    ({"type": "nfs"}, "qhub"),
    ({"type": "nfs", "server_namespace": "qhub-nfs"}, "qhub-nfs"),
    ({"type": "existing", "storage_class": "efs"}, None),
])
def test_preflight_finds_the_nfs_service_where_the_server_runs(monkeypatch: pytest.MonkeyPatch,
                                                               storage: dict[str, Any], nfs_ns: str | None) -> None:
    fake = FakeCluster(nfs_ns)
    monkeypatch.setattr(netcheck.kube, "_rest", fake.rest)
    monkeypatch.setattr(netcheck.kube, "_items", fake.items)
    hub, proxy, nfs = netcheck._preflight(None, cfg(storage=storage))
    assert (hub, proxy) == (HUB, PROXY)
    assert nfs == (NFS if nfs_ns else None), "no NFS target without the in-cluster server"


def test_preflight_refuses_an_nfs_server_without_a_ready_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection to a server that is not up proves nothing, as for the hub."""
    fake = FakeCluster("qhub-nfs", nfs_ready=False)
    monkeypatch.setattr(netcheck.kube, "_rest", fake.rest)
    monkeypatch.setattr(netcheck.kube, "_items", fake.items)
    with pytest.raises(ClusterError, match=r"the NFS server \(qhub-nfs/qhub-nfs\) has no ready endpoint"):
        netcheck._preflight(None, cfg(storage={"type": "nfs", "server_namespace": "qhub-nfs"}))


@pytest.mark.parametrize(("dns", "proxy"), [(False, True), (True, False), (False, False)])
def test_a_failed_control_is_inconclusive_never_a_pass(dns: bool, proxy: bool) -> None:
    """A pod with no network reaches neither the hub nor the metadata address: that alone proves nothing."""
    verdict = decide(results(dns=dns, proxy=proxy), "azure")
    assert not verdict.enforced and not verdict.conclusive
    assert verdict.summary.startswith("inconclusive: the canary could not reach")
    # even a leak does not count while a control fails: the report says why it cannot decide
    assert not decide(results(dns=dns, proxy=proxy, hub=True), "azure").conclusive


def test_every_provider_names_its_setting() -> None:
    assert set(ENFORCEMENT) == set(PROVIDERS)
    expect = {"aws": "enableNetworkPolicy", "gcp": "Dataplane V2", "azure": "--network-policy",
              "digitalocean": "cilium", "existing": "Calico, Cilium", "local": "bridge CNI"}
    for provider, needle in expect.items():
        fix = decide(results(hub=True), provider).fix
        assert fix.startswith(f"provider {provider}: turn on ") and needle in fix, (provider, fix)


def test_decide_refuses_a_check_without_controls() -> None:
    forbidden = [r for r in results() if not r.target.allowed]
    with pytest.raises(ValueError):
        decide(forbidden, "aws")


def test_canary_meets_restricted_and_looks_like_a_user_server() -> None:
    pod = canary_pod(cfg(), "qhub-netcheck-abc", "registry/qhub/jupyterhub:1", {
        "nodeSelector": {"qhub.dev/node-group": "general"}, "imagePullSecrets": [{"name": "pull"}]},
        targets(cfg(), HUB, PROXY))
    labels = pod["metadata"]["labels"]
    assert {labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                                "app.kubernetes.io/component")} == {"jupyterhub", "qhub", "singleuser"}
    assert not [k for k in labels if k.startswith("qhub.dev/access-")], "no access label: the hub must refuse it"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"qhub.dev/node-group": "general"}
    (container,) = spec["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "privileged": False, "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    for key in ("hostNetwork", "hostPID", "hostIPC", "volumes"):
        assert key not in spec


def test_parse_reads_the_canary_line_and_refuses_garbage() -> None:
    probes = targets(cfg(), HUB, PROXY)
    line = json.dumps([{"name": t.name, "reached": t.allowed, "detail": "x"} for t in probes])
    parsed = parse("some warning\n" + line + "\n", probes)
    assert [r.reached for r in parsed] == [True, True, False, False]
    with pytest.raises(ClusterError, match="printed no probe results"):
        parse("Traceback (most recent call last): ...", probes)


def test_probe_script_against_real_sockets() -> None:
    """The canary's script: a listening port is reached, a closed one refused, a name resolved and compared."""
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        args = [
            {"name": "open", "kind": "tcp", "host": "127.0.0.1", "port": listening.getsockname()[1], "expect": "",
             "timeout": 2},
            {"name": "closed", "kind": "tcp", "host": "127.0.0.1", "port": closed.getsockname()[1], "expect": "",
             "timeout": 2},
            {"name": "name", "kind": "dns", "host": "localhost", "port": 0, "expect": "127.0.0.1", "timeout": 2},
            {"name": "wrong", "kind": "dns", "host": "localhost", "port": 0, "expect": "10.9.9.9", "timeout": 2},
        ]
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                              timeout=30, check=True)
    found = {r["name"]: r for r in json.loads(done.stdout)}
    assert found["open"]["reached"] is True and found["open"]["detail"].startswith("connected")
    assert found["closed"]["reached"] is False and found["closed"]["detail"].startswith("refused")
    assert found["name"]["reached"] is True and "127.0.0.1" in found["name"]["detail"]
    assert found["wrong"]["reached"] is False, "a name resolving elsewhere is not the hub's"
    probes = [Target(a["name"], a["kind"], a["host"], a["port"], True, a["expect"]) for a in args]
    assert [r.reached for r in parse(done.stdout, probes)] == [True, False, True, False]
