"""A domain is served over HTTPS: the chart refuses plain HTTP on a domain (naming the value and the fixes) unless
global.tls.allowPlainHttp says so, and each TLS mode gives the Ingress and the public URL the hub uses the right
shape. The config side (qhubctl validate) is covered by tests/configs/*plain-http*, *upstream-tls* and
tests/unit/test_values.py; here the mapped values of those configs render too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jhrender import HUB_ONLY, find, helm_template, merge, render, secret_text

from qhubctl.config import load_config
from qhubctl.values import chart_values

pytestmark = pytest.mark.chart
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DOMAIN = "hub.example.org"


def hub_names(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The names block the chart hands the hub (publicUrl builds OAuth callbacks and the hub's own URLs)."""
    values = yaml.safe_load(secret_text(find(objs, "Secret", "qhub-hub"))["values.yaml"])
    return dict(values["names"])


def test_plain_http_on_a_domain_is_refused_with_the_fixes() -> None:
    result = helm_template(merge(HUB_ONLY, {"global": {"domain": DOMAIN}}), check=False)
    assert result.returncode != 0, "a domain with tls.mode none must not render"
    err = result.stderr
    assert f"global.domain is {DOMAIN} but global.tls.mode is none" in err
    for fix in ("global.tls.mode=cert-manager", "global.tls.certManager.issuer", "global.tls.mode=secret",
                "global.tls.secretName", "global.tls.mode=upstream", "global.tls.allowPlainHttp=true"):
        assert fix in err, fix
    # the chart's defaults (no domain) stay plain HTTP, reached by port-forward or the controller's address
    ingress = find(render(), "Ingress", "qhub")["spec"]
    assert "tls" not in ingress and "host" not in ingress["rules"][0]


@pytest.mark.parametrize(("tls", "scheme", "block"), [
    ({"mode": "cert-manager", "certManager": {"issuer": "letsencrypt"}}, "https", True),
    ({"mode": "secret", "secretName": "hub-cert"}, "https", True),
    ({"mode": "upstream"}, "https", False),
    ({"mode": "none", "allowPlainHttp": True}, "http", False),
], ids=["cert-manager", "secret", "upstream", "explicit-plain-http"])
def test_each_mode_shapes_the_ingress_and_public_url(tls: dict[str, Any], scheme: str, block: bool) -> None:
    objs = render({"global": {"domain": DOMAIN, "tls": tls}})
    ingress = find(objs, "Ingress", "qhub")
    assert ingress["spec"]["rules"][0]["host"] == DOMAIN
    if block:
        secret = tls.get("secretName") or "qhub-tls"
        assert ingress["spec"]["tls"] == [{"hosts": [DOMAIN], "secretName": secret}]
    else:
        assert "tls" not in ingress["spec"], "upstream TLS and plain HTTP: the Ingress holds no certificate"
    annotations = ingress["metadata"].get("annotations") or {}
    assert (annotations.get("cert-manager.io/cluster-issuer") == "letsencrypt") is (tls["mode"] == "cert-manager")
    assert hub_names(objs)["publicUrl"] == f"{scheme}://{DOMAIN}"


def test_upstream_needs_a_domain() -> None:
    result = helm_template(merge(HUB_ONLY, {"global": {"tls": {"mode": "upstream"}}}), check=False)
    assert result.returncode != 0
    assert "global.tls.mode is upstream but global.domain is empty" in result.stderr


@pytest.mark.parametrize("name", ["azure.ok.upstream-tls.yaml", "existing.ok.insecure-plain-http.yaml",
                                  "aws.ok.full.yaml", "gcp.ok.oidc.yaml"])
def test_configs_with_a_domain_map_to_values_that_render(name: str) -> None:
    cfg = load_config(CONFIGS / name, environ={})
    assert cfg.domain
    values = merge(chart_values(cfg), {"nfs": {"service": {"clusterIP": "10.96.0.51"}}})
    objs = [d for d in yaml.safe_load_all(helm_template(values).stdout) if d]
    url = hub_names(objs)["publicUrl"]
    assert url == ("http://" if cfg.tls.type == "none" else "https://") + cfg.domain
    assert values["global"]["tls"].get("allowPlainHttp", False) is (cfg.tls.type == "none")
