"""Dask-Gateway's ServiceAccounts, as the real API server authorizes them (`kubectl auth can-i --as`): the Roles and
RoleBindings the chart renders, applied to a release namespace and its Dask clusters' namespace. None of the three
(API server, controller, Traefik) may read, list or watch a Secret of the release namespace - where the hub's Secret
`<release>-hub` holds its tokens - and each may do what it needs in the clusters' namespace, nothing cluster-wide."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from qhubctl.localcluster import LocalCluster, bin_dir
from qhubctl.proc import run

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "qhub"
PARTS = [f"charts/dask-gateway/templates/{p}.yaml" for p in (
    "clusters/namespace", "api/serviceaccount", "api/role", "api/rolebinding", "api/role-clusters",
    "api/rolebinding-clusters", "controller/serviceaccount", "controller/role", "controller/rolebinding",
    "proxy/serviceaccount", "proxy/role", "proxy/rolebinding")]
API, CONTROLLER, PROXY = "qhub-dask-gateway-api", "qhub-dask-gateway-controller", "qhub-dask-gateway-proxy"


@pytest.fixture(scope="module")
def namespaces(cluster: LocalCluster) -> Iterator[tuple[str, str]]:
    """(release namespace, clusters' namespace) holding the chart's gateway RBAC, and the hub's Secret."""
    ns = f"dgr-{uuid.uuid4().hex[:8]}"
    out = run(["helm", "template", "qhub", str(CHART), "--namespace", ns, "--set", "nfs.service.clusterIP=10.96.0.20",
               *(a for p in PARTS for a in ("--show-only", p))], timeout=120).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    (dask_ns,) = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    for d in docs:
        if d["kind"] != "Namespace":
            d["metadata"].setdefault("namespace", ns)
    cluster.kubectl("create", "namespace", ns)
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        cluster.kubectl("create", "secret", "generic", "qhub-hub", "-n", ns, "--from-literal=token-dask-gateway=x")
        yield ns, dask_ns
    finally:
        cluster.kubectl("delete", "namespace", ns, dask_ns, "--wait=false", "--ignore-not-found")


def can(cluster: LocalCluster, account: str, ns: str, verb: str, what: str, where: str | None) -> bool:
    """Whether the API server lets ServiceAccount `ns`/`account` `verb` `what` (`kind[/name]`, or `kind/status`) in
    `where` (None: cluster-wide)."""
    scope = ["-n", where] if where else ["--all-namespaces"]
    if what.endswith("/status"):
        what, scope = what.removesuffix("/status"), [*scope, "--subresource=status"]
    result = run([str(bin_dir() / "kubectl"), "auth", "can-i", verb, what, *scope,
                  f"--as=system:serviceaccount:{ns}:{account}"], env=cluster.env, check=False, timeout=30)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


@pytest.mark.parametrize("account", [API, CONTROLLER, PROXY])
def test_no_gateway_account_reaches_a_secret_of_the_release_namespace(cluster: LocalCluster,
                                                                       namespaces: tuple[str, str],
                                                                       account: str) -> None:
    ns, dask_ns = namespaces
    for verb, what in [("get", "secrets/qhub-hub"), ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
                       ("create", "secrets"), ("delete", "secrets/qhub-hub")]:
        assert not can(cluster, account, ns, verb, what, ns), f"{account} may {verb} {what} in {ns}"
    for verb, what in [("list", "secrets"), ("list", "pods"), ("get", "secrets")]:
        assert not can(cluster, account, ns, verb, what, None), f"{account} may {verb} {what} cluster-wide"
    assert not can(cluster, account, ns, "list", "pods", ns), f"{account} may list the release's pods"


def test_each_account_may_do_its_work_in_the_clusters_namespace(cluster: LocalCluster,
                                                                 namespaces: tuple[str, str]) -> None:
    ns, dask_ns = namespaces
    allowed = {
        API: [("create", "daskclusters.gateway.dask.org"), ("watch", "daskclusters.gateway.dask.org"),
              ("patch", "daskclusters.gateway.dask.org"), ("get", "secrets")],
        CONTROLLER: [("create", "pods"), ("watch", "pods"), ("delete", "pods"), ("create", "services"),
                     ("create", "secrets"), ("delete", "secrets"), ("list", "endpoints"),
                     ("patch", "daskclusters.gateway.dask.org/status"), ("create", "ingressroutes.traefik.io"),
                     ("create", "ingressroutetcps.traefik.io")],
        PROXY: [("watch", "ingressroutes.traefik.io"), ("watch", "ingressroutetcps.traefik.io"),
                ("list", "services"), ("list", "endpointslices.discovery.k8s.io"), ("watch", "secrets")],
    }
    for account, rights in allowed.items():
        for verb, what in rights:
            assert can(cluster, account, ns, verb, what, dask_ns), f"{account} may not {verb} {what} in {dask_ns}"
    refused = {API: [("list", "secrets"), ("create", "pods")], CONTROLLER: [("list", "secrets"), ("update", "secrets")],
               PROXY: [("create", "secrets"), ("delete", "ingressroutes.traefik.io"), ("create", "pods")]}
    for account, rights in refused.items():
        for verb, what in rights:
            assert not can(cluster, account, ns, verb, what, dask_ns), f"{account} may {verb} {what} in {dask_ns}"
    assert can(cluster, API, ns, "get", "configmaps/qhub-identities", ns), "the API server reads the uid record"
    assert not can(cluster, API, ns, "get", "configmaps/qhub-hub", ns), "and no other ConfigMap"
