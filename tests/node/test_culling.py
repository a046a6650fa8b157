"""Idle culling on the real node, the way users meet it: QHub deployed by `qhubctl deploy` with a one-minute idle
timeout set in the config file (`jupyterhub.idle_culler.timeout_minutes: 1`). Two users start their servers;
`idle` then leaves hers alone while `busy` keeps running cells in a notebook kernel of hers (through the proxy, as
JupyterLab does). jupyterhub-idle-culler stops the idle server and its pod goes; the busy one, in use well past the
timeout, keeps running in the same pod. (An idle Dask cluster stopping itself is in test_dask_journey.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import qhubkit
from qhubkit import Platform

from nodekit import wait_for
from qhubctl.localcluster import LocalCluster

pytestmark = [pytest.mark.node, pytest.mark.long_journey]  # run_tests.py: a session of their own

NS = "qhub-cull"
RELEASE = "qcull"
IMAGES = ("jupyterhub", "jupyterlab")
TIMEOUT = 60  # seconds: the config's one minute


def _config() -> dict[str, Any]:
    """`qhubctl init local`'s config with the two users and a one-minute idle timeout; Dask-Gateway and SSH off,
    this journey needs neither."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["auth"]["users"] = {"idle": {}, "busy": {}, **{admin: {} for admin in cfg["auth"]["admins"]}}
    cfg["jupyterhub"] = {"idle_culler": {"timeout_minutes": TIMEOUT // 60}}
    cfg["components"].update(dask_gateway=False, kubessh=False)
    return cfg


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("cull"), NS, RELEASE, _config(), IMAGES) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _report(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(platform, request)


def _pod(platform: Platform, user: str) -> dict[str, Any] | None:
    """The user's server pod, even while it is being deleted; None once it is gone."""
    pods = platform.pods(f"hub.jupyter.org/username={user}")
    return pods[0] if pods else None


def test_an_idle_server_is_culled_and_a_busy_one_is_not(platform: Platform) -> None:
    values = json.loads(qhubkit.helm(platform.cluster, "get", "values", RELEASE, "-n", NS, "-o", "json").stdout)
    assert values["jupyterhub"]["cull"] == {"enabled": True, "timeout": TIMEOUT, "every": TIMEOUT // 4}
    platform.start_server("idle")
    idle_since = time.monotonic()  # the last request her server saw: the start's check through the proxy
    idle_pod = _pod(platform, "idle")
    assert idle_pod is not None
    busy = platform.kernel("busy")
    busy_pod = _pod(platform, "busy")
    assert busy_pod is not None
    busy_since = time.monotonic()
    busy.run("n = 0")

    def idle_gone() -> bool:
        busy.run("n += 1")  # `busy` works in her notebook meanwhile, a cell every few seconds
        return _pod(platform, "idle") is None

    wait_for("the idle server's pod to go", idle_gone, timeout=TIMEOUT * 4, interval=5)
    latency = time.monotonic() - idle_since
    assert latency > TIMEOUT - 5, f"culled {latency:.0f}s after her last use, before the {TIMEOUT}s timeout"
    # the hub finishes the stop as the pod goes
    wait_for("the hub to see idle's server stopped", lambda: platform.hub_api(
        "GET", "/users/idle", platform.token("idle")).json()["servers"] == {}, timeout=30, interval=1)
    hub_log = platform.cluster.kubectl("logs", "-n", NS, f"deployment/{RELEASE}-hub", "--tail=-1")
    assert "Culling server idle (inactive for" in hub_log, "stopped by jupyterhub-idle-culler"

    # `busy` keeps working past the timeout by more than the culler's check period plus the time her activity takes
    # to reach the hub (each a quarter of the timeout): a culler that did not see her activity would have culled her
    deadline = busy_since + TIMEOUT + 2 * (TIMEOUT // 4) + 5
    while time.monotonic() < deadline:
        busy.run("n += 1")
        time.sleep(5)
    assert busy.run("print(n)").strip().isdigit()
    still = _pod(platform, "busy")
    assert still is not None and still["metadata"]["uid"] == busy_pod["metadata"]["uid"], "the busy server was culled"
    assert not still["metadata"].get("deletionTimestamp"), "the busy server is being stopped"
    assert all(s["restartCount"] == 0 for s in still["status"]["containerStatuses"])
    model = platform.hub_api("GET", "/users/busy", platform.token("busy")).json()
    assert model["servers"][""]["ready"], model
    assert "Culling server busy" not in platform.cluster.kubectl("logs", "-n", NS, f"deployment/{RELEASE}-hub",
                                                                 "--tail=-1")
    print(f"[node] idle culling with a {TIMEOUT}s timeout: idle server's pod gone {latency:.0f}s after her last "
          f"use; busy server kept for {time.monotonic() - busy_since:.0f}s; deploy {platform.deploy_seconds:.0f}s")
