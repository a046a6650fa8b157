"""`qhubctl support`: one zip with what a maintainer needs to help, and no secrets."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml

from qhubctl import __version__, kube
from qhubctl.config.model import QHubConfig
from qhubctl.helm import Helm

# Values of keys that look like credentials are masked in everything the bundle holds besides logs.
_SECRETISH = re.compile(r"(secret|password|token|key|credential)", re.IGNORECASE)


def redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and _SECRETISH.search(key) and not key.endswith(("Name", "name", "existingSecret")):
        return "**redacted**" if value else value
    return value


def bundle(cfg: QHubConfig, helm: Helm, api: Any, output: Path) -> tuple[Path, list[str]]:
    """Write the support zip; returns its path and the member names."""
    deployed = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    members: dict[str, str] = {
        "qhubctl-version.txt": f"{__version__}\n",
        "config.redacted.yaml": yaml.safe_dump(redact(cfg.redacted()), sort_keys=False),
        "workloads.json": json.dumps([w.__dict__ for w in kube.workloads(api, cfg.namespace)], indent=2),
        "events.json": json.dumps(kube.events(api, cfg.namespace), indent=2, default=str),
        "diagnosis.txt": "\n".join(kube.diagnose(api, cfg.namespace)) + "\n",
        "pvcs.txt": "\n".join(kube.pvcs(api, cfg.namespace)) + "\n",
    }
    if deployed is not None:
        members["release.json"] = json.dumps({"revision": deployed.revision, "status": deployed.status,
                                              "chart_version": deployed.chart_version}, indent=2)
        members["values.redacted.yaml"] = yaml.safe_dump(redact(deployed.values), sort_keys=True)
    for name, text in kube.pod_logs(api, cfg.namespace).items():
        members[f"logs/{name}.log"] = text
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            zf.writestr(name, members[name])
    return output, sorted(members)
