"""Render the umbrella chart with the jupyterhub subchart in focus, and pick objects out of the result.

Shared by tests/chart/test_jupyterhub.py and tests/cluster/test_jupyterhub_spawn.py.
"""

from __future__ import annotations

import base64
import copy
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from qhubctl.proc import run

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "qhub"
HUB_FILES = CHART / "charts" / "jupyterhub" / "files"

# Only the hub and its shared PVC: every other subchart off, their hub services off to match.
HUB_ONLY: dict[str, Any] = {
    "nfs": {"enabled": False},
    "sharedStorage": {"existingStorageClass": "rwx"},
    "dask-gateway": {"enabled": False},
    "global": {"daskClusters": {"enabled": False}},  # follows dask-gateway.enabled
    "conda-store": {"enabled": False},
    "kubessh": {"enabled": False},
    "jitsi": {"enabled": False},
    "jupyterhub": {
        "hub": {
            "services": {
                name: {"enabled": False} for name in ("dask-gateway", "conda-store", "kubessh", "jitsi")
            }
        }
    },
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of values dicts (extra wins), like Helm's -f layering."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def helm_template(values: dict[str, Any], release: str = "qhub", namespace: str = "qhub", check: bool = True):
    """`helm template` of the umbrella with these values; returns the proc Result."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(values, f)
    try:
        return run(
            ["helm", "template", release, str(CHART), "--namespace", namespace, "-f", f.name],
            check=check,
            timeout=120,
        )
    finally:
        Path(f.name).unlink()


def render(extra: dict[str, Any] | None = None, base: dict[str, Any] = HUB_ONLY, **kw: Any) -> list[dict[str, Any]]:
    """Rendered objects (hooks and tests included)."""
    result = helm_template(merge(base, extra or {}), **kw)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{kind}/{name} not rendered; have {[(o['kind'], o['metadata']['name']) for o in objs]}")


def secret_text(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def write_hub_files(objs: list[dict[str, Any]], dest: Path, release: str = "qhub") -> tuple[Path, Path]:
    """Lay out the hub ConfigMap and Secret as the Deployment mounts them; returns (config dir, secret dir)."""
    config_dir, secret_dir = dest / "config", dest / "secret"
    config_dir.mkdir(parents=True, exist_ok=True)
    secret_dir.mkdir(parents=True, exist_ok=True)
    for name, text in find(objs, "ConfigMap", f"{release}-hub")["data"].items():
        (config_dir / name).write_text(text)
    for name, text in secret_text(find(objs, "Secret", f"{release}-hub")).items():
        (secret_dir / name).write_text(text)
    return config_dir, secret_dir


HUB_MODULES = ("qhub_hub_values", "qhub_hub_identities", "qhub_hub_setup", "qhub_hub_spawner")


def import_hub_modules(config_dir: Path) -> dict[str, Any]:
    """Import the rendered qhub_hub_* modules fresh from config_dir."""
    for mod in HUB_MODULES:
        sys.modules.pop(mod, None)
    sys.path.insert(0, str(config_dir))
    try:
        return {m: importlib.import_module(m) for m in HUB_MODULES}
    finally:
        sys.path.remove(str(config_dir))
