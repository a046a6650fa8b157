"""`qhubctl support`: one zip with what a maintainer needs to help, and no secrets. When the cluster cannot be
reached (no kubeconfig, API down) its part is left out and unreachable.txt says why; the rest is still written."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from qhubctl import __version__
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError, UserError

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


def check_output(output: Path) -> None:
    """Refuse an output path that cannot become a zip file before anything is collected."""
    if output.is_dir():
        raise UserError(f"{output}: is a directory", hint=f"pass a file name, e.g. -o {output / 'qhub-support.zip'}")
    if output.parent.exists() and not output.parent.is_dir():
        raise UserError(f"{output.parent}: is not a directory")


def _cluster_members(cfg: QHubConfig, helm: Any, api: Any) -> dict[str, str]:
    from qhubctl import kube

    members: dict[str, str] = {
        "workloads.json": json.dumps([w.__dict__ for w in kube.workloads(api, cfg.namespace)], indent=2),
        "events.json": json.dumps(kube.events(api, cfg.namespace), indent=2, default=str),
        "diagnosis.txt": "\n".join(kube.diagnose(api, cfg.namespace)) + "\n",
        "pvcs.txt": "\n".join(kube.pvcs(api, cfg.namespace)) + "\n",
    }
    deployed = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    if deployed is not None:
        members["release.json"] = json.dumps({"revision": deployed.revision, "status": deployed.status,
                                              "chart_version": deployed.chart_version}, indent=2)
        members["values.redacted.yaml"] = yaml.safe_dump(redact(deployed.values), sort_keys=True)
    for name, text in kube.pod_logs(api, cfg.namespace).items():
        members[f"logs/{name}.log"] = text
    return members


def bundle(cfg: QHubConfig, connect: Callable[[], tuple[Any, Any]], output: Path) -> tuple[Path, list[str], str]:
    """Write the support zip. `connect` gives (helm, api) for the cluster; when it or a cluster call fails, the zip
    holds what needs no cluster and unreachable.txt says why. Returns the path, the member names and the reason
    the cluster part is missing ("" when it is complete)."""
    check_output(output)
    members: dict[str, str] = {
        "qhubctl-version.txt": f"{__version__}\n",
        "config.redacted.yaml": yaml.safe_dump(redact(cfg.redacted()), sort_keys=False),
    }
    missing = ""
    try:
        helm, api = connect()
        members.update(_cluster_members(cfg, helm, api))
    except QHubError as exc:
        missing = str(exc)
        members["unreachable.txt"] = f"the cluster's part (workloads, events, logs, release) is missing:\n{missing}\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            zf.writestr(name, members[name])
    return output, sorted(members), missing
