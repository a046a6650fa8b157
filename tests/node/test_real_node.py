"""The local cluster's real node runs containers: the checks kwok could never make.

Every pod here is admitted by Pod Security `restricted`, runs as uid 1000 from an image built by qhubctl's image
builder and pulled from the registry on loopback, and is placed on the real node by its label and taint.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
import uuid

import pytest

from qhubctl import localcluster, realnode
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run
from nodekit import Node, restricted_pod, wait_for

pytestmark = pytest.mark.node

WEB_PORT = 8080


def web_server(node: Node, token: str) -> None:
    """busybox httpd serving `token` from an emptyDir, behind a Service named `web`."""
    serve = f"echo {token} > /www/index.html && exec httpd -f -v -p {WEB_PORT} -h /www"
    pod = restricted_pod("web", node.ns, ["sh", "-c", serve], labels={"app": "web"},
                         volumes=[{"name": "www", "emptyDir": {}}], mounts=[{"name": "www", "mountPath": "/www"}],
                         ports=[{"containerPort": WEB_PORT, "name": "http"}],
                         readiness={"tcpSocket": {"port": WEB_PORT}, "periodSeconds": 1})
    pod["spec"]["restartPolicy"] = "Always"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": node.ns},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    node.apply(pod, service)
    node.wait_ready("web")


def test_node_is_real_and_kwok_leaves_it_alone(cluster: LocalCluster) -> None:
    found = json.loads(cluster.kubectl("get", "node", realnode.NODE_NAME, "-o", "json"))
    info = found["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"] == localcluster._kube_version()
    assert "kwok.x-k8s.io/node" not in found["metadata"].get("annotations", {})
    addresses = {a["type"]: a["address"] for a in found["status"]["addresses"]}
    assert addresses["InternalIP"] == realnode.NODE_IP
    assert {"key": realnode.REAL_LABEL, "value": "true", "effect": "NoSchedule"} in found["spec"]["taints"]


def test_pod_answers_through_a_service_by_dns_name(node: Node) -> None:
    token = uuid.uuid4().hex
    web_server(node, token)
    web_ip = node.pod("web")["status"]["podIP"]
    assert ipaddress.ip_address(web_ip) in ipaddress.ip_network(realnode.POD_CIDR), "a real pod address, not kwok's"
    url = f"http://web.{node.ns}.svc.{realnode.CLUSTER_DOMAIN}/index.html"
    client = restricted_pod("client", node.ns, ["sh", "-c", f"nslookup web.{node.ns}.svc.{realnode.CLUSTER_DOMAIN}"
                                                           f" && wget -q -O - {url}"])
    out = node.run_to_completion("client", client)
    assert token in out
    service_ip = json.loads(node.cluster.kubectl("get", "svc", "web", "-n", node.ns, "-o", "json"))["spec"]["clusterIP"]
    assert service_ip in out, "the name resolved to the Service's ClusterIP"


def test_in_cluster_clients_reach_the_api_server_with_verified_tls(cluster: LocalCluster, node: Node) -> None:
    """Pods dial the `kubernetes` Service (10.0.0.1:443): kube-proxy sends it to the API server on the bridge, whose
    certificate is valid for that address under the cluster CA. (busybox's TLS client cannot talk to the API server,
    so the TLS part is checked from this machine through the same Service rules, and by CoreDNS, a client-go
    in-cluster client that verifies the certificate and became Ready only after it had listed the API.)"""
    import ssl

    out = node.run_to_completion("resolve", restricted_pod(
        "resolve", node.ns, ["nslookup", f"kubernetes.default.svc.{realnode.CLUSTER_DOMAIN}"]))
    assert realnode.API_SERVICE_IP in out
    context = ssl.create_default_context(cafile=str(localcluster.pki_dir(cluster.name) / "ca.crt"))
    with socket.create_connection((realnode.API_SERVICE_IP, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=realnode.API_SERVICE_IP) as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    assert localcluster._kube_version().encode() in reply
    dns = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "json"))
    pod = dns["items"][0]
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    log = cluster.kubectl("logs", "-n", "kube-system", pod["metadata"]["name"])
    assert "x509" not in log and "Failed to watch" not in log, log


def test_claim_binds_and_data_survives_pod_recreation(node: Node) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": node.ns},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    node.apply(pvc)
    token = uuid.uuid4().hex
    volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mount = [{"name": "data", "mountPath": "/data"}]
    node.run_to_completion("writer", restricted_pod("writer", node.ns, ["sh", "-c", f"echo {token} > /data/f && id -u"],
                                                    volumes=volume, mounts=mount))
    claim = json.loads(node.cluster.kubectl("get", "pvc", "data", "-n", node.ns, "-o", "json"))
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == realnode.STORAGE_CLASS, "the default class is the real one"
    node.cluster.kubectl("delete", "pod", "writer", "-n", node.ns, "--wait=true")
    out = node.run_to_completion("reader", restricted_pod("reader", node.ns, ["cat", "/data/f"],
                                                          volumes=volume, mounts=mount))
    assert out.strip() == token


def test_read_write_many_claim_is_shared_by_two_running_pods(node: Node) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared", "namespace": node.ns},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    node.apply(pvc)
    volume = [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]
    mount = [{"name": "shared", "mountPath": "/shared"}]
    token = uuid.uuid4().hex
    holder = restricted_pod("holder", node.ns, ["sh", "-c", f"echo {token} > /shared/note && sleep 600"],
                            volumes=volume, mounts=mount)
    holder["spec"]["terminationGracePeriodSeconds"] = 0
    node.apply(holder)
    node.wait_phase("holder", ("Running",))
    out = node.run_to_completion("peer", restricted_pod(
        "peer", node.ns, ["sh", "-c", "for i in $(seq 30); do [ -s /shared/note ] && break; sleep 1; done; "
                                      "cat /shared/note"], volumes=volume, mounts=mount))
    assert out.strip() == token
    assert node.phase("holder") == "Running", "both pods had the claim mounted at once"


def test_restricted_pod_runs_non_root_with_read_only_root(node: Node) -> None:
    pod = restricted_pod("sleeper", node.ns, ["sleep", "600"])
    pod["spec"]["terminationGracePeriodSeconds"] = 0
    node.apply(pod)
    node.wait_phase("sleeper", ("Running",))
    uid = node.cluster.kubectl("exec", "-n", node.ns, "sleeper", "--", "id", "-u").strip()
    assert uid == "1000"
    denied = run([str(localcluster.bin_dir() / "kubectl"), "exec", "-n", node.ns, "sleeper", "--", "touch", "/probe"],
                 env=node.cluster.env, check=False)
    assert denied.returncode != 0 and "Read-only file system" in (denied.stderr + denied.stdout)
    caps = node.cluster.kubectl("exec", "-n", node.ns, "sleeper", "--", "grep", "CapEff", "/proc/self/status")
    assert caps.split()[-1] == "0000000000000000", "no capabilities at all"


def test_missing_image_is_never_ready(node: Node) -> None:
    """The check kwok could never make: an image nobody built leaves the pod waiting, not Running."""
    image = f"{realnode.REGISTRY}/qhub/no-such-image:{uuid.uuid4().hex[:8]}"
    pod = restricted_pod("ghost", node.ns, ["true"], image=image)
    node.apply(pod)

    def reason() -> str | None:
        statuses = node.pod("ghost")["status"].get("containerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return waiting.get("reason") if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    assert wait_for("the pull to fail", reason, timeout=90)
    time.sleep(3)
    status = node.pod("ghost")["status"]
    assert status["phase"] == "Pending"
    assert not any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    assert not status["containerStatuses"][0].get("ready")


def test_port_forward_reaches_a_pod_from_this_machine(node: Node) -> None:
    token = uuid.uuid4().hex
    web_server(node, token)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    forward = subprocess.Popen(  # a long-lived forwarder, stopped below
        [str(localcluster.bin_dir() / "kubectl"), "port-forward", "-n", node.ns, "pod/web", f"{port}:{WEB_PORT}"],
        env=node.cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=3) as resp:
                    return resp.read().decode()
            except OSError:
                assert forward.poll() is None, forward.stderr.read() if forward.stderr else "port-forward exited"
                return None

        assert wait_for("the forwarded port to answer", fetch, timeout=30).strip() == token
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_logs_come_from_the_container(node: Node) -> None:
    token = uuid.uuid4().hex
    out = node.run_to_completion("echo", restricted_pod("echo", node.ns, ["sh", "-c", f"echo hello-{token}"]))
    assert out.strip() == f"hello-{token}"


@pytest.mark.restarts_cluster
def test_down_leaves_nothing_and_up_works_again(cluster: LocalCluster) -> None:
    """cluster-down removes every trace of the real node; a second cluster-up after it works."""
    localcluster.down(cluster.name, log=lambda _: None)
    node = localcluster.real_node(cluster.name)
    assert node.leftovers() == []
    restarted = localcluster.up(cluster.name, log=lambda _: None)
    found = json.loads(restarted.kubectl("get", "node", realnode.NODE_NAME, "-o", "json"))
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in found["status"]["conditions"])
    dns = json.loads(restarted.kubectl("get", "deploy", "coredns", "-n", "kube-system", "-o", "json"))
    assert dns["status"].get("readyReplicas") == 1
