"""Who may start which server profile, enforced at spawn time by the chart's own hub config: a real JupyterHub with
KubeSpawner against the test cluster (the harness of test_jupyterhub_spawn.py). Listing is checked in the browser on
the real node (tests/node/test_browser_journey.py); here the spawn API is called directly with a profile slug, as a
user who edits the form's POST would. The GPU profile's pod lands on a simulated GPU node (nvidia.com/gpu capacity,
the gpu group's taints), which the local cluster's autoscaler adds for it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jhrender import find, render
from test_jupyterhub_spawn import RELEASE, Hub, running_hub, user_pods, wait_for

from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.cluster

# small only for analysts, high-memory off, gpu left as the chart ships it (no groups: gpuGroup, gpu-users, only);
# the shared claim on the simulated nodes' class, so the user pods can be scheduled
VALUES: dict[str, Any] = {
    "sharedStorage": {"existingStorageClass": "standard"},
    "jupyterhub": {
        "groups": {"analysts": {"gid": 3001, "users": ["carol"]}, "gpu-users": {"users": ["frank"]}},
        "singleuser": {"profiles": {"small": {"groups": ["analysts"]}, "high-memory": {"enabled": False}}},
    },
}


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """Whether one of the pod's tolerations admits the node's taint (Kubernetes' matching rules)."""
    return any((not t.get("effect") or t["effect"] == taint["effect"])
               and (t.get("key") in (None, "", taint["key"]) if t.get("operator") == "Exists"
                    else t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""))
               for t in tolerations)


@pytest.fixture()
def gated_hub(cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[Hub, str, Path]]:
    ns = f"jh-gate-{uuid.uuid4().hex[:6]}"  # unique: an earlier run's namespace may still be terminating
    cluster.kubectl("create", "namespace", ns)
    claim = find(render(VALUES, namespace=ns), "PersistentVolumeClaim", f"{RELEASE}-shared")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(claim))
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

    # frank (gpu-users) gets the GPU profile: a pod that requests the GPU on the gpu node group, tolerates its
    # taints, and lands on one of its nodes (from 0 nodes, the autoscaler adds one for it)
    started = api.call("POST", "/users/frank/server", json={"profile": "gpu"})
    assert started.status_code in (201, 202), started.text
    pod = wait_for(lambda: next(iter(user_pods(cluster, ns, "frank")), None), 60, "frank's pod")
    assert pod["spec"]["nodeSelector"] == {"qhub.dev/node-group": "gpu"}
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1", resources
    node_name = wait_for(lambda: next((p["spec"].get("nodeName") for p in user_pods(cluster, ns, "frank")), None),
                         120, "frank's pod to be scheduled")
    node = json.loads(cluster.kubectl("get", "node", node_name, "-o", "json"))
    assert node["metadata"]["labels"]["qhub.dev/node-group"] == "gpu", node["metadata"]["labels"]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    taints = node["spec"]["taints"]
    assert {(t["key"], t["effect"]) for t in taints} == {("qhub.dev/node-group", "NoSchedule"),
                                                          ("nvidia.com/gpu", "NoSchedule")}, taints
    assert all(tolerated(pod["spec"]["tolerations"], t) for t in taints), pod["spec"]["tolerations"]
    assert api.call("DELETE", "/users/frank/server").status_code in (202, 204)
    wait_for(lambda: not user_pods(cluster, ns, "frank"), 60, "frank's pod to be deleted")
