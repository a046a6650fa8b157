"""Cluster providers, chosen by `cluster.provider` in the config. Cloud SDKs are optional extras, imported only
when their provider is used (`pip install qhubctl[aws]`, `[gcp]`, `[azure]`, `[digitalocean]`)."""

from __future__ import annotations

import importlib

from qhubctl.config.model import QHubConfig
from qhubctl.errors import UserError
from qhubctl.providers.base import Action, Log, Plan, Provider

# provider name -> (module, class, pip extra that brings its SDK)
REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "aws": ("qhubctl.providers.aws", "AWS", "aws"),
    "gcp": ("qhubctl.providers.gcp", "GCP", "gcp"),
    "azure": ("qhubctl.providers.azure", "Azure", "azure"),
    "digitalocean": ("qhubctl.providers.digitalocean", "DigitalOcean", "digitalocean"),
    "existing": ("qhubctl.providers.existing", "Existing", None),
    "local": ("qhubctl.providers.local", "Local", None),
}


def get(cfg: QHubConfig, log: Log = print) -> Provider:
    """The provider the config names, ready to use."""
    name = cfg.cluster.provider
    module_name, class_name, extra = REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"provider {name} needs a package that is not installed ({exc.name})",
                        hint=f"pip install 'qhubctl[{extra}]'" if extra else "reinstall qhubctl") from None
    return getattr(module, class_name)(cfg, log=log)


__all__ = ["REGISTRY", "Action", "Plan", "Provider", "get"]
