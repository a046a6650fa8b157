"""kubessh subchart: Service, host key, settings, placement and NetworkPolicy as rendered by the umbrella."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .addons import VALUES, assert_hardened, get, objects, pod, render, render_error

pytestmark = pytest.mark.chart


def test_defaults():
    docs = objects(render(), "kubessh")
    assert_hardened(docs)
    svc = get(docs, "Service", "qhub-kubessh")["spec"]
    assert svc["type"] == "LoadBalancer"
    ports = [(p["name"], p["port"], p["targetPort"]) for p in svc["ports"]]
    assert ports == [("ssh", 8022, "ssh"), ("sftp", 8023, "sftp")]
    spec = pod(get(docs, "Deployment", "qhub-kubessh"))
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsGroup"] == 100
    c = spec["containers"][0]
    assert {"name": "homes", "mountPath": "/mnt/home", "subPath": "home"} in c["volumeMounts"]
    assert c["env"] == [{"name": "JUPYTERHUB_API_TOKEN",
                         "valueFrom": {"secretKeyRef": {"name": "qhub-hub", "key": "token-kubessh"}}}]
    labels = get(docs, "Deployment", "qhub-kubessh")["spec"]["template"]["metadata"]["labels"]
    assert labels["qhub.dev/access-hub"] == labels["qhub.dev/access-proxy"] == "true"


def test_host_key_is_a_valid_ed25519_key_generated_per_install():
    key_a = get(render(), "Secret", "qhub-kubessh")["data"]["ssh_host_ed25519_key"]
    key = serialization.load_pem_private_key(base64.b64decode(key_a), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    key_b = get(render(values={"kubessh": {"loginTimeout": 61}}), "Secret", "qhub-kubessh")["data"]
    assert key_b["ssh_host_ed25519_key"] != key_a, "no fixed key ships with the chart (kept by lookup on upgrade)"


def test_settings_point_at_hub_and_proxy():
    settings = json.loads(get(render(), "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    assert settings["hubApiUrl"] == "http://qhub-hub:8081/hub/api"
    assert settings["proxyUrl"] == "http://qhub-proxy-public:80"
    assert settings["hostKeyPath"] == "/etc/qhub-ssh/keys/ssh_host_ed25519_key"


def test_nodeport_values():
    docs = objects(render(VALUES / "kubessh-nodeport-values.yaml"), "kubessh")
    svc = get(docs, "Service", "qhub-kubessh")["spec"]
    assert svc["type"] == "NodePort" and svc["externalTrafficPolicy"] == "Local"
    assert [(p["port"], p["nodePort"]) for p in svc["ports"]] == [(22, 30022), (2222, 30023)]
    assert get(docs, "Deployment", "qhub-kubessh")["spec"]["replicas"] == 2
    lb = render(values={"kubessh": {"service": {"loadBalancerSourceRanges": ["192.0.2.0/24"]}}})
    assert get(lb, "Service", "qhub-kubessh")["spec"]["loadBalancerSourceRanges"] == ["192.0.2.0/24"]


def test_network_policy_reaches_only_dns_hub_and_proxy():
    pol = get(render(), "NetworkPolicy", "qhub-kubessh")["spec"]
    assert pol["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8022}, {"protocol": "TCP", "port": 8023}]}]
    targets = [(e["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                or e["to"][0]["podSelector"]["matchLabels"].get("k8s-app"), [p["port"] for p in e["ports"]])
               for e in pol["egress"]]
    assert targets == [("kube-dns", [53, 53]), ("hub", [8081]), ("proxy", [8000])]


@pytest.mark.parametrize("values, needle", [
    ({"kubessh": {"service": {"type": "Ingress"}}}, "/service/type"),
    ({"kubessh": {"service": {"nodePorts": {"ssh": 22}}}}, "/service/nodePorts/ssh"),
    ({"kubessh": {"servce": {}}}, "servce"),
    ({"kubessh": {"serverStartTimeout": "5m"}}, "serverStartTimeout"),
])
def test_schema_rejects_typos(values, needle):
    assert needle in render_error(values)
