"""Gateway settings: a JSON file (rendered by the kubessh chart) with environment overrides for secrets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass
class Settings:
    # JupyterHub REST API as seen from the gateway, e.g. http://qhub-hub:8081/hub/api
    hub_api_url: str
    # Where user servers are reached, i.e. the JupyterHub proxy, e.g. http://qhub-proxy-public:80
    proxy_url: str
    # The gateway's own hub service token (scopes: read users, start and access servers)
    api_token: str = ""
    ssh_port: int = 8022
    sftp_port: int = 8023
    bind: str = "0.0.0.0"
    host_key_path: str = "/etc/qhub-ssh/ssh_host_ed25519_key"
    # Directory holding one home directory per user (home/<username> on the shared volume)
    home_root: str = "/mnt/home"
    # uid/gid given to home directories the gateway creates
    home_uid: int = 1000
    home_gid: int = 100
    # Seconds to wait for a user's server to become ready
    server_start_timeout: int = 300
    # Seconds a client has to authenticate
    login_timeout: int = 60

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
            "home_root": "QHUB_SSH_HOME_ROOT",
            "host_key_path": "QHUB_SSH_HOST_KEY",
            "bind": "QHUB_SSH_BIND",
            "ssh_port": "QHUB_SSH_PORT",
            "sftp_port": "QHUB_SSH_SFTP_PORT",
        }
        for name, var in env.items():
            if os.environ.get(var):
                values[name] = os.environ[var]
        for name in ("ssh_port", "sftp_port", "home_uid", "home_gid", "server_start_timeout", "login_timeout"):
            if name in values:
                values[name] = int(values[name])
        return cls(**values)
