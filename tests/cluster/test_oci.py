"""Marketplace-style delivery: the packaged chart (subcharts included) pushed to a real OCI registry (Debian's
docker-registry on loopback) and installed from there onto the test cluster with `helm install oci://...`.
The install leaves nfs.service.clusterIP unset, so the NFS server's address comes from the cluster's
ServiceCIDR, as on a real first install."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
LOCAL_VALUES = REPO / "ci" / "local-cluster-values.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry not found: install the Debian package docker-registry (ci/apt-packages.txt)",
                    pytrace=False)
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (work / "config.yml").write_text(yaml.safe_dump(config))
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (work / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer within 30s"
            time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


def test_packaged_chart_installs_from_an_oci_registry(
    cluster: LocalCluster, registry: str, tmp_path: Path
) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    run(["helm", "package", str(CHART), "--destination", str(tmp_path)], timeout=120)
    archive = tmp_path / f"qhub-{version}.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for sub in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]:
        assert f"qhub/charts/{sub['name']}/Chart.yaml" in names, f"{sub['name']} is missing from the package"
    assert "qhub/charts/dask-gateway/crds/daskclusters.yaml" in names
    assert "qhub/values.schema.json" in names and "qhub/charts/nfs/values.schema.json" in names

    pushed = run(["helm", "push", str(archive), f"oci://{registry}/charts", "--plain-http"], timeout=120)
    assert "Digest: sha256:" in pushed.stdout + pushed.stderr
    tags = requests.get(f"http://{registry}/v2/charts/qhub/tags/list", timeout=5).json()
    assert version in tags["tags"]
    ref = f"oci://{registry}/charts/qhub"
    shown = yaml.safe_load(run(["helm", "show", "chart", ref, "--version", version, "--plain-http"]).stdout)
    assert shown["name"] == "qhub" and shown["version"] == version

    ns = f"oci-{uuid.uuid4().hex[:6]}"
    env = cluster.env
    try:
        run(["helm", "install", "qhub", ref, "--version", version, "--plain-http", "--namespace", ns,
             "--create-namespace", "-f", str(LOCAL_VALUES), "--wait", "--timeout", "5m"], env=env, timeout=420)
        (release,) = json.loads(run(["helm", "list", "-n", ns, "-o", "json"], env=env).stdout)
        assert release["status"] == "deployed" and release["chart"] == f"qhub-{version}"

        # The NFS server got a fixed address in the static band of the cluster's Service CIDR, and the shared
        # volume points at it.
        svc = json.loads(cluster.kubectl("get", "service", "qhub-nfs", "-n", ns, "-o", "json"))
        pv = json.loads(cluster.kubectl("get", "persistentvolume", f"{ns}-qhub-shared", "-o", "json"))
        cidrs = json.loads(cluster.kubectl("get", "servicecidr", "kubernetes", "-o", "json"))["spec"]["cidrs"]
        net = ipaddress.ip_network(next(c for c in cidrs if ":" not in c))
        offset = int(ipaddress.ip_address(svc["spec"]["clusterIP"])) - int(net.network_address)
        band = min(max(16, net.num_addresses // 16), 256)
        assert 2 <= offset < band and offset != 10
        assert pv["spec"]["nfs"]["server"] == svc["spec"]["clusterIP"]
        pvc = json.loads(cluster.kubectl("get", "pvc", "qhub-shared", "-n", ns, "-o", "json"))
        assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == f"{ns}-qhub-shared"

        # An upgrade keeps the address (read back from the existing Service).
        run(["helm", "upgrade", "qhub", ref, "--version", version, "--plain-http", "--namespace", ns,
             "-f", str(LOCAL_VALUES), "--wait", "--timeout", "5m"], env=env, timeout=420)
        again = json.loads(cluster.kubectl("get", "service", "qhub-nfs", "-n", ns, "-o", "json"))
        assert again["spec"]["clusterIP"] == svc["spec"]["clusterIP"]

        run(["helm", "uninstall", "qhub", "-n", ns, "--wait", "--timeout", "3m"], env=env, timeout=240)
        kept = json.loads(cluster.kubectl("get", "pvc", "qhub-nfs-data", "-n", ns, "-o", "json"))
        assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    finally:
        run(["helm", "uninstall", "qhub", "-n", ns, "--wait", "--timeout", "2m"], env=env, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        run(["kubectl", "delete", "persistentvolume", f"{ns}-qhub-shared", "--ignore-not-found", "--wait=false"],
            env=env, check=False)


def test_restricted_namespace_admits_everything_but_the_nfs_server(
    cluster: LocalCluster, registry: str, tmp_path: Path
) -> None:
    """The release namespace enforces Pod Security "restricted"; the NFS server, the one pod that needs more,
    runs in its own namespace labelled "privileged" (nfs.server.namespace)."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    run(["helm", "package", str(CHART), "--destination", str(tmp_path)], timeout=120)
    run(["helm", "push", str(tmp_path / f"qhub-{version}.tgz"), f"oci://{registry}/charts", "--plain-http"])
    ref = f"oci://{registry}/charts/qhub"
    suffix = uuid.uuid4().hex[:6]
    ns, nfs_ns = f"rs-{suffix}", f"rs-{suffix}-nfs"
    for name, level in ((ns, "restricted"), (nfs_ns, "privileged")):
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": {"pod-security.kubernetes.io/enforce": level}}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    env = cluster.env
    try:
        # The NFS server's pod would be refused in the restricted namespace (server-side dry run of its pod).
        rendered = run(["helm", "template", "qhub", str(CHART), "--namespace", ns, "-f", str(LOCAL_VALUES),
                        "--set", "nfs.service.clusterIP=10.96.0.20",
                        "--show-only", "charts/nfs/templates/server/statefulset.yaml"]).stdout
        template = yaml.safe_load(rendered)["spec"]["template"]
        template["spec"].pop("serviceAccountName")  # not created by a dry run; Pod Security is what is probed
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nfs-probe", "namespace": ns},
               "spec": template["spec"]}
        refused = run(["kubectl", "apply", "--dry-run=server", "-f", "-"], env=env, input=json.dumps(pod),
                      check=False)
        assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, refused.stderr

        run(["helm", "install", "qhub", ref, "--version", version, "--plain-http", "--namespace", ns,
             "-f", str(LOCAL_VALUES), "--set", f"nfs.server.namespace={nfs_ns}",
             "--wait", "--timeout", "4m"], env=env, timeout=360)
        pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
        assert pods and all(p["status"]["phase"] in ("Running", "Succeeded") for p in pods), \
            [(p["metadata"]["name"], p["status"]["phase"]) for p in pods]
        server = json.loads(cluster.kubectl("get", "pods", "-n", nfs_ns, "-o", "json"))["items"]
        assert [p["metadata"]["labels"]["app.kubernetes.io/name"] for p in server] == ["nfs"]
        assert server[0]["status"]["phase"] == "Running"
    finally:
        run(["helm", "uninstall", "qhub", "-n", ns, "--wait", "--timeout", "2m"], env=env, check=False)
        cluster.kubectl("delete", "namespace", ns, nfs_ns, "--wait=false")
        run(["kubectl", "delete", "persistentvolume", f"{ns}-qhub-shared", "--ignore-not-found", "--wait=false"],
            env=env, check=False)
