"""The in-cluster NFS server on the real node: QHub's nfs-server image (NFS-Ganesha from Debian, images/nfs-server)
runs as the nfs subchart's StatefulSet in a namespace of its own that enforces Pod Security `privileged`, next to a
release namespace that enforces `restricted`, and a real NFS client uses its export.

The real node's kernel has no NFS client, so nothing here mounts NFS: the client is libnfs (Debian's libnfs-utils:
nfs-ls, nfs-cp, nfs-cat) in ordinary `restricted` pods, speaking NFSv4.0 to the server's Service. The chart is
installed with `nfs.clientCIDRs` naming one of two client pods, so Ganesha's own client list is what tells them
apart: the other pod is refused by the server. (The node does not enforce NetworkPolicies, so the chart's policy,
which admits the same ranges, plays no part here; the refusal comes from the NFS server.) AUTH_SYS lets a client
claim any uid (libnfs's `uid=` and `gid=` URL arguments); root is squashed, so a client claiming uid 0 gets nothing
the anonymous uid could not do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodekit import ARTIFACTS, Node, restricted_pod, wait_for
from qhubctl import localcluster, podsecurity, realnode
from qhubctl.images import registry
from qhubctl.images.build import build
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import Result, run

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
CLIENT_SPEC = Path(__file__).resolve().parent / "images" / "nfs-client"
RELEASE = "qhub"
NFS_VALUES = yaml.safe_load((CHART / "charts" / "nfs" / "values.yaml").read_text())
EXPORT_UID, EXPORT_GID = NFS_VALUES["export"]["uid"], NFS_VALUES["export"]["gid"]


def push(cluster: LocalCluster, spec: Path, repository: str, tag: str) -> str:
    """Build a spec (from cache when nothing changed), push it to the real node's registry, drop stale node copies."""
    result = build(spec, version=tag)
    target = registry.parse_target(realnode.REGISTRY, f"{repository}:{tag}")
    registry.push(result.image, target)
    localcluster.real_node(cluster.name).drop_stale_images()
    return f"{realnode.REGISTRY}/{repository}:{tag}"


def app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def values(server_ns: str, allowed_ip: str) -> dict[str, Any]:
    """The umbrella chart with only the NFS server, on the real node, serving one client address."""
    return {
        "global": {
            "imageRegistry": realnode.REGISTRY,
            "daskClusters": {"enabled": False},  # follows dask-gateway.enabled
            "nodeGroups": {"general": {
                "nodeSelector": {"qhub.dev/node-group": "", realnode.REAL_LABEL: "true"},
                "tolerations": [{"key": realnode.REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            }},
        },
        "ingress": {"enabled": False},
        "jupyterhub": {"enabled": False, "hub": {"services": {
            "dask-gateway": {"enabled": False}, "conda-store": {"enabled": False}, "kubessh": {"enabled": False}}}},
        "dask-gateway": {"enabled": False},
        "conda-store": {"enabled": False},
        "kubessh": {"enabled": False},
        "nfs": {"server": {"namespace": server_ns}, "persistence": {"size": "1Gi"},
                "clientCIDRs": [f"{allowed_ip}/32"]},
    }


@contextmanager
def server_namespace(cluster: LocalCluster, node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for the server, labelled as qhubctl labels storage.server_namespace (enforce privileged); when
    the test fails its pods, events and logs are saved. The caller deletes it."""
    ns = f"{node.ns}-server"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in podsecurity.labels("privileged").items()))
    failed = request.session.testsfailed
    yield ns
    if request.session.testsfailed > failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}-server.txt"
        path.write_text(localcluster.namespace_report(cluster, ns, logs=True))
        print(f"\n[node] what the NFS server's namespace {ns} did: {path}")


@pytest.fixture
def server_ns(cluster: LocalCluster, node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    """The server's namespace; the release is uninstalled and the namespace deleted after."""
    with server_namespace(cluster, node, request) as ns:
        yield ns
    run([str(localcluster.bin_dir() / "helm"), "uninstall", RELEASE, "-n", node.ns, "--wait", "--timeout", "2m",
         "--kubeconfig", str(cluster.kubeconfig)], check=False, timeout=180)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


class Client:
    """libnfs commands run in one client pod against the server's address."""

    def __init__(self, cluster: LocalCluster, ns: str, pod: str, server: str) -> None:
        self.cluster, self.ns, self.pod, self.server = cluster, ns, pod, server

    def url(self, path: str, uid: int, gid: int) -> str:
        # nfs://server/<export>/<file>: the export is the pseudo-root "/", hence the double slash before a file name
        return f"nfs://{self.server}/{path}?version=4&uid={uid}&gid={gid}"

    def sh(self, script: str) -> Result:
        return run([str(localcluster.bin_dir() / "kubectl"), "exec", "-n", self.ns, self.pod, "--", "sh", "-c",
                    script], env=self.cluster.env, check=False, timeout=120)

    def ls(self, uid: int, gid: int) -> Result:
        return self.sh(f"nfs-ls '{self.url('', uid, gid)}'")

    def write(self, name: str, text: str, uid: int, gid: int) -> Result:
        return self.sh(f"printf %s '{text}' > /tmp/up && nfs-cp /tmp/up '{self.url('/' + name, uid, gid)}'")

    def read(self, name: str, uid: int, gid: int) -> Result:
        # nfs-cp reports "copied N bytes" on standard output: only the file's contents go there
        return self.sh(f"rm -f /tmp/down && nfs-cp '{self.url('/' + name, uid, gid)}' /tmp/down >&2 && cat /tmp/down")


def out(result: Result) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def client_pod(name: str, ns: str, image: str) -> dict[str, Any]:
    pod = restricted_pod(name, ns, ["sleep", "3600"], image=image, volumes=[{"name": "tmp", "emptyDir": {}}],
                         mounts=[{"name": "tmp", "mountPath": "/tmp"}])
    pod["spec"]["terminationGracePeriodSeconds"] = 0
    return pod


def server_pod(cluster: LocalCluster, ns: str) -> dict[str, Any]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=nfs",
                                      "-o", "json"))["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return dict(pods[0])


def test_nfs_server_serves_its_export_to_its_clients_only(cluster: LocalCluster, node: Node, server_ns: str,
                                                          tmp_path: Path) -> None:
    tag = app_version()
    push(cluster, REPO / "images" / "nfs-server", "qhub/nfs-server", tag)
    client_image = push(cluster, CLIENT_SPEC, "qhub/nfs-client", str(yaml.safe_load(
        (CLIENT_SPEC / "image.yaml").read_text())["version"]))
    node.apply(client_pod("allowed", node.ns, client_image), client_pod("outsider", node.ns, client_image))
    allowed_ip = node.wait_ready("allowed")["status"]["podIP"]
    outsider_ip = node.wait_ready("outsider")["status"]["podIP"]
    assert allowed_ip != outsider_ip

    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values(server_ns, allowed_ip)))
    installed = run([str(localcluster.bin_dir() / "helm"), "install", RELEASE, str(CHART), "-n", node.ns,
                     "-f", str(values_file), "--wait", "--timeout", "5m", "--kubeconfig", str(cluster.kubeconfig)],
                    check=False, timeout=360)
    assert installed.ok, f"helm install failed:\n{installed.stderr[-3000:]}"

    # the server: Ready on the real node (its readiness probe is NFS's port), as root in the privileged namespace
    pod = server_pod(cluster, server_ns)
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert pod["spec"]["containers"][0]["image"] == f"{realnode.REGISTRY}/qhub/nfs-server:{tag}"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
    name = pod["metadata"]["name"]
    log = cluster.kubectl("logs", "-n", server_ns, name, "-c", "nfs-server")
    assert "NFS SERVER INITIALIZED" in log, log[-3000:]
    namespaces = {n: json.loads(cluster.kubectl("get", "namespace", n, "-o", "json"))["metadata"]["labels"]
                  for n in (node.ns, server_ns)}
    assert namespaces[server_ns]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces[node.ns]["pod-security.kubernetes.io/enforce"] == "restricted"
    service = json.loads(cluster.kubectl("get", "service", "-n", server_ns, f"{RELEASE}-nfs", "-o", "json"))
    server_ip = service["spec"]["clusterIP"]
    pv = json.loads(cluster.kubectl("get", "pv", f"{node.ns}-{RELEASE}-shared", "-o", "json"))
    assert pv["spec"]["nfs"] == {"server": server_ip, "path": "/"}, "the shared volume names the server's Service"

    allowed = Client(cluster, node.ns, "allowed", server_ip)
    # a fresh server leaves its grace period at once (no clients to reclaim state); wait for it all the same
    wait_for("the NFS server to answer nfs-ls", lambda: allowed.ls(EXPORT_UID, EXPORT_GID).ok, timeout=90, interval=3)

    # list, write and read back as the export's owner (the hub's uid and gid, set on the export root by the init
    # container)
    token = uuid.uuid4().hex
    wrote = allowed.write("probe.txt", token, EXPORT_UID, EXPORT_GID)
    assert wrote.ok, out(wrote)
    listing = allowed.ls(EXPORT_UID, EXPORT_GID)
    assert listing.ok, out(listing)
    entry = next((line.split() for line in listing.stdout.splitlines() if line.endswith(" probe.txt")), None)
    assert entry is not None, out(listing)
    assert entry[2:5] == [str(EXPORT_UID), str(EXPORT_GID), str(len(token))], out(listing)
    read = allowed.read("probe.txt", EXPORT_UID, EXPORT_GID)
    assert read.ok and read.stdout == token, out(read)
    on_disk = cluster.kubectl("exec", "-n", server_ns, name, "-c", "nfs-server", "--", "ls", "-ln", "/export")
    assert any(line.split()[2:4] == [str(EXPORT_UID), str(EXPORT_GID)] and line.endswith(" probe.txt")
               for line in on_disk.splitlines()), on_disk

    # root on a client is squashed to the anonymous uid: it may neither write into the export root (the hub's,
    # 0755) nor read the hub's file (0660), which root on the server itself could
    as_root = allowed.write("root.txt", token, 0, 0)
    assert not as_root.ok and "NFS4ERR_ACCESS" in out(as_root), out(as_root)
    read_as_root = allowed.read("probe.txt", 0, 0)
    assert not read_as_root.ok and "NFS4ERR_ACCESS" in out(read_as_root), out(read_as_root)

    # a client outside nfs.clientCIDRs is refused by the server, whatever uid it claims
    outsider = Client(cluster, node.ns, "outsider", server_ip)
    for result in (outsider.ls(EXPORT_UID, EXPORT_GID), outsider.read("probe.txt", EXPORT_UID, EXPORT_GID),
                   outsider.write("outsider.txt", token, EXPORT_UID, EXPORT_GID)):
        assert not result.ok and "NFS4ERR_ACCESS" in out(result), f"{outsider_ip} was served:\n{out(result)}"
    assert " outsider.txt" not in allowed.ls(EXPORT_UID, EXPORT_GID).stdout

    # and the server is still the one that started: no restart, still Ready
    pod = server_pod(cluster, server_ns)
    assert pod["metadata"]["name"] == name
    assert [c["restartCount"] for c in pod["status"]["containerStatuses"]] == [0]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
