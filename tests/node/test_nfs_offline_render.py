"""The chart rendered with no cluster to ask (`helm template`, as Argo CD and `helm template | kubectl apply` users
render it) and applied with kubectl on the real node works: the NFS server's Service gets its address from the
cluster, the volume Job (charts/nfs/templates/volume/) makes the shared PersistentVolume name that address, the
shared claim binds, and the address in the volume serves the export.

The real node's kernel has no NFS client, so no pod mounts the claim; the NFS client is libnfs in a `restricted`
pod (as in test_nfs_server.py), pointed at the address the Job wrote into the volume - the address the kubelet
would mount. Only the NFS server is on (in a namespace of its own enforcing `privileged`), so the test stays short.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodekit import Node, wait_for
from qhubctl import localcluster
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run
from test_nfs_server import (CHART, CLIENT_SPEC, EXPORT_GID, EXPORT_UID, RELEASE, REPO, Client, app_version,
                             client_pod, out, push, server_namespace, server_pod, values)

pytestmark = pytest.mark.node

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def render_offline(ns: str, values_file: Path, tmp: Path) -> str:
    """`helm template` with no cluster: KUBECONFIG names no file, no in-cluster variables (helm tests left out, as
    `kubectl apply` users leave them)."""
    rendered = run([str(localcluster.bin_dir() / "helm"), "template", RELEASE, str(CHART), "--namespace", ns,
                    "-f", str(values_file), "--skip-tests"],
                   env={"KUBECONFIG": str(tmp / "no-such-kubeconfig"), "KUBERNETES_SERVICE_HOST": "",
                        "KUBERNETES_SERVICE_PORT": ""}, check=False, timeout=120)
    assert rendered.ok, f"helm template without a cluster failed:\n{rendered.stderr[-3000:]}"
    return rendered.stdout


def placed(docs: list[dict[str, Any]], ns: str) -> list[dict[str, Any]]:
    """The documents with the release namespace on every namespaced object that names none, as Argo CD places them
    (the server's objects name their own namespace, so one `kubectl apply -n` cannot take them all)."""
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"].setdefault("namespace", ns)
    return docs


def get(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *args, "-o", "json")))


@pytest.fixture
def server_ns(cluster: LocalCluster, node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    """The server's own namespace (enforce privileged); after the test it is deleted together with what the render
    made outside any namespace (the Job's PersistentVolume, ClusterRole and ClusterRoleBinding); on failure its pods,
    events and logs are saved first."""
    with server_namespace(cluster, node, request) as ns:
        yield ns
    rbac = f"{node.ns}-{RELEASE}-nfs-volume"
    cluster.kubectl("delete", "--ignore-not-found", "--wait=false", f"persistentvolume/{node.ns}-{RELEASE}-shared",
                    f"clusterrole/{rbac}", f"clusterrolebinding/{rbac}")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_offline_render_applied_with_kubectl_gets_its_nfs_volume(cluster: LocalCluster, node: Node, server_ns: str,
                                                                  tmp_path: Path) -> None:
    push(cluster, REPO / "images" / "nfs-server", "qhub/nfs-server", app_version())
    client_image = push(cluster, CLIENT_SPEC, "qhub/nfs-client", str(yaml.safe_load(
        (CLIENT_SPEC / "image.yaml").read_text())["version"]))
    node.apply(client_pod("client", node.ns, client_image))
    client_ip = node.wait_ready("client")["status"]["podIP"]

    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values(server_ns, client_ip)))
    manifest = render_offline(node.ns, values_file, tmp_path)
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    pv_name = f"{node.ns}-{RELEASE}-shared"
    assert ("PersistentVolume", pv_name) not in kinds, "no address at render time: the Job makes the volume"
    (job,) = [name for kind, name in kinds if kind == "Job"]
    assert job.startswith(f"{RELEASE}-nfs-volume-")

    applied = tmp_path / "offline.yaml"
    applied.write_text(yaml.safe_dump_all(placed(docs, node.ns)))
    cluster.kubectl("apply", "-f", str(applied))
    # the Job runs as soon as the cluster has given the Service an address; its log says what it did
    cluster.kubectl("wait", "-n", node.ns, "--for=condition=complete", f"job/{job}", "--timeout=180s", timeout=200)
    log = cluster.kubectl("logs", "-n", node.ns, f"job/{job}")
    service_ip = get(cluster, "service", "-n", server_ns, f"{RELEASE}-nfs")["spec"]["clusterIP"]
    assert f"PersistentVolume {pv_name} created: nfs {service_ip}:/" in log, log

    pv = get(cluster, "persistentvolume", pv_name)
    assert pv["spec"]["nfs"] == {"server": service_ip, "path": "/"}
    assert pv["spec"]["claimRef"]["namespace"] == node.ns and pv["spec"]["claimRef"]["name"] == f"{RELEASE}-shared"
    assert pv["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", "a later helm upgrade adopts it"
    assert {k: v for k, v in pv["metadata"]["annotations"].items() if k.startswith("meta.helm.sh/")} == {
        "meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": node.ns}
    wait_for("the shared claim to bind the Job's volume",
             lambda: get(cluster, "pvc", "-n", node.ns, f"{RELEASE}-shared")["status"].get("phase") == "Bound",
             timeout=60)

    # the same render applied again changes nothing: the Job keeps its name and is not run again
    again = cluster.kubectl("apply", "-f", str(applied))
    assert f"job.batch/{job} unchanged" in again, again

    # the address in the volume is the server, and it serves the export (once the server is Ready)
    wait_for("the NFS server to be Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in server_pod(cluster, server_ns)["status"].get("conditions", [])), timeout=180, interval=2)
    client = Client(cluster, node.ns, "client", pv["spec"]["nfs"]["server"])
    wait_for("the NFS server to answer nfs-ls", lambda: client.ls(EXPORT_UID, EXPORT_GID).ok, timeout=90, interval=3)
    token = uuid.uuid4().hex
    wrote = client.write("offline.txt", token, EXPORT_UID, EXPORT_GID)
    assert wrote.ok, out(wrote)
    read = client.read("offline.txt", EXPORT_UID, EXPORT_GID)
    assert read.ok and read.stdout == token, out(read)
