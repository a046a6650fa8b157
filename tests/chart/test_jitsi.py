"""jitsi subchart: off by default; when on, its components, generated secrets, media Service and JWT wiring."""

from __future__ import annotations

import base64

import pytest

from .addons import VALUES, assert_hardened, env, get, objects, pod, render, render_error

pytestmark = pytest.mark.chart
ON = VALUES / "jitsi-values.yaml"


def test_off_by_default():
    assert not objects(render(), "jitsi")


def test_components_and_hardening():
    docs = objects(render(ON), "jitsi")
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {f"qhub-jitsi-{c}" for c in ("web", "prosody", "jicofo", "jvb", "token")}
    assert_hardened(docs)
    pols = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert pols == deployments


def test_generated_secrets_and_jwt_wiring():
    docs = objects(render(ON), "jitsi")
    secret = get(docs, "Secret", "qhub-jitsi")["data"]
    assert set(secret) == {"jicofo-auth-password", "jvb-auth-password", "jwt-app-secret", "cookie-secret"}
    assert len(base64.b64decode(secret["jwt-app-secret"])) == 64
    prosody = env(pod(get(docs, "Deployment", "qhub-jitsi-prosody"))["containers"][0])
    token = env(pod(get(docs, "Deployment", "qhub-jitsi-token"))["containers"][0])
    ref = {"secretKeyRef": {"name": "qhub-jitsi", "key": "jwt-app-secret"}}
    assert prosody["JWT_APP_SECRET"] == token["JITSI_APP_SECRET"] == ref
    assert prosody["AUTH_TYPE"] == "jwt" and prosody["ENABLE_GUESTS"] == "0" and prosody["ENABLE_AUTH"] == "1"
    assert token["JITSI_PUBLIC_URL"] == "https://meet.qhub.example.org"
    assert token["JITSI_ALLOWED_GROUPS"] == "staff,students" and token["JITSI_TOKEN_LIFETIME"] == "600"
    assert token["JUPYTERHUB_ALLOW_TOKEN_IN_URL"] == "0", "hub tokens only in the Authorization header"
    assert token["JUPYTERHUB_API_TOKEN"] == {"secretKeyRef": {"name": "qhub-hub", "key": "token-jitsi"}}


def test_media_service_and_public_address():
    docs = objects(render(ON), "jitsi")
    svc = get(docs, "Service", "qhub-jitsi-jvb")["spec"]
    assert svc["type"] == "NodePort" and svc["ports"] == [
        {"name": "media", "port": 30300, "targetPort": "media", "protocol": "UDP", "nodePort": 30300}]
    jvb = env(pod(get(docs, "Deployment", "qhub-jitsi-jvb"))["containers"][0])
    assert jvb["JVB_ADVERTISE_IPS"] == "203.0.113.10" and jvb["JVB_PORT"] == "30300"
    default = objects(render(values={"jitsi": {"enabled": True, "host": "meet.example.org"},
                                     "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": True}}}}}), "jitsi")
    svc = get(default, "Service", "qhub-jitsi-jvb")["spec"]
    assert svc["type"] == "LoadBalancer" and svc["ports"][0]["port"] == 10000 and svc["ports"][0]["protocol"] == "UDP"
    ingress = get(docs, "Ingress", "qhub-jitsi-web")["spec"]
    assert ingress["rules"][0]["host"] == "meet.qhub.example.org" and ingress["tls"][0]["secretName"] == "meet-tls"


def test_host_is_required_and_schema_rejects_typos():
    on = {"jitsi": {"enabled": True}, "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": True}}}}}
    assert "jitsi.host is required" in render_error(on)
    for bad, needle in [({"jvb": {"service": {"prot": 1}}}, "prot"),
                        ({"jvb": {"service": {"type": "ClusterIP"}}}, "/jvb/service/type"),
                        ({"token": {"lifetime": 5}}, "lifetime"), ({"token": {"lifetime": 3600}}, "lifetime"),
                        ({"token": {"groupRoomsOnly": "yes"}}, "groupRoomsOnly"),
                        ({"host": "https://meet.example.org"}, "host")]:
        values = {**on, "jitsi": {**on["jitsi"], "host": "meet.example.org", **bad}}
        assert needle in render_error(values), bad


@pytest.mark.parametrize("domain", ["", "qhub.example.org"])
def test_token_service_matches_the_hub_registration(domain):
    """With nothing set by hand (a domain's TLS ended upstream), the hub registers the token service at its Service
    and with exactly the OAuth redirect the token service sends (JupyterHub compares redirect URIs character for
    character)."""
    import yaml

    tls = {"mode": "upstream"} if domain else {"mode": "none"}
    docs = render(ON, values={"global": {"domain": domain, "tls": tls}})
    hub_values = yaml.safe_load(base64.b64decode(get(docs, "Secret", "qhub-hub")["data"]["values.yaml"]))
    registered = hub_values["hub"]["services"]["jitsi"]
    assert registered["enabled"] is True and registered["url"] == "http://qhub-jitsi-token:8000"
    token = env(pod(get(docs, "Deployment", "qhub-jitsi-token"))["containers"][0])
    assert token["JUPYTERHUB_OAUTH_CALLBACK_URL"] == registered["oauthRedirectUri"]
    expected = f"https://{domain}/services/jitsi/oauth_callback" if domain else "/services/jitsi/oauth_callback"
    assert registered["oauthRedirectUri"] == expected


def test_token_defaults_are_minutes_no_implicit_moderators_any_room():
    """Defaults: tokens live 5 minutes, only hub admins moderate (no group is a moderator group by default, so a
    group that happens to be named "admin" grants nothing), and named rooms are allowed besides group rooms."""
    docs = objects(render(values={"jitsi": {"enabled": True, "host": "meet.example.org"},
                                  "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": True}}}}}), "jitsi")
    token = env(pod(get(docs, "Deployment", "qhub-jitsi-token"))["containers"][0])
    assert token["JITSI_TOKEN_LIFETIME"] == "300"
    assert token["JITSI_MODERATOR_GROUPS"] == "" and token["JITSI_GROUP_ROOMS_ONLY"] == "false"
    only = objects(render(values={"jitsi": {"enabled": True, "host": "meet.example.org",
                                            "token": {"groupRoomsOnly": True, "moderatorGroups": ["hosts"]}},
                                  "jupyterhub": {"hub": {"services": {"jitsi": {"enabled": True}}}}}), "jitsi")
    token = env(pod(get(only, "Deployment", "qhub-jitsi-token"))["containers"][0])
    assert token["JITSI_GROUP_ROOMS_ONLY"] == "true" and token["JITSI_MODERATOR_GROUPS"] == "hosts"
