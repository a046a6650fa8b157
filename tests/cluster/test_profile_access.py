"""Who may start which server profile, enforced at spawn time by the chart's own hub config: a real JupyterHub with
KubeSpawner against the test cluster (the harness of test_jupyterhub_spawn.py). Listing is checked in the browser on
the real node (tests/node/test_browser_journey.py); here the spawn API is called directly with a profile slug, as a
user who edits the form's POST would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_jupyterhub_spawn import Hub, running_hub, user_pods, wait_for

from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.cluster

# small only for analysts, high-memory off, gpu left as the chart ships it (no groups: gpuGroup, gpu-users, only)
VALUES: dict[str, Any] = {
    "jupyterhub": {
        "groups": {"analysts": {"gid": 3001, "users": ["carol"]}, "gpu-users": {"users": ["frank"]}},
        "singleuser": {"profiles": {"small": {"groups": ["analysts"]}, "high-memory": {"enabled": False}}},
    },
}


@pytest.fixture()
def gated_hub(cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[Hub, str, Path]]:
    ns = f"jh-gate-{tmp_path.name[-6:].lower().replace('_', '')}"
    cluster.kubectl("create", "namespace", ns)
    try:
        with running_hub(cluster, ns, tmp_path, VALUES) as (api, _shared):
            yield api, ns, tmp_path / "hub.log"
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_profile_outside_the_users_groups_is_refused_at_spawn(
    cluster: LocalCluster, gated_hub: tuple[Hub, str, Path]
) -> None:
    api, ns, log = gated_hub
    # carol (analysts) asks for the GPU profile by its slug: KubeSpawner finds it nowhere in her list
    refused = api.call("POST", "/users/carol/server", json={"profile": "gpu"})
    assert refused.status_code >= 400, refused.text
    assert "No such profile: gpu. Options include: small" in log.read_text()
    assert not user_pods(cluster, ns, "carol")

    # erin is in no group, and every profile is limited to a group: refused before KubeSpawner's class defaults
    # could start her anything
    assert api.call("POST", "/users/erin").status_code == 201
    refused = api.call("POST", "/users/erin/server", json={})
    assert refused.status_code >= 400, refused.text
    assert "no server profile is open to erin" in log.read_text()
    refused = api.call("POST", "/users/erin/server", json={"profile": "small"})
    assert refused.status_code >= 400, refused.text
    assert not user_pods(cluster, ns, "erin")

    # frank (gpu-users) gets the GPU profile: a pod that requests the GPU on the gpu node group
    started = api.call("POST", "/users/frank/server", json={"profile": "gpu"})
    assert started.status_code in (201, 202), started.text
    pod = wait_for(lambda: next(iter(user_pods(cluster, ns, "frank")), None), 60, "frank's pod")
    assert pod["spec"]["nodeSelector"] == {"qhub.dev/node-group": "gpu"}
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert api.call("DELETE", "/users/frank/server").status_code in (202, 204)
    wait_for(lambda: not user_pods(cluster, ns, "frank"), 60, "frank's pod to be deleted")
