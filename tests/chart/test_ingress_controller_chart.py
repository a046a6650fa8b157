"""Traefik, the cluster's ingress controller in the add-on chart, as qhubctl.addons fills it: on every cloud (and on
existing and local clusters that ask) an IngressClass, a non-root read-only Traefik on high ports behind a
LoadBalancer (AWS: a Network Load Balancer; local: a NodePort) with ping probes and least-privilege RBAC; with
`tls: {type: letsencrypt}` its ACME resolver on a volume, the redirect to HTTPS and the ACME CA's trust; every
object valid (kubernetes-validate --strict); mistakes refused naming the value; and the platform's Ingress asking
that resolver for its certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl import addons
from qhubctl import nodegroups as ng
from qhubctl.chart import addons_chart_dir
from qhubctl.config import PROVIDERS, parse_config
from qhubctl.errors import CommandError
from qhubctl.proc import run
from qhubctl.providers.base import AddonFacts
from qhubctl.values import chart_values

from .addons import get, render, render_error
from .manifests import kube_versions, validation_errors

pytestmark = pytest.mark.chart
CHART = addons_chart_dir()
FACTS = AddonFacts("demo", "eu-west-1", {addons.AUTOSCALER: "arn:aws:iam::123456789012:role/qhub/demo/ca"})
NAME = "qhub-cluster-addons-traefik"
CLUSTER = {
    "aws": {"provider": "aws", "region": "eu-west-1"}, "gcp": {"provider": "gcp", "project": "my-gcp-project"},
    "azure": {"provider": "azure"}, "digitalocean": {"provider": "digitalocean"},
    "existing": {"provider": "existing"}, "local": {"provider": "local", "real_node": True},
}
LETSENCRYPT = {"domain": "qhub.example.org", "tls": {"type": "letsencrypt", "email": "ops@qhub-team.dev"}}
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX\n-----END CERTIFICATE-----\n"


def config(provider: str, **extra: Any) -> Any:
    raw: dict[str, Any] = {"schema_version": 2, "project_name": "demo", "cluster": CLUSTER[provider], **extra}
    if provider in ("existing", "local"):  # they opt in
        raw.setdefault("ingress", {}).setdefault("controller", {})["enabled"] = True
    return parse_config(raw, environ={})


def template(values: dict[str, Any], tmp_path: Path, kube_version: str = "1.35.0") -> list[dict[str, Any]]:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    out = run(["helm", "template", addons.RELEASE, str(CHART), "--namespace", addons.NAMESPACE,
               "--kube-version", kube_version, "-f", str(file)], timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d and d["metadata"]["labels"]["app.kubernetes.io/name"] == "traefik"]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "letsencrypt"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_traefik_renders_and_validates_on_each_provider(provider: str, tls: bool, tmp_path: Path) -> None:
    values = addons.values(config(provider, **(LETSENCRYPT if tls else {})), FACTS)
    wanted = {"IngressClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"}
    for version in kube_versions():
        docs = template(values, tmp_path, version)
        assert {d["kind"] for d in docs} == wanted | ({"PersistentVolumeClaim"} if tls else set())
        assert validation_errors(docs, version) == [], f"Kubernetes {version}"
    service = one(docs, "Service")
    assert service["spec"]["type"] == ("NodePort" if provider == "local" else "LoadBalancer")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "web"), (443, "websecure")]
    annotations = service["metadata"].get("annotations", {})
    assert annotations == ({"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"} if provider == "aws" else {})
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == config(provider).placements()[ng.GENERAL].node_selector


def test_traefik_runs_unprivileged_on_high_ports_with_ping_probes(tmp_path: Path) -> None:
    docs = template(addons.values(config("gcp"), FACTS), tmp_path)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"web": 8000, "websecure": 8443, "ping": 9000}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/ping", "port": "ping"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["image"] == "qhub/traefik:3.5.3" == "qhub/traefik:" + yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "images" / "traefik" / "image.yaml").read_text())["version"]
    assert "--providers.kubernetesingress.ingressclass=qhub" in c["args"]
    assert "--providers.kubernetesingress.allowemptyservices=true" in c["args"], "certificates before the hub is up"
    assert not any("redirections" in a or "certificatesresolvers" in a for a in c["args"]), "no TLS, no redirect"
    assert one(docs, "IngressClass")["spec"]["controller"] == "traefik.io/ingress-controller"


def test_traefik_rbac_reads_what_the_ingress_provider_needs_and_writes_only_ingress_status(tmp_path: Path) -> None:
    docs = template(addons.values(config("aws"), FACTS), tmp_path)
    rules = {(g, r, v) for rule in one(docs, "ClusterRole")["rules"] for g in rule["apiGroups"]
             for r in rule["resources"] for v in rule["verbs"]}
    reads = {("", r, v) for r in ("services", "secrets", "nodes") for v in ("get", "list", "watch")} | \
        {("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")} | \
        {("networking.k8s.io", r, v) for r in ("ingresses", "ingressclasses") for v in ("get", "list", "watch")}
    assert rules == reads | {("networking.k8s.io", "ingresses/status", "update")}
    assert one(docs, "ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": NAME, "namespace": "kube-system"}]


def test_letsencrypt_turns_on_the_resolver_its_volume_and_the_redirect(tmp_path: Path) -> None:
    docs = template(addons.values(config("aws", **LETSENCRYPT), FACTS), tmp_path)
    args = container(docs)["args"]
    for arg in ("--certificatesresolvers.letsencrypt.acme.email=ops@qhub-team.dev",
                "--certificatesresolvers.letsencrypt.acme.caserver=https://acme-v02.api.letsencrypt.org/directory",
                "--certificatesresolvers.letsencrypt.acme.storage=/data/acme.json",
                "--certificatesresolvers.letsencrypt.acme.httpchallenge.entrypoint=web",
                "--entrypoints.web.http.redirections.entrypoint.to=:443",
                "--entrypoints.web.http.redirections.entrypoint.scheme=https"):
        assert arg in args, arg
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "the ReadWriteOnce volume is never held by two pods"
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "env" not in container(docs), "Let's Encrypt needs no extra CA"
    staging = template(addons.values(config("aws", **{**LETSENCRYPT, "tls": {**LETSENCRYPT["tls"], "staging": True}}),
                                      FACTS), tmp_path)
    assert "--certificatesresolvers.letsencrypt.acme.caserver=https://acme-staging-v02.api.letsencrypt.org/directory" \
        in container(staging)["args"]


def test_a_private_acme_server_and_its_ca(tmp_path: Path) -> None:
    tls = {**LETSENCRYPT["tls"], "server": "https://acme.corp.internal/dir", "server_ca": CA}
    docs = template(addons.values(config("existing", domain="qhub.corp.internal", tls=tls), FACTS), tmp_path)
    assert "--certificatesresolvers.letsencrypt.acme.caserver=https://acme.corp.internal/dir" in container(docs)["args"]
    assert container(docs)["env"] == [{"name": "LEGO_CA_CERTIFICATES", "value": "/etc/traefik/acme-ca/ca.crt"}]
    assert one(docs, "ConfigMap")["data"]["ca.crt"].strip() == CA.strip()


def test_the_config_sets_the_load_balancer(tmp_path: Path) -> None:
    ingress = {"controller": {"service_annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme":
                                                      "internal"}, "load_balancer_source_ranges": ["203.0.113.0/24"]}}
    service = one(template(addons.values(config("aws", ingress=ingress), FACTS), tmp_path), "Service")
    assert service["metadata"]["annotations"] == ingress["controller"]["service_annotations"]
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_mistakes_are_refused_naming_the_value(tmp_path: Path) -> None:
    def failure(values: dict[str, Any]) -> str:
        try:
            template(values, tmp_path)
        except CommandError as err:
            return str(err)
        raise AssertionError(f"rendering {values} should have failed")

    on = {"enabled": True, "acme": {"enabled": True}}
    assert "traefik.acme.email is required when traefik.acme.enabled is true" in failure({"traefik": on})
    assert "server" in failure({"traefik": {**on, "acme": {"enabled": True, "email": "a@b.io",
                                                            "server": "http://plain/dir"}}})
    assert "type" in failure({"traefik": {"enabled": True, "service": {"type": "ClusterIP"}}})


def test_helm_lint_strict_with_letsencrypt(tmp_path: Path) -> None:
    on = tmp_path / "on.yaml"
    on.write_text(yaml.safe_dump(addons.values(config("aws", **LETSENCRYPT), FACTS)))
    out = run(["helm", "lint", "--strict", str(CHART), "--kube-version", "1.35.0", "-f", str(on)], timeout=120).stdout
    assert "0 chart(s) failed" in out, out


def test_the_platform_ingress_asks_traefiks_resolver_for_its_certificate() -> None:
    docs = render(values=chart_values(config("aws", **LETSENCRYPT)))
    ingress = get(docs, "Ingress", "qhub")
    assert ingress["spec"]["ingressClassName"] == "qhub"
    assert ingress["metadata"]["annotations"] == {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        "traefik.ingress.kubernetes.io/router.tls": "true",
        "traefik.ingress.kubernetes.io/router.tls.certresolver": "letsencrypt"}
    assert "tls" not in ingress["spec"], "Traefik holds the certificate: no Secret to name"
    assert ingress["spec"]["rules"][0]["host"] == "qhub.example.org"
    assert validation_errors([ingress], "1.35.0") == []
    # without a domain the class is still QHub's Traefik (reached by its address), without any TLS annotation
    plain = get(render(values=chart_values(config("gcp"))), "Ingress", "qhub")
    assert plain["spec"]["ingressClassName"] == "qhub" and "annotations" not in plain["metadata"]


def test_a_plain_http_domain_is_refused_naming_traefiks_certificates_first() -> None:
    error = render_error({"global": {"domain": "qhub.example.org"}})
    assert "Set global.tls.mode=traefik-acme when the cluster's Traefik of qhub-cluster-addons gets a Let's Encrypt " \
        "certificate" in error
