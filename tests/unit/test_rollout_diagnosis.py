"""Why a deploy did not finish: qhubctl.deploy's diagnosis over pod statuses and events as the Kubernetes API
returns them (shapes taken from real kubelet/scheduler output), naming workload, container and cause."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qhubctl import deploy, kube
from qhubctl.errors import ClusterError, HelmError

pytestmark = pytest.mark.unit

NS = "qhub"


def rs_pod(deployment: str, suffix: str = "x7k2p", template_hash: str = "5d9c7b8f6d") -> dict[str, Any]:
    """A pod of a Deployment, owned by its ReplicaSet <deployment>-<pod-template-hash>."""
    return {
        "metadata": {
            "name": f"{deployment}-{template_hash}-{suffix}", "namespace": NS,
            "labels": {"pod-template-hash": template_hash, "app.kubernetes.io/component": "hub"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                 "name": f"{deployment}-{template_hash}"}],
        },
        "spec": {"containers": [{"name": "hub"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-08-30T10:00:00Z"}]},
    }


def sts_pod(statefulset: str, ordinal: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{statefulset}-{ordinal}", "namespace": NS,
                     "labels": {"statefulset.kubernetes.io/pod-name": f"{statefulset}-{ordinal}"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "controller": True,
                                          "name": statefulset}]},
        "spec": {"containers": [{"name": "postgresql"}]},
        "status": {"phase": "Pending"},
    }


def workload(kind: str, name: str, ready: int = 0, desired: int = 1) -> kube.Workload:
    return kube.Workload(kind, name, desired, ready, 2, 2, "abc")


def event(pod: str, reason: str, message: str, *, container: str | None = None, count: int = 1,
          type_: str = "Warning") -> dict[str, Any]:
    obj = {"kind": "Pod", "name": pod, "namespace": NS}
    if container:
        obj["fieldPath"] = f"spec.containers{{{container}}}"
    return {"type": type_, "reason": reason, "message": message, "count": count, "involvedObject": obj,
            "lastTimestamp": "2026-08-30T10:05:00Z"}


def image_pull_pod(reason: str) -> dict[str, Any]:
    pod = rs_pod("qhub-hub")
    pod["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False",
                                                                    "reason": "ContainersNotReady"}],
        "containerStatuses": [{
            "name": "hub", "ready": False, "restartCount": 0, "started": False,
            "image": "ghcr.io/qhub-dev/jupyterhub:2026.8.0", "imageID": "",
            "state": {"waiting": {
                "reason": reason,
                "message": 'Back-off pulling image "ghcr.io/qhub-dev/jupyterhub:2026.8.0"' if reason ==
                "ImagePullBackOff" else 'failed to pull and unpack image "ghcr.io/qhub-dev/jupyterhub:2026.8.0": '
                'failed to resolve reference: ghcr.io/qhub-dev/jupyterhub:2026.8.0: not found'}},
        }],
    }
    return pod


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_errors_name_the_image(reason: str) -> None:
    pod = image_pull_pod(reason)
    lines = deploy.diagnose_rollout([workload("Deployment", "qhub-hub")], [pod], [])
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("Deployment/qhub-hub (pod qhub-hub-5d9c7b8f6d-x7k2p, container hub): " + reason)
    assert "cannot pull image ghcr.io/qhub-dev/jupyterhub:2026.8.0" in line


def test_crashloop_shows_exit_code_and_last_log_lines() -> None:
    pod = rs_pod("qhub-hub")
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
        "containerStatuses": [{
            "name": "hub", "ready": False, "restartCount": 5, "started": False,
            "image": "ghcr.io/qhub-dev/jupyterhub:2026.8.0",
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 2m40s restarting failed container=hub "
                                             "pod=qhub-hub-5d9c7b8f6d-x7k2p_qhub(0b1c)"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "startedAt": "2026-08-30T10:03:00Z", "finishedAt": "2026-08-30T10:03:04Z"}},
        }],
    }
    asked: list[tuple[str, str, bool]] = []

    def log_tail(pod_name: str, container: str, previous: bool) -> str:
        asked.append((pod_name, container, previous))
        return "".join(f"line {i}\n" for i in range(30)) + "ValueError: the hub Secret's cookie-secret must be 64 hex\n"

    lines = deploy.diagnose_rollout([workload("Deployment", "qhub-hub")], [pod], [], log_tail)
    assert asked == [("qhub-hub-5d9c7b8f6d-x7k2p", "hub", True)], "the crashed run's log (previous=true)"
    text = lines[0]
    assert text.startswith("Deployment/qhub-hub (pod qhub-hub-5d9c7b8f6d-x7k2p, container hub): CrashLoopBackOff")
    assert "restarted 5 times; last exit: exit code 1, Error" in text
    assert "ValueError: the hub Secret's cookie-secret must be 64 hex" in text
    assert text.count("\n      ") == deploy.LOG_LINES and "line 19" not in text


def test_unschedulable_quotes_the_scheduler() -> None:
    pod = sts_pod("qhub-conda-store-postgresql")
    message = ("0/3 nodes are available: 1 node(s) had untolerated taint {qhub.dev/node-group: user}, "
               "2 Insufficient memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful "
               "for scheduling.")
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}
    lines = deploy.diagnose_rollout([workload("StatefulSet", "qhub-conda-store-postgresql")], [pod], [])
    assert lines == [f"StatefulSet/qhub-conda-store-postgresql (pod qhub-conda-store-postgresql-0): "
                     f"Unschedulable: {message}"]


def test_failing_readiness_probe_quotes_the_probe_event() -> None:
    pod = rs_pod("qhub-proxy")
    name = pod["metadata"]["name"]
    pod["spec"]["containers"] = [{"name": "chp"}]
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "ContainersReady", "status": "False"},
                       {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{"name": "chp", "ready": False, "restartCount": 0, "started": True,
                               "image": "ghcr.io/qhub-dev/jupyterhub:2026.8.0",
                               "state": {"running": {"startedAt": "2026-08-30T10:00:10Z"}}}],
    }
    events = [
        event(name, "Scheduled", "Successfully assigned qhub/x to node-1", type_="Normal"),
        event(name, "Unhealthy", 'Readiness probe failed: Get "http://10.244.1.7:8000/_chp_healthz": dial tcp '
              "10.244.1.7:8000: connect: connection refused", container="chp", count=12),
        event("other-pod", "Unhealthy", "Readiness probe failed: elsewhere", container="chp"),
    ]
    lines = deploy.diagnose_rollout([workload("Deployment", "qhub-proxy")], [pod], events)
    assert lines == [f"Deployment/qhub-proxy (pod {name}, container chp): ReadinessProbeFailed: Readiness probe "
                     'failed: Get "http://10.244.1.7:8000/_chp_healthz": dial tcp 10.244.1.7:8000: connect: '
                     "connection refused (12 times)"]


def test_missing_secret_key_and_mount_failures() -> None:
    pod = rs_pod("qhub-hub")
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                     "containerStatuses": [{"name": "hub", "ready": False, "restartCount": 0, "image": "i:1",
                                            "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                                  "message": 'couldn\'t find key password in Secret '
                                                                             'qhub/trial'}}}]}
    stuck = sts_pod("qhub-nfs")
    stuck["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "nfs-server", "ready": False, "restartCount": 0, "image": "n:1",
                                              "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    events = [event("qhub-nfs-0", "FailedMount", 'MountVolume.SetUp failed for volume "exports" : configmap '
                    '"qhub-nfs" not found')]
    lines = deploy.diagnose_rollout([workload("Deployment", "qhub-hub"), workload("StatefulSet", "qhub-nfs")],
                                    [pod, stuck], events)
    assert lines[0].endswith("container hub): CreateContainerConfigError: couldn't find key password in Secret "
                             "qhub/trial")
    assert lines[1] == ('StatefulSet/qhub-nfs (pod qhub-nfs-0): FailedMount: MountVolume.SetUp failed for volume '
                        '"exports" : configmap "qhub-nfs" not found')


def test_only_unready_workloads_are_reported_and_silence_is_explained() -> None:
    ready = rs_pod("qhub-proxy")
    ready["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "chp", "ready": True, "restartCount": 0, "image": "i",
                                              "state": {"running": {}}}]}
    rs_event = {"type": "Warning", "reason": "FailedCreate", "count": 4,
                "message": 'pods "qhub-hub-5d9c7b8f6d-" is forbidden: exceeded quota: compute',
                "involvedObject": {"kind": "ReplicaSet", "name": "qhub-hub-5d9c7b8f6d"}}
    lines = deploy.diagnose_rollout(
        [workload("Deployment", "qhub-proxy", ready=1), workload("Deployment", "qhub-hub"),
         workload("DaemonSet", "qhub-agent", ready=0, desired=2)],
        [ready], [rs_event])
    assert lines[0] == ('Deployment/qhub-hub: FailedCreate: pods "qhub-hub-5d9c7b8f6d-" is forbidden: '
                        "exceeded quota: compute")
    assert lines[1].startswith("DaemonSet/qhub-agent: 0/2 ready; no pod reports an error")
    assert len(lines) == 2


def test_pod_owner_is_the_deployment_not_its_replicaset() -> None:
    assert deploy.pod_workload(rs_pod("qhub-dask-gateway-api", template_hash="7c9f")) == \
        "Deployment/qhub-dask-gateway-api"
    assert deploy.pod_workload(sts_pod("qhub-nfs")) == "StatefulSet/qhub-nfs"


class FakeHelm:
    async def upgrade(self, *args: Any, **kwargs: Any) -> int:
        raise HelmError("helm failed: Error: UPGRADE FAILED: context deadline exceeded")


def test_failed_deploy_raises_with_the_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy error carries which workload is not ready and why, not only helm's "timed out"."""
    pod = image_pull_pod("ImagePullBackOff")
    monkeypatch.setattr(kube, "workloads", lambda api, ns: [workload("Deployment", "qhub-hub"),
                                                            workload("Deployment", "qhub-proxy", ready=1)])
    monkeypatch.setattr(kube, "_items", lambda api, path, **q: [pod] if path.endswith("/pods") else [])
    monkeypatch.setattr(kube, "_rest", lambda *a, **k: "")

    class Cfg:
        namespace = NS

    plan = type("P", (), {"release": "qhub", "namespace": NS, "values": {}})()
    with pytest.raises(ClusterError) as err:
        asyncio.run(deploy._upgrade_watching(Cfg(), FakeHelm(), None, plan, "1s", None))  # type: ignore[arg-type]
    text = err.value.message
    assert "context deadline exceeded" in text
    assert "not ready: Deployment/qhub-hub (0/1 ready)" in text and "qhub-proxy" not in text
    assert "container hub): ImagePullBackOff: cannot pull image ghcr.io/qhub-dev/jupyterhub:2026.8.0" in text
