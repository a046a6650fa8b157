"""Run a load on the local simulated cluster and measure node-hours per node group.

The cluster `qhub-<project>-sim` gets the config's node groups (qhubctl.providers.local.local_groups) with the
node shapes of their instance types (qhubctl.cost.shapes), and the simulated autoscaler. The load is N JupyterLab
servers (the default JupyterLab profile's requests, on its node group) and M Dask workers (the default Dask worker
profile), placed with the same nodeSelector/tolerations the chart uses. The clock is accelerated: one simulated
hour lasts `seconds_per_hour` real seconds (default 10), and the autoscaler's scale-down delay is 10 simulated
minutes. The load runs for `hours` simulated hours, is removed, and measuring goes on until every group is back at
its minimum. Node counts are sampled twice a second. The cluster and its folders are deleted at the end, whatever
happened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qhubctl import localcluster
from qhubctl.config.model import QHubConfig
from qhubctl.cost.shapes import NodeShape
from qhubctl.errors import ClusterError, UserError
from qhubctl.nodegroups import GPU_RESOURCE
from qhubctl.nodegroups import LABEL as GROUP_LABEL
from qhubctl.providers.local import local_groups, stop_cluster

SIM_LABEL = "qhub.dev/cost-simulation"
NAMESPACE = "default"


@dataclass(frozen=True)
class Load:
    users: int = 0
    dask_workers: int = 0
    hours: float = 1.0


def parse_load(text: str) -> Load:
    """'users=10,dask-workers=20,hours=8' -> Load."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(users|dask-workers|hours)=([0-9]+(\.[0-9]+)?)", part)
        if not match:
            raise UserError(f"--simulate: cannot read {part!r}",
                            hint="use users=N,dask-workers=M,hours=H (whole numbers; hours may be decimal)")
        values[match.group(1)] = match.group(2)
    hours = float(values.get("hours", "1"))
    if "." in values.get("users", "") or "." in values.get("dask-workers", ""):
        raise UserError("--simulate: users and dask-workers are whole numbers")
    if hours <= 0 or hours > 744:
        raise UserError("--simulate: hours must be above 0 and at most 744 (a month)")
    return Load(int(values.get("users", "0")), int(values.get("dask-workers", "0")), hours)


@dataclass
class Usage:
    """What one node group did during a simulation."""

    name: str
    min_nodes: int
    node_hours: float = 0.0
    above_min_hours: float = 0.0
    peak_nodes: int = 0
    samples: list[int] = field(default_factory=list)

    @property
    def scaled(self) -> bool:
        return self.peak_nodes > self.min_nodes


@dataclass
class Result:
    load: Load
    seconds_per_hour: float
    window_hours: float
    groups: dict[str, Usage]
    pending_at_end: int


def _pod(name: str, group: str, cfg: QHubConfig, cpu: float, memory: str, gpus: int) -> dict[str, Any]:
    place = cfg.placements()[group]
    requests: dict[str, str] = {"cpu": str(cpu), "memory": str(memory)}
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {SIM_LABEL: "load"}},
        "spec": {
            "nodeSelector": place.node_selector, "tolerations": place.tolerations(),
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "load", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": requests, "limits": requests}}],
        },
    }


def load_pods(cfg: QHubConfig, load: Load) -> list[dict[str, Any]]:
    """The pods a load stands for, with the default profiles' requests and the chart's placement."""
    lab = next((p for p in cfg.profiles.jupyterlab if p.default), cfg.profiles.jupyterlab[0])
    dask = next((p for p in cfg.profiles.dask_worker if p.default), cfg.profiles.dask_worker[0])
    pods = [_pod(f"jupyter-{i}", lab.node_group, cfg, float(str(lab.cpu.guarantee)), str(lab.memory.guarantee),
                 lab.gpus) for i in range(load.users)]
    pods += [_pod(f"dask-worker-{i}", dask.node_group, cfg, dask.cores, dask.memory, dask.gpus)
             for i in range(load.dask_workers)]
    return pods


def simulate(cfg: QHubConfig, load: Load, *, shapes: Mapping[str, NodeShape] | None = None,
             seconds_per_hour: float = 10.0, log: Any = print, tail_timeout: float = 120.0) -> Result:
    """Run `load`; nodes of a group named in `shapes` get that shape (qhubctl.cost.shapes.node_shapes), the others
    the local cluster's standard shape."""
    from qhubctl.kube import kubernetes

    client, kconfig = kubernetes().client, kubernetes().config

    name = f"qhub-{cfg.project_name}-sim"
    groups = local_groups(cfg, {g: (s.cpu, s.memory) for g, s in (shapes or {}).items()})
    scale_down_after = seconds_per_hour / 6  # 10 simulated minutes
    log(f"simulating on local cluster {name}: 1 simulated hour = {seconds_per_hour:g} real seconds; "
        f"{load.users} user(s), {load.dask_workers} Dask worker(s) for {load.hours:g} h")
    usage = {g.name: Usage(g.name, g.min_nodes) for g in groups}
    pending_end = 0
    try:  # the cluster and its folders go at the end, also when starting it failed half-way
        cluster = localcluster.up(name, groups, scale_down_after=scale_down_after, log=log, with_real_node=False)
        api = client.CoreV1Api(kconfig.new_client_from_config(str(cluster.kubeconfig)))

        def counts() -> dict[str, int]:
            found = {g: 0 for g in usage}
            for node in api.list_node(label_selector=GROUP_LABEL).items:
                group = node.metadata.labels.get(GROUP_LABEL)
                if group in found:
                    found[group] += 1
            return found

        def sample(previous: dict[str, int], elapsed: float) -> dict[str, int]:
            now_counts = counts()
            for group, use in usage.items():
                use.node_hours += previous[group] * elapsed / seconds_per_hour
                use.above_min_hours += max(0, previous[group] - use.min_nodes) * elapsed / seconds_per_hour
                use.peak_nodes = max(use.peak_nodes, now_counts[group])
                use.samples.append(now_counts[group])
            return now_counts

        api.delete_collection_namespaced_pod(NAMESPACE, label_selector=SIM_LABEL, grace_period_seconds=0)
        for pod in load_pods(cfg, load):
            api.create_namespaced_pod(NAMESPACE, pod)
        start = last = time.monotonic()
        current = counts()
        end_load = start + load.hours * seconds_per_hour
        while (now := time.monotonic()) < end_load:
            current = sample(current, now - last)
            last = now
            pods = api.list_namespaced_pod(NAMESPACE, label_selector=SIM_LABEL).items
            pending_end = sum(1 for p in pods if not p.spec.node_name)
            time.sleep(min(0.5, max(0.0, end_load - time.monotonic())))
        api.delete_collection_namespaced_pod(NAMESPACE, label_selector=SIM_LABEL, grace_period_seconds=0)
        deadline = time.monotonic() + tail_timeout
        while True:
            now = time.monotonic()
            current = sample(current, now - last)
            last = now
            if all(current[g] <= u.min_nodes for g, u in usage.items()):
                break
            if now > deadline:
                raise ClusterError(f"node groups did not scale back to their minimum within {tail_timeout:.0f}s: "
                                   + ", ".join(f"{g}={c}" for g, c in current.items()),
                                   hint=f"see the autoscaler log in {cluster.workdir}/autoscaler.log")
            time.sleep(0.5)
        window = (last - start) / seconds_per_hour
    finally:
        stop_cluster(name, log=lambda _: None)
    return Result(load, seconds_per_hour, window, usage, pending_end)
