"""`qhubctl status`: what runs, where, and the URLs to reach it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from qhubctl import kube
from qhubctl.config.model import QHubConfig
from qhubctl.helm import Deployed, Helm

PATHS = {"jupyterhub": "/hub", "dask_gateway": "/services/dask-gateway", "conda_store": "/conda-store"}


@dataclass
class Status:
    release: Deployed | None
    workloads: list[kube.Workload]
    urls: dict[str, str]
    node_groups: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.release is not None and self.release.status == "deployed" and all(w.done for w in self.workloads)


def urls(cfg: QHubConfig) -> dict[str, str]:
    if cfg.domain:
        base = f"{'http' if cfg.tls.type == 'none' else 'https'}://{cfg.domain}"
    else:
        base = "http://localhost:8080"  # after: kubectl port-forward svc/<release>-proxy-public 8080:80
    out = {name: base + path for name, path in PATHS.items() if getattr(cfg.components, name)}
    if cfg.components.kubessh:
        out["kubessh"] = f"ssh -p 8022 <user>@{cfg.domain or '<ssh service address>'}"
    return out


def gather(cfg: QHubConfig, helm: Helm, api: Any) -> Status:
    release = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    groups = {name: ", ".join(f"{k}={v}" for k, v in p.node_selector.items())
              for name, p in cfg.placements().items()}
    return Status(release, kube.workloads(api, cfg.namespace), urls(cfg), groups)
