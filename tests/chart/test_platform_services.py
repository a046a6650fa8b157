"""global.services is the one place that says how the platform's services reach each other (Service port, path on
the platform's host, OAuth callback): moved there, every side follows together - the serving Service, the
Ingress, the hub's registered URL, redirect URI and routes, the service's own settings and the helm tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from .addons import VALUES, env, get, pod, render, render_error

pytestmark = pytest.mark.chart
DOMAIN = {"domain": "qhub.example.org", "tls": {"mode": "upstream"}}
MOVED = {"global": {**DOMAIN, "services": {
    "jupyterhub": {"port": 8080, "path": "/", "oauthCallback": ""},
    "dask-gateway": {"port": 8000, "path": "/services/dask", "oauthCallback": ""},
    "conda-store": {"port": 8888, "path": "/envs", "oauthCallback": "callback/"},
    "jitsi": {"port": 8001, "path": "/services/meet", "oauthCallback": "callback"}}}}


def service_port(docs: list[dict[str, Any]], name: str) -> int:
    return get(docs, "Service", name)["spec"]["ports"][0]["port"]


def hub_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(base64.b64decode(get(docs, "Secret", "qhub-hub")["data"]["values.yaml"]))


@pytest.mark.parametrize("values", [{"global": DOMAIN}, MOVED], ids=["defaults", "moved"])
def test_every_side_follows_global_services(values: dict[str, Any]) -> None:
    docs = render(VALUES / "jitsi-values.yaml", values=values)
    services = values["global"].get("services") or yaml.safe_load(
        (VALUES.parents[1] / "charts/qhub/values.yaml").read_text())["global"]["services"]
    public = "https://qhub.example.org"
    names = {"jupyterhub": "qhub-proxy-public", "dask-gateway": "qhub-dask-gateway-proxy",
             "conda-store": "qhub-conda-store", "jitsi": "qhub-jitsi-token"}
    for svc, name in names.items():
        assert service_port(docs, name) == services[svc]["port"], svc
    ingress = get(docs, "Ingress", "qhub")["spec"]["rules"][0]["http"]["paths"]
    assert {(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
            for p in ingress} == {(services[s]["path"], names[s], services[s]["port"])
                                  for s in ("jupyterhub", "dask-gateway", "conda-store")}
    registered = hub_config(docs)["hub"]["services"]
    cs, gw, meet = services["conda-store"], services["dask-gateway"], services["jitsi"]
    assert registered["conda-store"]["url"] == f"http://qhub-conda-store:{cs['port']}{cs['path']}"
    assert registered["conda-store"]["oauthRedirectUri"] == f"{public}{cs['path']}/{cs['oauthCallback']}"
    assert registered["jitsi"]["oauthRedirectUri"] == f"{public}{meet['path']}/{meet['oauthCallback']}"
    settings = json.loads(get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"])
    assert settings["urlPrefix"] == cs["path"]
    assert settings["hub"]["oauthCallbackUrl"] == registered["conda-store"]["oauthRedirectUri"]
    token = env(pod(get(docs, "Deployment", "qhub-jitsi-token"))["containers"][0])
    assert token["JUPYTERHUB_OAUTH_CALLBACK_URL"] == registered["jitsi"]["oauthRedirectUri"]
    assert token["JUPYTERHUB_SERVICE_PREFIX"] == meet["path"] + "/"
    probe = get(docs, "Pod", "qhub-test-gateway-api")
    assert f"http://qhub-dask-gateway-proxy:{gw['port']}{gw['path']}/api/health" in json.dumps(probe)
    routes = get(docs, "ConfigMap", "qhub-dask-gateway-proxy")["data"]["routes.yaml"]
    assert f"PathPrefix(`{gw['path']}`)" in routes


@pytest.mark.parametrize("service, bad, named", [
    ("conda-store", {"port": 0}, "port"),
    ("dask-gateway", {"path": "services/dask"}, "path"),
    ("jitsi", {"oauthCallback": "/callback"}, "oauthCallback"),
    ("jupyterhub", {"host": "x"}, "host"),
])
def test_schema_refuses_a_bad_entry_naming_it(service: str, bad: dict[str, Any], named: str) -> None:
    message = render_error({"global": {"services": {service: bad}}})
    assert "services" in message and named in message, message


def test_the_old_gateway_prefix_is_refused_with_where_it_went() -> None:
    message = render_error({"dask-gateway": {"prefix": "/services/dask"}})
    assert "global.services.dask-gateway.path" in message, message
