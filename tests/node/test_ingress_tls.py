"""HTTPS with a certificate from an ACME CA, end to end on the real node: the add-on chart's Traefik (installed by
qhubctl.addons from a config with `ingress.controller.enabled` and `tls: {type: letsencrypt}`) gets the platform's
certificate from Pebble, Let's Encrypt's ACME test server, through a real HTTP-01 challenge.

Pebble and pebble-challtestsrv (built here from github.com/letsencrypt/pebble/v2, tests/node/images/pebble) run in
one pod of their own namespace; Pebble's HTTPS certificate is made by the test for its Service name, and Traefik
trusts that CA through `tls.server_ca` (LEGO_CA_CERTIFICATES). challtestsrv's DNS answers the test domain (and
nothing else) with Traefik's ClusterIP, so Pebble's validation request reaches Traefik on port 80. QHub (the hub
and proxy) is deployed with that domain by `qhubctl deploy`. A real HTTPS client in this process (the domain
resolved to Traefik's ClusterIP, as /etc/hosts would) then checks that the served certificate chains to Pebble's
root (from its management API), logs in at https://<domain>/hub/login, is redirected from HTTP to HTTPS, and gets
the same certificate after Traefik's pod is replaced (acme.json on its volume). `qhubctl status` says how to reach
Traefik (a NodePort on this cluster)."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import qhubkit
import requests
import yaml
from qhubkit import Platform
from typer.testing import CliRunner

from nodekit import ARTIFACTS, wait_for
from qhubctl import addons, localcluster, realnode
from qhubctl.cli import app
from qhubctl.config import parse_config
from qhubctl.images import registry
from qhubctl.images.build import build
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.node

TAG = uuid.uuid4().hex[:6]
ACME_NS = f"acme-{TAG}"  # Pebble
INGRESS_NS = f"ingress-{TAG}"  # the add-on release with Traefik (kube-system on a created cluster)
NS, RELEASE = "qhub-tls", "qtls"
DOMAIN = "hub.qhub-node.test"
PEBBLE_SPEC = Path(__file__).resolve().parent / "images" / "pebble"
IMAGES = ("jupyterhub", "traefik")  # the hub's image (hub, proxy) and Traefik's; no user server is started


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(work: Path, names: list[str], ip: str) -> tuple[str, str, str]:
    """A CA and a certificate for Pebble's Service (its DNS names and ClusterIP): (ca, cert, key) in PEM."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=qhub node test ACME server CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=work)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=pebble",
             "-keyout", "tls.key", "-out", "tls.csr", cwd=work)
    sans = ",".join([*(f"DNS:{n}" for n in names), f"IP:{ip}"])
    (work / "ext.cnf").write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "ext.cnf", "-out", "tls.crt", cwd=work)
    return tuple((work / f).read_text() for f in ("ca.crt", "tls.crt", "tls.key"))  # type: ignore[return-value]


def push_pebble(cluster: LocalCluster) -> str:
    version = str(yaml.safe_load((PEBBLE_SPEC / "image.yaml").read_text())["version"])
    result = build(PEBBLE_SPEC, version=version)
    registry.push(result.image, registry.parse_target(realnode.REGISTRY, f"qhub/pebble:{version}"))
    localcluster.real_node(cluster.name).drop_stale_images()
    return f"{realnode.REGISTRY}/qhub/pebble:{version}"


def pebble_pod(image: str) -> dict[str, Any]:
    """Pebble (ACME on 14000, management on 15000, resolving through challtestsrv) and challtestsrv (DNS on 8053
    with only the records its management API on 8055 is given, nothing else served) as two restricted containers."""
    secure = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    resources = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pebble", "namespace": ACME_NS, "labels": {"app": "pebble"}},
        "spec": {
            "nodeSelector": {realnode.REAL_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "pebble", "image": image, "securityContext": secure, "resources": resources,
                 "command": ["/usr/local/bin/pebble", "-config", "/config/pebble-config.json",
                             "-dnsserver", "127.0.0.1:8053"],
                 # no random sleep before validating, no simulated bad nonces: a fast, deterministic issuance
                 "env": [{"name": "PEBBLE_VA_NOSLEEP", "value": "1"}, {"name": "PEBBLE_WFE_NONCEREJECT", "value": "0"}],
                 "ports": [{"containerPort": 14000}, {"containerPort": 15000}],
                 "readinessProbe": {"httpGet": {"path": "/dir", "port": 14000, "scheme": "HTTPS"},
                                    "periodSeconds": 1},
                 "volumeMounts": [{"name": "config", "mountPath": "/config"}, {"name": "tls", "mountPath": "/tls"}]},
                {"name": "challtestsrv", "image": image, "securityContext": secure, "resources": resources,
                 "command": ["/usr/local/bin/pebble-challtestsrv", "-dnsserver", ":8053", "-management", ":8055",
                             "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
                             "-defaultIPv4", "", "-defaultIPv6", ""]},
            ],
            "volumes": [{"name": "config", "configMap": {"name": "pebble"}}, {"name": "tls", "secret": {"secretName":
                                                                                                      "pebble-tls"}}],
        },
    }


def pebble_config() -> dict[str, Any]:
    return {"pebble": {"listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
                       "certificate": "/tls/tls.crt", "privateKey": "/tls/tls.key",
                       "httpPort": 80, "tlsPort": 443,  # validation goes to the domain's port 80: Traefik's Service
                       "ocspResponderURL": "", "externalAccountBindingRequired": False}}


class Acme:
    """Pebble running: its directory URL, the CA of its HTTPS certificate, and its issuing roots."""

    def __init__(self, cluster: LocalCluster, work: Path) -> None:
        self.cluster = cluster
        image = push_pebble(cluster)
        kubectl = cluster.kubectl
        kubectl("create", "namespace", ACME_NS)
        kubectl("label", "namespace", ACME_NS, "pod-security.kubernetes.io/enforce=restricted")
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pebble", "namespace": ACME_NS},
                   "spec": {"selector": {"app": "pebble"},
                            "ports": [{"name": "acme", "port": 14000}, {"name": "management", "port": 15000},
                                      {"name": "dns-management", "port": 8055}]}}
        self.apply(service)
        self.ip = json.loads(kubectl("get", "service", "pebble", "-n", ACME_NS, "-o", "json"))["spec"]["clusterIP"]
        host = f"pebble.{ACME_NS}.svc"
        self.ca, cert, key = make_certificates(work, [host, f"{host}.cluster.local"], self.ip)
        self.ca_file = work / "ca.crt"
        self.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pebble", "namespace": ACME_NS},
                    "data": {"pebble-config.json": json.dumps(pebble_config())}},
                   {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pebble-tls", "namespace": ACME_NS},
                    "type": "kubernetes.io/tls", "stringData": {"tls.crt": cert, "tls.key": key}},
                   pebble_pod(image))
        kubectl("wait", "--for=condition=Ready", "pod/pebble", "-n", ACME_NS, "--timeout=120s")
        self.directory = f"https://{host}:14000/dir"

    def apply(self, *objects: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": list(objects)}))

    def point(self, domain: str, ip: str) -> None:
        """challtestsrv's DNS answers A queries for `domain` with `ip` (plain HTTP, only inside the cluster)."""
        answer = requests.post(f"http://{self.ip}:8055/add-a", json={"host": domain, "addresses": [ip]}, timeout=10)
        assert answer.status_code == 200, answer.text

    def root(self, work: Path) -> Path:
        """Pebble's issuing root (made at its start), from its management API over verified HTTPS."""
        def fetch() -> str | None:
            try:  # until kube-proxy has the Service's endpoint (before, the ClusterIP refuses connections)
                answer = requests.get(f"https://{self.ip}:15000/roots/0", verify=str(self.ca_file), timeout=5)
            except requests.ConnectionError:
                return None
            answer.raise_for_status()
            return answer.text

        pem = wait_for("Pebble's management API", fetch, timeout=60)
        path = work / "pebble-root.pem"
        path.write_text(pem)
        return path


def served_certificate(ip: str, port: int = 443) -> tuple[bytes, str, datetime]:
    """The certificate Traefik serves for DOMAIN (SNI) on ip:port, unverified: (DER, issuer, notBefore)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-issuer", "-startdate"], input=der,
                          capture_output=True, check=True, timeout=10).stdout.decode()
    fields = dict(line.split("=", 1) for line in text.splitlines())
    start = datetime.strptime(fields["notBefore"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
    return der, fields["issuer"].strip(), start


def certificate_if_served(ip: str) -> tuple[bytes, str, datetime] | None:
    """served_certificate, or None while nothing answers: a replaced pod is Ready before kube-proxy routes the
    Service to it (refused), and Traefik serves its default certificate until ACME is done."""
    try:
        return served_certificate(ip)
    except (OSError, ssl.SSLError):
        return None


def qhub_config(acme: Acme) -> dict[str, Any]:
    """`qhubctl init local`'s config with the test domain, Let's Encrypt through Pebble, QHub's Traefik opted in;
    only the hub and proxy (no Dask-Gateway, no SSH)."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["components"].update(dask_gateway=False, kubessh=False)
    cfg["domain"] = DOMAIN
    cfg["tls"] = {"type": "letsencrypt", "email": "admin@qhub-node.test", "server": acme.directory,
                  "server_ca": acme.ca}
    cfg["ingress"] = {"controller": {"enabled": True}}
    return cfg


@pytest.fixture(scope="module")
def traefik_release(cluster: LocalCluster) -> Iterator[None]:
    """The add-on release's names for this module (Traefik in a namespace of its own); removed at the end."""
    patch = pytest.MonkeyPatch()
    patch.setattr(addons, "RELEASE", f"addons-{TAG}")
    patch.setattr(addons, "NAMESPACE", INGRESS_NS)
    patch.setattr(addons, "TRAEFIK_SERVICE", f"addons-{TAG}-traefik")
    cluster.kubectl("create", "namespace", INGRESS_NS)
    cluster.kubectl("label", "namespace", INGRESS_NS, "pod-security.kubernetes.io/enforce=restricted")
    try:
        yield
    finally:
        addons.remove(addons.helm_for(str(cluster.kubeconfig), None))
        for ns in (INGRESS_NS, ACME_NS):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")
        patch.undo()


def report(cluster: LocalCluster, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ingress-tls-{name}.txt"
    path.write_text("\n\n".join(localcluster.namespace_report(cluster, ns, logs=True)
                                for ns in (INGRESS_NS, ACME_NS, NS)))
    return path


def test_letsencrypt_through_traefik_with_pebble(cluster: LocalCluster, traefik_release: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 request: pytest.FixtureRequest) -> None:
    try:
        journey(cluster, tmp_path, monkeypatch)
    except BaseException:
        print(f"\n[node] what Traefik, Pebble and the hub did: {report(cluster, request.node.name)}")
        raise


def journey(cluster: LocalCluster, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = Acme(cluster, work)
    root = acme.root(work)
    config = qhub_config(acme)
    qhubkit.push_images(cluster, ("traefik",))
    begun = time.monotonic()
    addons.ensure(parse_config(config, environ={}), addons.AddonFacts("local"),
                  addons.helm_for(str(cluster.kubeconfig), None), print, timeout="3m")
    print(f"\n[node] Traefik with the ACME resolver installed in {time.monotonic() - begun:.1f} s")
    service = json.loads(cluster.kubectl("get", "service", addons.TRAEFIK_SERVICE, "-n", INGRESS_NS, "-o", "json"))
    traefik_ip = service["spec"]["clusterIP"]
    acme.point(DOMAIN, traefik_ip)  # the DNS record the user would create (here: the ClusterIP; no load balancer)
    with qhubkit.deployed(cluster, work, NS, RELEASE, config, IMAGES) as platform:
        der, issuer, not_before = wait_for("Traefik to serve a certificate from Pebble", lambda: (
            (got := certificate_if_served(traefik_ip)) and "Pebble" in got[1] and got), timeout=120, interval=1)
        ingress = json.loads(cluster.kubectl("get", "ingress", RELEASE, "-n", NS, "-o", "json"))
        created = datetime.fromisoformat(ingress["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        print(f"[node] certificate issued in {(not_before - created).total_seconds():.0f} s (from the Ingress's "
              f"creation to the certificate's notBefore; deploy {platform.deploy_seconds:.0f} s); issuer: {issuer}")
        check_https(platform, traefik_ip, root, monkeypatch)
        check_status(platform)
        restarted = restart_traefik(cluster)
        print(f"[node] Traefik replaced and Ready again in {restarted:.1f} s")
        again = wait_for("the new Traefik pod to serve a certificate from Pebble", lambda: (
            (got := certificate_if_served(traefik_ip)) and "Pebble" in got[1] and got[0]), timeout=60)
        assert hashlib.sha256(again).hexdigest() == hashlib.sha256(der).hexdigest(), \
            "a new certificate after the restart: acme.json did not survive on its volume"


def check_https(platform: Platform, traefik_ip: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real client: DOMAIN resolves to Traefik's ClusterIP (as /etc/hosts would); only Pebble's root is trusted."""
    resolve = socket.getaddrinfo

    def hosts(host: Any, *args: Any, **kw: Any) -> Any:
        return resolve(traefik_ip if host == DOMAIN else host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", hosts)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(root))  # the login helper's session verifies against it
    redirect = requests.get(f"http://{DOMAIN}/hub/login", allow_redirects=False, timeout=10)
    assert redirect.status_code in (301, 308), (redirect.status_code, redirect.text[:200])
    assert redirect.headers["Location"] == f"https://{DOMAIN}/hub/login"
    page = requests.get(f"https://{DOMAIN}/hub/login", verify=str(root), timeout=10)
    assert page.status_code == 200 and "password" in page.text.lower()
    with pytest.raises(requests.exceptions.SSLError):  # the chain ends at Pebble's root, which no public CA is
        requests.get(f"https://{DOMAIN}/hub/login", verify=requests.certs.where(), timeout=10)
    admin = platform.access["admin_username"]
    session = qhubkit.demo_access.login(f"https://{DOMAIN}/", admin, platform.access["admin_password"])
    home = session.get(f"https://{DOMAIN}/hub/home", timeout=10)
    assert home.status_code == 200 and home.url == f"https://{DOMAIN}/hub/home", (home.url, home.status_code)
    assert admin in home.text, "the hub's home page of the logged-in admin"


def check_status(platform: Platform) -> None:
    """`qhubctl deploy` and `qhubctl status` name the DNS record: on this cluster, Traefik's NodePorts and the
    /etc/hosts line."""
    result = CliRunner().invoke(app, ["status", "-c", str(platform.config), "--kubeconfig",
                                      str(platform.cluster.kubeconfig)], catch_exceptions=False)
    assert f"jupyterhub: https://{DOMAIN}/hub/" in result.output, result.output
    for command, output in (("status", result.output), ("deploy", platform.deploy_output)):
        assert f"DNS: Traefik's Service {INGRESS_NS}/{addons.TRAEFIK_SERVICE} is a NodePort" in output, \
            f"qhubctl {command}:\n{output}"
        assert f"`127.0.0.1 {DOMAIN}` in /etc/hosts" in output, f"qhubctl {command}:\n{output}"


def restart_traefik(cluster: LocalCluster) -> float:
    """Delete Traefik's pod and wait for its replacement to be Ready; the seconds."""
    begun = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", INGRESS_NS, "-l", "app.kubernetes.io/name=traefik", "--wait=true")

    def ready() -> bool:
        status = json.loads(cluster.kubectl("get", "deployment", addons.TRAEFIK_SERVICE, "-n", INGRESS_NS,
                                            "-o", "json"))["status"]
        return bool(status.get("readyReplicas") == 1 and not status.get("unavailableReplicas"))

    wait_for("Traefik's new pod to be Ready", ready, timeout=120)
    return time.monotonic() - begun
