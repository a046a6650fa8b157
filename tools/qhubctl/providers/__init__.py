"""Cluster providers, chosen by `cluster.provider` in the config. Cloud SDKs are optional extras, imported only
when their provider is used (`pip install qhubctl[aws]`, `[gcp]`, `[azure]`, `[digitalocean]`)."""

from __future__ import annotations

import importlib

from qhubctl.config.model import CLUSTER_BLOCKS, QHubConfig
from qhubctl.errors import UserError
from qhubctl.providers.base import Action, Log, Plan, Provider

# provider name -> its config block class, which names the implementation ("module:Class") and its pip extra
REGISTRY = CLUSTER_BLOCKS


def pip_install_line(extra: str) -> str:
    """The exact command that adds `extra` to this qhubctl: from a source checkout (pip install -e .) the editable
    install of that checkout, else the package from the index."""
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[3]
    pip = f"{sys.executable} -m pip install"
    if (checkout / "pyproject.toml").is_file() and (checkout / "tools" / "qhubctl").is_dir():
        return f"{pip} -e '{checkout}[{extra}]'"
    return f"{pip} 'qhubctl[{extra}]'"


def get(cfg: QHubConfig, log: Log = print) -> Provider:
    """The provider the config names, ready to use."""
    name = cfg.cluster.provider
    block = REGISTRY[name]
    module_name, class_name = block.implementation.split(":")
    extra = block.sdk_extra
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"provider {name} needs a package that is not installed ({exc.name})",
                        hint=f"install qhubctl's {extra} extra: {pip_install_line(extra)}" if extra
                        else "reinstall qhubctl") from None
    return getattr(module, class_name)(cfg, log=log)


__all__ = ["REGISTRY", "Action", "Plan", "Provider", "get"]
