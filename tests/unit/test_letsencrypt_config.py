"""`tls: {type: letsencrypt}` and QHub's Traefik in the config: every mistake a message naming the field and the
fix; what the config maps to (the qhub chart's traefik-acme mode and IngressClass, the add-on chart's Traefik and
ACME resolver); and the DNS record `deploy` and `status` print for each state of Traefik's Service."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from qhubctl import addons, dnsrecord
from qhubctl.chart import addons_chart_dir
from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.errors import ConfigError
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit
DOMAIN = "qhub.example.org"
LE = {"type": "letsencrypt", "email": "ops@qhub-team.dev"}


def config(provider: str = "aws", **extra: Any) -> Any:
    cluster = {"provider": provider, **({"project": "my-gcp-project"} if provider == "gcp" else {})}
    return parse_config({"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": cluster, **extra},
                        environ={})


def problems(provider: str = "aws", **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(provider, **extra)
    assert "Traceback" not in str(info.value)
    return list(info.value.problems)


@pytest.mark.parametrize(("provider", "extra", "expected"), [
    ("aws", {"tls": LE}, "tls.type: TLS (letsencrypt) needs a domain; set domain:"),
    ("aws", {"domain": DOMAIN, "tls": {"type": "letsencrypt"}}, "tls.email: Field required"),
    ("aws", {"domain": DOMAIN, "tls": {**LE, "email": "not-an-address"}}, "tls.email: String should match pattern"),
    ("aws", {"domain": DOMAIN, "tls": {**LE, "email": "me@example.com"}},
     "tls.email: Let's Encrypt refuses contact addresses at example.com; give an address you read"),
    ("aws", {"domain": DOMAIN, "tls": {**LE, "staging": True, "server": "https://acme.corp/dir"}},
     "tls.staging: tls.server names the ACME CA already; remove staging or server"),
    ("aws", {"domain": DOMAIN, "tls": {**LE, "server": "http://acme.corp/dir"}}, "tls.server: String should match"),
    ("aws", {"domain": DOMAIN, "tls": {**LE, "server_ca": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"}},
     "tls.server_ca: Let's Encrypt's certificate is signed by a public CA; server_ca is only for a private ACME "
     "server named in tls.server"),
    ("existing", {"domain": DOMAIN, "tls": LE},
     "ingress.controller.enabled: tls type letsencrypt: QHub's Traefik gets the certificate, and provider existing "
     "does not install it unless asked; set ingress.controller.enabled: true"),
    ("gcp", {"domain": DOMAIN, "tls": LE, "ingress": {"class_name": "nginx"}},
     "ingress.class_name: tls type letsencrypt: only QHub's Traefik (IngressClass qhub) holds the certificate "
     "resolver, so the Ingress must use it; remove class_name or set it to qhub"),
    ("local", {"ingress": {"controller": {"service_annotations": {"a": "b"}}}},
     "ingress.controller.service_annotations: only QHub's Traefik uses it, and it is off on provider local; set "
     "ingress.controller.enabled: true or remove service_annotations"),
    ("local", {"ingress": {"controller": {"enabled": True, "load_balancer_source_ranges": ["203.0.113.0/24"]}}},
     "ingress.controller.load_balancer_source_ranges: provider local has no load balancers"),
])
def test_each_mistake_names_the_field_and_the_fix(provider: str, extra: dict[str, Any], expected: str) -> None:
    found = problems(provider, **extra)
    assert any(p.startswith(expected) for p in found), found


def test_a_domain_without_tls_offers_letsencrypt_first() -> None:
    (line,) = problems(domain=DOMAIN)
    assert "tls: {type: letsencrypt, email: <your address>}" in line


def test_letsencrypt_maps_to_traefiks_resolver_in_both_charts() -> None:
    cfg = config(domain=DOMAIN, tls=LE)
    values = chart_values(cfg)
    assert values["global"]["tls"] == {"mode": "traefik-acme", "traefikAcme": {"certResolver": "letsencrypt"}}
    assert values["ingress"]["className"] == "qhub"
    traefik = addons.values(cfg, addons.AddonFacts("demo"))["traefik"]
    assert traefik["acme"] == {"enabled": True, "resolver": "letsencrypt", "email": "ops@qhub-team.dev",
                               "server": "https://acme-v02.api.letsencrypt.org/directory", "caBundle": ""}
    assert traefik["redirectToHttps"] is True
    assert traefik["service"] == {"type": "LoadBalancer", "loadBalancerSourceRanges": [],
                                  "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}}


def test_who_gets_traefik_and_how() -> None:
    assert addons.TRAEFIK not in addons.parts(config("existing"))
    assert chart_values(config("existing"))["ingress"]["className"] == "", "the cluster's own default class"
    assert chart_values(config("existing", ingress={"class_name": "nginx"}))["ingress"]["className"] == "nginx"
    local = config("local", ingress={"controller": {"enabled": True}}, image_registry="127.0.0.1:5001")
    traefik = addons.values(local, addons.AddonFacts("demo"))["traefik"]
    assert traefik["service"]["type"] == "NodePort" and traefik["image"] == {"registry": "127.0.0.1:5001"}
    assert traefik["redirectToHttps"] is False and "acme" not in traefik, "no domain: plain HTTP, no resolver"
    upstream = addons.values(config(domain=DOMAIN, tls={"type": "upstream"}), addons.AddonFacts("demo"))["traefik"]
    assert upstream["redirectToHttps"] is False, "TLS ends in front of Traefik: a redirect would loop"
    off = config("gcp", ingress={"controller": {"enabled": False}})
    assert addons.parts(off) == [] and chart_values(off)["ingress"]["className"] == ""
    staging = config(domain=DOMAIN, tls={**LE, "staging": True})
    assert addons.traefik_values(staging)["acme"]["server"] == \
        "https://acme-staging-v02.api.letsencrypt.org/directory"


def target(obj: dict[str, Any] | None, *warnings: str) -> dnsrecord.Target:
    return dnsrecord.Target("Traefik's Service kube-system/qhub-cluster-addons-traefik", obj, warnings)


def lb(**point: str) -> dict[str, Any]:
    return {"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [point] if point else []}}}


def test_the_dns_record_for_each_state_of_the_service() -> None:
    say = dnsrecord.record_lines
    assert say(DOMAIN, target(lb(ip="203.0.113.7")), "n") == [
        f"DNS: create the record  {DOMAIN}. A 203.0.113.7  (at your DNS provider; Traefik's Service "
        "kube-system/qhub-cluster-addons-traefik)"]
    assert f"{DOMAIN}. CNAME k8s-abc.elb.eu-west-1.amazonaws.com." in \
        say(DOMAIN, target(lb(hostname="k8s-abc.elb.eu-west-1.amazonaws.com")), "n")[0]
    [pending] = say(DOMAIN, target(lb(), "SyncLoadBalancerFailed: quota exceeded"), "n")
    assert pending.startswith("DNS: pending: Traefik's Service kube-system/qhub-cluster-addons-traefik has no "
                              "address yet (SyncLoadBalancerFailed: quota exceeded)")
    assert "the cloud is still creating the load balancer" in say(DOMAIN, target(lb()), "n")[0]
    assert "does not exist yet (`qhubctl cluster create` installs" in say(DOMAIN, target(None), "n")[0]
    node_port = {"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080},
                                                        {"port": 443, "nodePort": 30443}]}}
    [local] = say(DOMAIN, target(node_port), "127.0.0.1")
    assert f"`127.0.0.1 {DOMAIN}` in /etc/hosts" in local
    assert f"http://{DOMAIN}:30080/ and https://{DOMAIN}:30443/" in local


def test_dns_lines_read_traefiks_service_and_its_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def rest(api: Any, method: str, path: str, **kw: Any) -> Any:
        calls.append(path)
        return lb() if path.endswith("/services/qhub-cluster-addons-traefik") else None

    def items(api: Any, path: str, **query: Any) -> list[dict[str, Any]]:
        assert query["fieldSelector"] == ("involvedObject.kind=Service,involvedObject.name="
                                          "qhub-cluster-addons-traefik,type=Warning")
        return [{"reason": "B", "message": "newer", "lastTimestamp": "2026-01-02T00:00:00Z"},
                {"reason": "A", "message": "older", "lastTimestamp": "2026-01-01T00:00:00Z"}]

    monkeypatch.setattr(dnsrecord.kube, "_rest", rest)
    monkeypatch.setattr(dnsrecord.kube, "_items", items)
    assert dnsrecord.lines(config(), None) == [], "no domain: no record"
    [line] = dnsrecord.lines(config(domain=DOMAIN, tls=LE), None)
    assert "(B: newer)" in line and calls == ["/api/v1/namespaces/kube-system/services/qhub-cluster-addons-traefik"]
    [other] = dnsrecord.lines(config("existing", domain=DOMAIN, tls={"type": "upstream"}), None)
    assert other.startswith("DNS: pending: the Ingress qhub/qhub (its controller publishes the address) does not "
                            "exist yet (`qhubctl deploy` creates it)")


def test_docs_name_traefiks_image_and_version() -> None:
    """docs/providers.md lists the add-on chart's Traefik image and version (its values.yaml is the one list) and
    the image builds that version."""
    repo = addons_chart_dir().parents[1]
    image = yaml.safe_load((addons_chart_dir() / "values.yaml").read_text())["traefik"]["image"]
    built = yaml.safe_load((repo / "images" / "traefik" / "image.yaml").read_text())["version"]
    docs = (repo / "docs" / "providers.md").read_text()
    assert image["tag"] == built
    assert f"| Traefik (ingress controller) | `{image['repository']}`" in docs and f"| `{image['tag']}` |" in docs


def test_status_without_a_domain_points_at_traefiks_load_balancer(monkeypatch: pytest.MonkeyPatch) -> None:
    from qhubctl import status

    services = {("kube-system", "qhub-cluster-addons-traefik"): lb(hostname="k8s-abc.elb.amazonaws.com")}
    monkeypatch.setattr(status, "_service", lambda api, ns, name: services.get((ns, name)))
    assert status.hub_access(config(), None) == (
        "http://k8s-abc.elb.amazonaws.com", ["(through Traefik, kube-system/qhub-cluster-addons-traefik)"])
    services.clear()  # no address yet: the proxy's own Service, as without Traefik
    url, notes = status.hub_access(config(), None)
    assert url is None and "does not exist" in notes[0]
