"""TLS in the config: a domain is served over HTTPS (cert-manager, a Secret, or TLS ended upstream); plain HTTP on a
domain is refused with the field and the fixes named, unless asked for with tls.insecure_plain_http; what each
choice maps to in the chart's values; `qhubctl init --domain` writes a valid HTTPS config."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.errors import ConfigError
from qhubctl.scaffold import config_text
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit


def config(**extra: Any) -> Any:
    raw = {"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": {"provider": "aws"}, **extra}
    return parse_config(raw, environ={})


def problems(**extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(**extra)
    assert "Traceback" not in str(info.value)
    return info.value.problems


def test_a_domain_without_tls_names_the_field_and_every_fix() -> None:
    (line,) = problems(domain="qhub.example.org")
    assert line.startswith("tls: domain qhub.example.org would be served over plain HTTP")
    for fix in ("type: cert-manager, issuer: letsencrypt", "type: secret, secret_name:", "type: upstream",
                "type: none, insecure_plain_http: true"):
        assert fix in line, fix
    # the same with tls: {type: none} written out
    assert problems(domain="qhub.example.org", tls={"type": "none"})[0].startswith("tls: ")


def test_the_opt_outs_need_a_domain() -> None:
    assert problems(tls={"type": "none", "insecure_plain_http": True}) == [
        "tls.insecure_plain_http: only means something with a domain; remove it"]
    assert problems(tls={"type": "upstream"})[0].startswith("tls.type: TLS (upstream) needs a domain")


@pytest.mark.parametrize(("tls", "expected"), [
    ({"type": "cert-manager", "issuer": "letsencrypt"},
     {"mode": "cert-manager", "secretName": "",
      "certManager": {"issuer": "letsencrypt", "issuerKind": "ClusterIssuer"}}),
    ({"type": "secret", "secret_name": "hub-cert"}, {"mode": "secret", "secretName": "hub-cert"}),
    ({"type": "upstream"}, {"mode": "upstream"}),
    ({"type": "none", "insecure_plain_http": True}, {"mode": "none", "allowPlainHttp": True}),
])
def test_each_choice_maps_to_the_chart(tls: dict[str, Any], expected: dict[str, Any]) -> None:
    values = chart_values(config(domain="qhub.example.org", tls=tls))
    assert values["global"]["tls"] == expected
    assert values["global"]["domain"] == "qhub.example.org"


def test_no_domain_stays_plain_http_and_says_so_to_the_chart() -> None:
    values = chart_values(config())
    assert values["global"]["domain"] == ""
    assert values["global"]["tls"] == {"mode": "none", "allowPlainHttp": False}


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "digitalocean", "existing"])
def test_init_with_a_domain_writes_lets_encrypt(provider: str) -> None:
    text = config_text(provider, domain="qhub.example.org")
    cfg = parse_config(yaml.safe_load(text), environ={})
    assert cfg.tls.type == "cert-manager" and cfg.tls.issuer == "letsencrypt"
    plain = parse_config(yaml.safe_load(config_text(provider)), environ={})
    assert plain.domain is None and plain.tls.type == "none"
    assert "# tls: {type: cert-manager, issuer: letsencrypt}" in config_text(provider)


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "digitalocean", "existing"])
def test_init_with_a_domain_and_an_email_writes_letsencrypt_through_traefik_where_it_runs(provider: str) -> None:
    cfg = parse_config(yaml.safe_load(config_text(provider, domain="qhub.example.org", email="ops@qhub-team.dev")),
                       environ={})
    if provider == "existing":  # QHub's Traefik only when asked: cert-manager as before
        assert cfg.tls.type == "cert-manager"
    else:
        assert cfg.tls.type == "letsencrypt" and cfg.tls.email == "ops@qhub-team.dev" and cfg.ingress_controller
