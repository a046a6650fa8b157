"""Gateway settings: a JSON file (rendered by the kubessh chart) with environment overrides for secrets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path


def _in_cluster_api() -> str:
    """The Kubernetes API as every pod sees it (the variables the kubelet sets), or "" outside a cluster."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return ""
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@dataclass
class Settings:
    # JupyterHub REST API as seen from the gateway (the hub's own Service), e.g. http://qhub-hub:8081/hub/api.
    # Only the gateway's own token goes there.
    hub_api_url: str
    # Where user servers are reached, i.e. the JupyterHub proxy, e.g. http://qhub-proxy-public:80. Only the
    # user's own token goes there.
    proxy_url: str
    # The gateway's own hub service token (scopes: read:servers, start:servers)
    api_token: str = ""
    ssh_port: int = 8022
    sftp_port: int = 8023
    bind: str = "0.0.0.0"
    # Host key file, used (and generated when missing) when host_key_secret is empty
    host_key_path: str = "/etc/qhub-ssh/ssh_host_ed25519_key"
    # Secret (in the pod's namespace) that keeps the host key; the gateway stores a new key there when it has none
    host_key_secret: str = ""
    # Kubernetes API and the ServiceAccount files (token, ca.crt, namespace) used for host_key_secret
    kube_api_url: str = ""
    kube_sa_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"
    # Seconds to wait for a user's server to become ready
    server_start_timeout: int = 300
    # Seconds a client has to authenticate
    login_timeout: int = 60
    # Failed logins counted over this many seconds; at most this many per client address and per user name
    # (0: no limit), further attempts are refused without asking the hub until older failures age out
    failed_login_window: int = 300
    max_failed_logins_per_source: int = 20
    max_failed_logins_per_user: int = 10

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Settings":
        path = path or os.environ.get("QHUB_SSH_CONFIG", "/etc/qhub-ssh/config.json")
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        camel = {"".join(w.title() if i else w for i, w in enumerate(k.split("_"))): k for k in known}
        values = {camel.get(k, k): v for k, v in raw.items()}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings in {path}: {sorted(unknown)}")
        env = {
            "hub_api_url": "JUPYTERHUB_API_URL",
            "api_token": "JUPYTERHUB_API_TOKEN",
            "proxy_url": "QHUB_SSH_PROXY_URL",
            "host_key_path": "QHUB_SSH_HOST_KEY",
            "bind": "QHUB_SSH_BIND",
            "ssh_port": "QHUB_SSH_PORT",
            "sftp_port": "QHUB_SSH_SFTP_PORT",
        }
        for name, var in env.items():
            if os.environ.get(var):
                values[name] = os.environ[var]
        ints = ("ssh_port", "sftp_port", "server_start_timeout", "login_timeout",
                "failed_login_window", "max_failed_logins_per_source", "max_failed_logins_per_user")
        for name in ints:
            if name in values:
                values[name] = int(values[name])
        settings = cls(**values)
        if settings.host_key_secret and not settings.kube_api_url:
            settings.kube_api_url = _in_cluster_api()
            if not settings.kube_api_url:
                raise ValueError(f"hostKeySecret is set in {path} but the Kubernetes API is unknown: set kubeApiUrl "
                                 "or run in a pod (KUBERNETES_SERVICE_HOST)")
        return settings
