"""Unit tests of the foundation pieces that need no cluster: pins, kwok stages, autoscaler decisions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from qhubctl.localcluster import SIMULATED_GROUPS, NODE_GROUP_LABEL, SimulatedGroup
from qhubctl.simautoscaler import admits, plan_scale_up, pod_requests, tolerates

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
GROUPS = {g.name: g for g in SIMULATED_GROUPS}


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "ci" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key] = value.strip('"')
    return pins


def make_pod(group: str | None = None, cpu: str = "1", memory: str = "1Gi", gpu: int = 0,
             tolerate: tuple[str, ...] = (), init_cpu: str | None = None, affinity_groups: list[str] | None = None):
    limits = {"nvidia.com/gpu": str(gpu)} if gpu else {}
    requests = {"cpu": cpu, "memory": memory, **limits}
    tolerations = [NS(key=NODE_GROUP_LABEL, operator="Equal", value=g, effect="NoSchedule") for g in tolerate]
    if gpu:
        tolerations.append(NS(key="nvidia.com/gpu", operator="Exists", value=None, effect="NoSchedule"))
    init = [NS(resources=NS(requests={"cpu": init_cpu}))] if init_cpu else []
    affinity = None
    if affinity_groups:
        expr = NS(key=NODE_GROUP_LABEL, operator="In", values=affinity_groups)
        term = NS(match_expressions=[expr])
        affinity = NS(node_affinity=NS(required_during_scheduling_ignored_during_execution=NS(node_selector_terms=[term])))
    spec = NS(containers=[NS(resources=NS(requests=requests))], init_containers=init,
              node_selector={NODE_GROUP_LABEL: group} if group else {}, tolerations=tolerations, affinity=affinity)
    return NS(spec=spec, metadata=NS(uid=f"uid-{id(spec)}", namespace="ns", name="p"))


def test_versions_pin_every_tool_exactly() -> None:
    pins = pinned()
    for key in ("HELM_VERSION", "KUBE_VERSION", "ETCD_VERSION", "KWOK_VERSION", "CHART_TESTING_VERSION"):
        assert pins[key].startswith("v") and pins[key].count(".") == 2, key
    assert pins["HELM_VERSION"].startswith("v4."), "Helm 4 is the pinned line"
    assert pins["ETCD_VERSION"].startswith("v3.6.")
    assert len(pins["VALIDATE_KUBE_VERSIONS"].split()) == 3


def test_kwok_stages_cover_the_lifecycle_the_chart_needs() -> None:
    docs = list(yaml.safe_load_all((REPO / "tools/qhubctl/data/kwok-stages.yaml").read_text()))
    assert all(d["kind"] == "Stage" for d in docs)
    by_kind: dict[str, list[str]] = {}
    for d in docs:
        by_kind.setdefault(d["spec"]["resourceRef"]["kind"], []).append(d["metadata"]["name"])
    assert {"Node", "Pod", "PersistentVolumeClaim", "PersistentVolume"} <= set(by_kind)
    hook = next(d for d in docs if d["metadata"]["name"] == "qhub-hook-pod-succeeded")
    keys = [e.get("key") for e in hook["spec"]["selector"]["matchExpressions"]]
    assert '.metadata.annotations["helm.sh/hook"]' in keys, "helm test pods must complete"
    assert "phase: Succeeded" in hook["spec"]["next"]["statusTemplate"]


def test_node_groups_follow_design_labels_and_taints() -> None:
    assert GROUPS["general"].taints() == [] and GROUPS["general"].min_nodes >= 1
    for name in ("user", "worker", "gpu"):
        assert GROUPS[name].min_nodes == 0
        assert {"key": NODE_GROUP_LABEL, "value": name, "effect": "NoSchedule"} in GROUPS[name].taints()
        assert GROUPS[name].labels()[NODE_GROUP_LABEL] == name
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in GROUPS["gpu"].taints()
    assert GROUPS["gpu"].capacity()["nvidia.com/gpu"] == "1"


def test_pod_requests_take_the_larger_of_containers_and_init() -> None:
    assert pod_requests(make_pod(cpu="500m", init_cpu="2"))["cpu"] == 2.0
    assert pod_requests(make_pod(cpu="3", init_cpu="1"))["cpu"] == 3.0


def test_admission_needs_selector_toleration_and_room() -> None:
    assert admits(GROUPS["user"], make_pod("user", tolerate=("user",)))
    assert not admits(GROUPS["user"], make_pod("user")), "untolerated group taint"
    assert not admits(GROUPS["worker"], make_pod("user", tolerate=("user", "worker"))), "selector mismatch"
    assert not admits(GROUPS["user"], make_pod("user", cpu="64", tolerate=("user",))), "larger than a node"
    assert not admits(GROUPS["worker"], make_pod("worker", gpu=1, tolerate=("worker",))), "no GPU on worker"
    assert admits(GROUPS["gpu"], make_pod("gpu", gpu=1, tolerate=("gpu",)))
    assert admits(GROUPS["general"], make_pod())
    assert admits(GROUPS["worker"], make_pod(tolerate=("worker",), affinity_groups=["worker"]))
    assert not admits(GROUPS["user"], make_pod(tolerate=("user",), affinity_groups=["worker"]))


def test_toleration_operators() -> None:
    taint = {"key": NODE_GROUP_LABEL, "value": "user", "effect": "NoSchedule"}
    assert tolerates(NS(spec=NS(tolerations=[NS(key=None, operator="Exists", value=None, effect=None)])), taint)
    assert not tolerates(NS(spec=NS(tolerations=[NS(key=NODE_GROUP_LABEL, operator="Equal", value="worker",
                                                     effect="NoSchedule")])), taint)
    assert not tolerates(NS(spec=NS(tolerations=[NS(key=NODE_GROUP_LABEL, operator="Exists", value=None,
                                                     effect="NoExecute")])), taint)


def test_scale_up_packs_pods_and_respects_max() -> None:
    worker = SimulatedGroup("worker", 0, 2, cpu="4", memory="16Gi")
    pods = [make_pod("worker", cpu="1500m", memory="2Gi", tolerate=("worker",)) for _ in range(6)]
    plan = plan_scale_up([worker], {"worker": 0}, pods)
    assert len(plan) == 2, "two pods of 1.5 CPU per 4-CPU node, and the group stops at its max of 2"
    assert [len(n.pods) for n in plan] == [2, 2]
    assert plan_scale_up([worker], {"worker": 2}, pods) == []


def test_scale_up_prefers_the_group_that_wastes_least() -> None:
    small = SimulatedGroup("small", 0, 3, cpu="2")
    big = SimulatedGroup("big", 0, 3, cpu="16")
    pod = make_pod(cpu="1")
    pod.spec.tolerations = [NS(key=None, operator="Exists", value=None, effect=None)]
    plan = plan_scale_up([big, small], {}, [pod])
    assert [n.group.name for n in plan] == ["small"]
