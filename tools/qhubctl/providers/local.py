"""The local simulated cluster (qhubctl.localcluster): a real control plane with fake nodes per node group and the
simulated autoscaler. Free, offline, a few seconds to start; for previews, `cost --simulate` and tests.

The cluster is named `qhub-<project_name>`; its node groups are the config's, with the node shapes of
localcluster.SIMULATED_GROUPS for the standard names (4 CPU / 16 GiB otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from qhubctl import localcluster
from qhubctl.config.model import QHubConfig
from qhubctl.providers.base import Action, GroupSpec, Plan, Provider, diff_groups

_SHAPES = {g.name: g for g in localcluster.SIMULATED_GROUPS}


def local_groups(cfg: QHubConfig,
                 shapes: Mapping[str, tuple[str, str]] | None = None) -> list[localcluster.SimulatedGroup]:
    """The config's node groups as simulated groups (same names, min/max, GPU count); each node's (cpu, memory)
    from `shapes` where it names the group, else the standard shape."""
    groups: list[localcluster.SimulatedGroup] = []
    for name, group in cfg.node_groups.items():
        standard = _SHAPES.get(name, localcluster.SimulatedGroup(name, 0, 1))
        cpu, memory = (shapes or {}).get(name, (standard.cpu, standard.memory))
        gpus = group.gpu.count if group.gpu else 0
        groups.append(localcluster.SimulatedGroup(
            name=name, min_nodes=group.min_nodes, max_nodes=group.max_nodes, cpu=cpu, memory=memory, gpus=gpus))
    return groups


def stop_cluster(name: str, log: Any = print) -> None:
    """Delete the cluster and its folders; localcluster.down waits until its autoscaler has exited, so a cluster
    created again under the same name (same ports) never gets a node from the old one."""
    localcluster.down(name, log=log)


def _spec(group: localcluster.SimulatedGroup) -> GroupSpec:
    return GroupSpec(group.name, None, group.min_nodes, group.max_nodes, gpu_count=group.gpus)


class Local(Provider):
    name = "local"

    @property
    def cluster_name(self) -> str:
        return f"qhub-{self.cfg.project_name}"

    def check_credentials(self) -> str:
        localcluster.check_tools()
        return f"local control plane binaries in {localcluster.bin_dir()}"

    def _running_groups(self) -> dict[str, GroupSpec]:
        path = localcluster.cluster_dir(self.cluster_name) / "nodegroups.json"
        if not path.exists():
            return {}
        return {g["name"]: _spec(localcluster.SimulatedGroup(**g)) for g in json.loads(path.read_text())}

    def plan(self) -> Plan:
        plan = Plan(self.name, self.cluster_name)
        wanted = local_groups(self.cfg)
        if not localcluster.is_running(self.cluster_name):
            detail = ", ".join(f"{g.name} {g.min_nodes}..{g.max_nodes}" for g in wanted)
            plan.actions.append(Action("create", "local-cluster", self.cluster_name, detail=detail))
            return plan
        plan.actions += diff_groups([_spec(g) for g in wanted], self._running_groups(),
                                    compare=("min_nodes", "max_nodes", "gpu_count"), replace_fields=())
        return plan

    def apply(self, plan: Plan) -> None:
        if not plan.actions:
            return
        cluster = localcluster.up(self.cluster_name, local_groups(self.cfg), log=self.log,
                                  with_real_node=self.cfg.cluster.real_node)
        for action in plan.of("nodegroup"):
            if action.op == "delete":  # nodes of a removed group go with it
                cluster.kubectl("delete", "nodes", "-l", f"{localcluster.NODE_GROUP_LABEL}={action.name}",
                                "--ignore-not-found")

    def destroy_plan(self) -> Plan:
        """The cluster while kwokctl knows it, and its folder under $QHUB_CACHE/clusters while that exists (also
        when an earlier stop left it behind)."""
        plan = Plan(self.name, self.cluster_name)
        if localcluster.is_running(self.cluster_name) or localcluster.kwok_dir(self.cluster_name).exists():
            plan.actions.append(Action("delete", "local-cluster", self.cluster_name))
        work = localcluster.cluster_dir(self.cluster_name)
        if work.exists():
            plan.actions.append(Action("delete", "local-files", str(work)))
        return plan

    def destroy(self, plan: Plan) -> None:
        if plan.actions:
            stop_cluster(self.cluster_name, log=self.log)

    def kubeconfig(self) -> dict[str, Any]:
        path = localcluster.cluster_dir(self.cluster_name) / "kubeconfig"
        return yaml.safe_load(path.read_text())
