"""Read the hub's configuration: values.yaml and generated secrets from the mounted hub Secret, plus env.

The chart writes the hub Secret (<release>-hub) with keys `values.yaml` (the chart's hub-relevant values and the
object names it computed), `proxy-token`, `cookie-secret` and `token-<service>`. Kubernetes mounts it as one
file per key in $QHUB_HUB_SECRET_DIR. Secrets held in other Secrets (database URL, OAuth client secret, trial
password) arrive as environment variables through secretKeyRef.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SECRET_DIR = "/usr/local/etc/jupyterhub/secret"
DEFAULT_SHARED_DIR = "/srv/shared"


def derived_gid(group: str) -> int:
    """Stable gid of a group without an explicit one; the chart's jupyterhub.groupGids uses the same formula."""
    return 10000 + zlib.adler32(group.encode()) % 50000


@dataclass(frozen=True)
class HubSettings:
    """Everything jupyterhub_config.py needs, read once at hub start."""

    values: dict[str, Any]
    secret_dir: Path
    shared_dir: Path
    namespace: str

    def secret(self, key: str) -> str:
        """A key of the hub Secret; missing keys are an error, never an empty default."""
        return (self.secret_dir / key).read_text().strip()

    def get(self, dotted: str, default: Any = None) -> Any:
        """values lookup by dotted path, e.g. get("singleuser.storage.condaStore.enabled")."""
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def name(self, key: str) -> str:
        """Object name computed by the chart (hub, proxyApi, proxyPublic, gatewayProxy, sharedPvc, ...)."""
        return str(self.values["names"][key])

    def group_gids(self) -> dict[str, int]:
        """gid of every configured group, as computed by the chart."""
        return {str(k): int(v) for k, v in (self.values.get("groups") or {}).items()}


def load() -> HubSettings:
    """Load settings from $QHUB_HUB_SECRET_DIR (values.yaml + secrets) and the environment."""
    secret_dir = Path(os.environ.get("QHUB_HUB_SECRET_DIR", DEFAULT_SECRET_DIR))
    values = yaml.safe_load((secret_dir / "values.yaml").read_text()) or {}
    namespace = os.environ.get("POD_NAMESPACE") or values["names"]["namespace"]
    shared_dir = Path(os.environ.get("QHUB_SHARED_DIR", DEFAULT_SHARED_DIR))
    return HubSettings(values=values, secret_dir=secret_dir, shared_dir=shared_dir, namespace=namespace)
