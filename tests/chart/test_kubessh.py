"""kubessh subchart: Service, host key Secret and RBAC, settings, the gateway's hub role, placement and
NetworkPolicy as rendered by the umbrella."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from .addons import REPO, VALUES, assert_hardened, get, objects, pod, render, render_error

pytestmark = pytest.mark.chart


def test_defaults():
    docs = objects(render(), "kubessh")
    assert_hardened(docs)
    svc = get(docs, "Service", "qhub-kubessh")["spec"]
    assert svc["type"] == "LoadBalancer"
    assert svc["externalTrafficPolicy"] == "Local"  # the failed-login count per address sees clients, not nodes
    ports = [(p["name"], p["port"], p["targetPort"]) for p in svc["ports"]]
    assert ports == [("ssh", 8022, "ssh"), ("sftp", 8023, "sftp")]
    spec = pod(get(docs, "Deployment", "qhub-kubessh"))
    assert spec["securityContext"]["runAsUser"] == 1000
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v], \
        "the gateway mounts no user files: SFTP runs in the user's own server"
    c = spec["containers"][0]
    assert c["env"] == [{"name": "JUPYTERHUB_API_TOKEN",
                         "valueFrom": {"secretKeyRef": {"name": "qhub-hub", "key": "token-kubessh"}}}]
    labels = get(docs, "Deployment", "qhub-kubessh")["spec"]["template"]["metadata"]["labels"]
    assert labels["qhub.dev/access-hub"] == labels["qhub.dev/access-proxy"] == "true"


def test_host_key_secret_is_never_rendered_with_key_material():
    """The gateway fills the Secret at its first start; every render (helm template, GitOps, upgrade, rollback) is
    the same empty Secret, so none replaces or removes the stored key."""
    renders = [get(render(values=v), "Secret", "qhub-kubessh-host-key")
               for v in ({}, {"kubessh": {"loginTimeout": 61}})]
    assert renders[0] == renders[1]
    assert "data" not in renders[0] and "stringData" not in renders[0], "no key in rendered output"
    assert not [d for d in render() if d["kind"] == "Secret" and "ssh_host_ed25519_key" in (d.get("data") or {})]
    settings = json.loads(get(render(), "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    assert settings["hostKeySecret"] == "qhub-kubessh-host-key"


def test_gateway_may_get_and_update_only_its_host_key_secret():
    docs = render()
    role = get(docs, "Role", "qhub-kubessh")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["qhub-kubessh-host-key"],
                              "verbs": ["get", "update"]}]
    binding = get(docs, "RoleBinding", "qhub-kubessh")
    assert binding["roleRef"]["name"] == "qhub-kubessh"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qhub-kubessh", "namespace": "qhub"}]
    assert get(docs, "ServiceAccount", "qhub-kubessh")["automountServiceAccountToken"] is False
    spec = pod(get(docs, "Deployment", "qhub-kubessh"))
    assert spec["serviceAccountName"] == "qhub-kubessh" and spec["automountServiceAccountToken"] is False
    api = next(v for v in spec["volumes"] if v["name"] == "kube-api-access")["projected"]["sources"]
    assert api[0]["serviceAccountToken"]["expirationSeconds"] <= 3600, "a short-lived token, not a legacy one"
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "kube-api-access")
    assert mount["readOnly"] is True


def test_settings_point_at_hub_and_proxy():
    settings = json.loads(get(render(), "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    assert settings["hubApiUrl"] == "http://qhub-hub:8081/hub/api"
    assert settings["proxyUrl"] == "http://qhub-proxy-public:80"
    assert (settings["failedLoginWindow"], settings["maxFailedLoginsPerSource"],
            settings["maxFailedLoginsPerUser"]) == (300, 20, 10), "bounded failed-login defaults"


def test_gateway_hub_role_cannot_open_anyones_server():
    """The gateway's hub token reads server status and starts servers; it holds no access:servers, tokens or user
    listing, so a leaked copy opens nobody's server."""
    hub_values = yaml.safe_load(base64.b64decode(get(render(), "Secret", "qhub-hub")["data"]["values.yaml"]))
    scopes = hub_values["hub"]["services"]["kubessh"]["scopes"]
    assert sorted(scopes) == ["read:servers", "start:servers"]
    subchart = yaml.safe_load((REPO / "charts" / "qhub" / "charts" / "jupyterhub" / "values.yaml").read_text())
    assert sorted(subchart["hub"]["services"]["kubessh"]["scopes"]) == ["read:servers", "start:servers"]


def test_nodeport_values():
    docs = objects(render(VALUES / "kubessh-nodeport-values.yaml"), "kubessh")
    svc = get(docs, "Service", "qhub-kubessh")["spec"]
    assert svc["type"] == "NodePort" and svc["externalTrafficPolicy"] == "Local"
    assert [(p["port"], p["nodePort"]) for p in svc["ports"]] == [(22, 30022), (2222, 30023)]
    assert get(docs, "Deployment", "qhub-kubessh")["spec"]["replicas"] == 2
    settings = json.loads(get(docs, "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    assert (settings["failedLoginWindow"], settings["maxFailedLoginsPerSource"],
            settings["maxFailedLoginsPerUser"]) == (600, 5, 0)
    lb = render(values={"kubessh": {"service": {"loadBalancerSourceRanges": ["192.0.2.0/24"]}}})
    assert get(lb, "Service", "qhub-kubessh")["spec"]["loadBalancerSourceRanges"] == ["192.0.2.0/24"]


def test_network_policy_reaches_only_dns_hub_proxy_and_the_api_server():
    pol = get(render(), "NetworkPolicy", "qhub-kubessh")["spec"]
    assert pol["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8022}, {"protocol": "TCP", "port": 8023}]}]
    targets = [(e["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                or e["to"][0]["podSelector"]["matchLabels"].get("k8s-app") if "to" in e else "api-server",
                [p["port"] for p in e["ports"]]) for e in pol["egress"]]
    assert targets == [("kube-dns", [53, 53]), ("hub", [8081]), ("proxy", [8000]), ("api-server", [443, 6443])]


@pytest.mark.parametrize("values, needle", [
    ({"kubessh": {"service": {"type": "Ingress"}}}, "/service/type"),
    ({"kubessh": {"service": {"nodePorts": {"ssh": 22}}}}, "/service/nodePorts/ssh"),
    ({"kubessh": {"servce": {}}}, "servce"),
    ({"kubessh": {"serverStartTimeout": "5m"}}, "serverStartTimeout"),
    ({"kubessh": {"failedLogins": {"perUser": -1}}}, "perUser"),
    ({"kubessh": {"failedLogins": {"perIp": 3}}}, "perIp"),
])
def test_schema_rejects_typos(values, needle):
    assert needle in render_error(values)
