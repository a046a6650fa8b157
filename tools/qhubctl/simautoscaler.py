"""A node-group autoscaler for the local cluster, playing the part cluster-autoscaler plays on a cloud.

cluster-autoscaler's kwok provider cannot be built here (the Go module proxy serves no version of
k8s.io/autoscaler/cluster-autoscaler), so this module does the same job against the same real API server:

- scale up: pods the scheduler marked Unschedulable are packed, first-fit, onto new nodes of the groups whose
  labels, taints and node shape admit them (nodeSelector, required node affinity `In`/`Exists`, tolerations,
  cpu/memory/GPU requests), never above a group's max; among fitting groups the one wasting the least CPU wins;
- scale down: a node the autoscaler manages that has carried no pods (other than DaemonSet pods) for
  `scale_down_after` seconds is deleted, never below the group's min;
- nodes are Node objects with the group's labels, taints and capacity; the kwok controller makes them Ready.

Every decision is logged and recorded as a Kubernetes Event, as cluster-autoscaler does (TriggeredScaleUp,
ScaleDown), so `kubectl describe pod` tells why a node appeared.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.utils import parse_quantity

from qhubctl.localcluster import NODE_GROUP_LABEL, SimulatedGroup

log = logging.getLogger("qhub.autoscaler")
MANAGED = "qhub.dev/autoscaler"


def pod_requests(pod: Any) -> dict[str, float]:
    """Effective requests of a pod: the sum over containers, or the largest init container if larger."""
    total: dict[str, float] = {}
    for c in pod.spec.containers or []:
        for k, v in ((c.resources and c.resources.requests) or {}).items():
            total[k] = total.get(k, 0.0) + float(parse_quantity(v))
    for c in pod.spec.init_containers or []:
        for k, v in ((c.resources and c.resources.requests) or {}).items():
            total[k] = max(total.get(k, 0.0), float(parse_quantity(v)))
    return total


def tolerates(pod: Any, taint: dict[str, str]) -> bool:
    for t in pod.spec.tolerations or []:
        if t.effect and t.effect != taint["effect"]:
            continue
        if t.operator == "Exists" and (not t.key or t.key == taint["key"]):
            return True
        if (t.operator in (None, "Equal")) and t.key == taint["key"] and (t.value or "") == taint["value"]:
            return True
    return False


def _affinity_admits(pod: Any, labels: dict[str, str]) -> bool:
    affinity = pod.spec.affinity and pod.spec.affinity.node_affinity
    required = affinity and affinity.required_during_scheduling_ignored_during_execution
    if not required:
        return True
    for term in required.node_selector_terms or []:  # terms are ORed, expressions ANDed
        ok = True
        for e in term.match_expressions or []:
            value = labels.get(e.key)
            if e.operator == "In":
                ok = value in (e.values or [])
            elif e.operator == "NotIn":
                ok = value not in (e.values or [])
            elif e.operator == "Exists":
                ok = value is not None
            elif e.operator == "DoesNotExist":
                ok = value is None
            else:
                ok = False
            if not ok:
                break
        if ok:
            return True
    return False


def admits(group: SimulatedGroup, pod: Any) -> bool:
    """Whether a fresh node of `group` could host `pod` (labels, taints, shape)."""
    labels = group.labels()
    if any(labels.get(k) != v for k, v in (pod.spec.node_selector or {}).items()):
        return False
    if not _affinity_admits(pod, labels):
        return False
    if not all(tolerates(pod, t) for t in group.taints() if t["effect"] in ("NoSchedule", "NoExecute")):
        return False
    capacity = {k: float(parse_quantity(v)) for k, v in group.capacity().items()}
    return all(capacity.get(k, 0.0) >= v for k, v in pod_requests(pod).items() if v > 0)


@dataclass
class _NewNode:
    group: SimulatedGroup
    free: dict[str, float]
    pods: list[Any] = field(default_factory=list)

    def take(self, pod: Any) -> bool:
        req = pod_requests(pod)
        if any(self.free.get(k, 0.0) < v for k, v in req.items() if v > 0):
            return False
        for k, v in req.items():
            self.free[k] = self.free.get(k, 0.0) - v
        self.pods.append(pod)
        return True


def plan_scale_up(groups: list[SimulatedGroup], counts: dict[str, int], pending: list[Any]) -> list[_NewNode]:
    """New nodes that would let every pending pod that fits some group schedule."""
    new: list[_NewNode] = []
    for pod in pending:
        if any(n.take(pod) for n in new if admits(n.group, pod)):
            continue
        fitting = [g for g in groups if admits(g, pod) and counts.get(g.name, 0) < g.max_nodes]
        if not fitting:
            continue

        def waste(g: SimulatedGroup) -> float:
            return float(parse_quantity(g.cpu)) - pod_requests(pod).get("cpu", 0.0)

        group = min(fitting, key=waste)
        node = _NewNode(group, {k: float(parse_quantity(v)) for k, v in group.capacity().items()})
        node.take(pod)
        new.append(node)
        counts[group.name] = counts.get(group.name, 0) + 1
    return new


class Autoscaler:
    def __init__(self, api: client.CoreV1Api, groups: list[SimulatedGroup], scale_down_after: float) -> None:
        self.api = api
        self.groups = groups
        self.by_name = {g.name: g for g in groups}
        self.scale_down_after = scale_down_after
        self.idle_since: dict[str, float] = {}
        # pods a new node was made for: the scheduler needs a moment to place them, so they are not counted again
        self.triggered: dict[str, float] = {}

    def _nodes(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {g.name: [] for g in self.groups}
        for node in self.api.list_node(label_selector=NODE_GROUP_LABEL).items:
            name = node.metadata.labels.get(NODE_GROUP_LABEL)
            if name in out:
                out[name].append(node)
        return out

    def _event(self, pod: Any | None, node_name: str, reason: str, message: str) -> None:
        now = datetime.now(timezone.utc)
        ref = (client.V1ObjectReference(kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name,
                                        uid=pod.metadata.uid) if pod is not None
               else client.V1ObjectReference(kind="Node", name=node_name))
        namespace = pod.metadata.namespace if pod is not None else "default"
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="qhub-autoscaler-", namespace=namespace),
            involved_object=ref, reason=reason, message=message, type="Normal",
            source=client.V1EventSource(component="qhub-autoscaler"), first_timestamp=now, last_timestamp=now,
            count=1)
        try:
            self.api.create_namespaced_event(namespace, body)
        except client.ApiException as err:  # events are informative; never stop scaling for them
            log.warning("could not record event %s: %s", reason, err.reason)

    def _create_node(self, group: SimulatedGroup) -> str:
        name = f"{group.name}-{int(time.time() * 1000) % 10**9:09d}"
        manifest = group.node_manifest(name)
        manifest["metadata"]["annotations"][MANAGED] = "managed"
        self.api.create_node(manifest)
        return name

    def step(self) -> None:
        nodes = self._nodes()
        counts = {g: len(ns) for g, ns in nodes.items()}
        for group in self.groups:  # keep every group at its min
            for _ in range(group.min_nodes - counts[group.name]):
                name = self._create_node(group)
                counts[group.name] += 1
                log.info("group %s below min %d: added %s", group.name, group.min_nodes, name)
        pods = self.api.list_pod_for_all_namespaces().items
        pending = [p for p in pods if p.status.phase == "Pending" and not p.spec.node_name
                   and not p.metadata.deletion_timestamp
                   and any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                           for c in (p.status.conditions or []))]
        now = time.monotonic()
        self.triggered = {uid: t for uid, t in self.triggered.items() if now - t < 60}
        pending = [p for p in pending if p.metadata.uid not in self.triggered]
        for new in plan_scale_up(self.groups, counts, pending):
            name = self._create_node(new.group)
            log.info("scale up %s: %s for %s", new.group.name, name,
                     ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in new.pods))
            for pod in new.pods:
                self.triggered[pod.metadata.uid] = now
                self._event(pod, name, "TriggeredScaleUp", f"pod triggered scale-up: group {new.group.name} +1 ({name})")
        self._scale_down(nodes, pods)

    def _scale_down(self, nodes: dict[str, list[Any]], pods: list[Any]) -> None:
        busy: set[str] = set()
        for p in pods:
            owners = p.metadata.owner_references or []
            if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed") \
                    and not any(o.kind == "DaemonSet" for o in owners):
                busy.add(p.spec.node_name)
        now = time.monotonic()
        for group_name, group_nodes in nodes.items():
            group = self.by_name[group_name]
            alive = len(group_nodes)
            for node in sorted(group_nodes, key=lambda n: n.metadata.name, reverse=True):
                name = node.metadata.name
                if name in busy or (node.metadata.annotations or {}).get(MANAGED) != "managed":
                    self.idle_since.pop(name, None)
                    continue
                since = self.idle_since.setdefault(name, now)
                if alive > group.min_nodes and now - since >= self.scale_down_after:
                    self.api.delete_node(name)
                    self.idle_since.pop(name, None)
                    alive -= 1
                    log.info("scale down %s: removed %s, idle for %.0fs", group_name, name, now - since)
                    self._event(None, name, "ScaleDown", f"node removed by qhub-autoscaler (group {group_name})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhubctl.simautoscaler", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--groups", required=True,
                        help="JSON file: list of node groups (qhubctl.localcluster.SimulatedGroup)")
    parser.add_argument("--scale-down-after", type=float, default=30.0, help="seconds a node must be empty")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with open(args.groups) as fh:
        groups = [SimulatedGroup(**g) for g in json.load(fh)]
    api = client.CoreV1Api(config.new_client_from_config(args.kubeconfig))
    # The cluster's identity: a cluster started later on the same address is a different cluster, and this
    # autoscaler must not add nodes to it.
    identity = api.read_namespace("kube-system").metadata.uid
    scaler = Autoscaler(api, groups, args.scale_down_after)
    failures = 0
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    log.info("managing groups %s", ", ".join(f"{g.name}[{g.min_nodes}..{g.max_nodes}]" for g in groups))
    while not stop:
        try:
            if api.read_namespace("kube-system").metadata.uid != identity:
                log.info("the cluster was replaced; stopping")
                break
            scaler.step()
            failures = 0
        except Exception as err:  # keep running across API hiccups, as a controller does
            failures += 1
            log.warning("autoscaler step failed (%d in a row): %s", failures, err)
            if failures >= 30:
                log.info("the API server has been unreachable for a minute; stopping")
                break
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
