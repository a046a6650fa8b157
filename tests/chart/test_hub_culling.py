"""Idle culling in the hub the chart configures: the culler's timeout and period, and activity reaching the hub
often enough that a short timeout never takes a server in use for an idle one. The hub checks the proxy's routes
every minute whatever the timeout, so a restarted proxy routes users to their servers again within one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jhrender import find, render, secret_text, write_hub_files

pytestmark = pytest.mark.chart


def hub_config(cull: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hub's traitlets config as jupyterhub_config.py builds it from the chart rendered with `cull`."""
    from traitlets.config.loader import PyFileConfigLoader

    objs = render({"jupyterhub": {"cull": cull, "auth": {"type": "dummy"}}})
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    monkeypatch.setenv("QHUB_HUB_SECRET_DIR", str(secret_dir))
    monkeypatch.setenv("POD_NAMESPACE", "qhub")
    tokens = secret_text(find(objs, "Secret", "qhub-hub"))
    monkeypatch.setenv("QHUB_DUMMY_PASSWORD", tokens["dummy-password"])
    monkeypatch.setenv("QHUB_DUMMY_ADMIN_PASSWORD", tokens["dummy-admin-password"])
    for mod in ("qhub_hub_values", "qhub_hub_identities", "qhub_hub_setup", "qhub_hub_spawner"):
        monkeypatch.delitem(__import__("sys").modules, mod, raising=False)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(config_dir)).load_config()


def culler(c: Any) -> list[str]:
    return next(s["command"] for s in c.JupyterHub.services if s["name"] == "idle-culler")


def test_a_one_minute_timeout_hears_of_activity_every_15_seconds(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_config({"timeout": 60, "every": 15}, tmp_path, monkeypatch)
    assert "--timeout=60" in culler(c) and "--cull-every=15" in culler(c)
    # the proxy's traffic record is read, and each server reports its own activity, 4 times per timeout
    assert c.JupyterHub.last_activity_interval == 15
    assert c.KubeSpawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "15"
    assert c.JupyterHub.activity_resolution == 15


def test_the_default_timeout_keeps_jupyterhubs_activity_periods(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_config({}, tmp_path, monkeypatch)
    assert "--timeout=3600" in culler(c) and "--cull-every=300" in culler(c)
    assert c.JupyterHub.last_activity_interval == 60  # the route check's period
    assert c.KubeSpawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"
    assert c.JupyterHub.activity_resolution == 30


def test_without_culling_only_the_route_check_remains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_config({"enabled": False, "timeout": 60}, tmp_path, monkeypatch)
    assert "idle-culler" not in [s["name"] for s in c.JupyterHub.services]
    assert c.JupyterHub.last_activity_interval == 60
    assert "activity_resolution" not in c.JupyterHub
    assert "JUPYTERHUB_ACTIVITY_INTERVAL" not in c.KubeSpawner.environment
