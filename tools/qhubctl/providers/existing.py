"""A cluster QHub does not manage, reached through a kubeconfig context. Nothing is created or destroyed: the plan
checks that the nodes the config's node groups select exist, and says what is missing and how to fix it."""

from __future__ import annotations

import os
from typing import Any

import yaml

from qhubctl import kube
from qhubctl import nodegroups as ng
from qhubctl.errors import ClusterError, UserError
from qhubctl.providers.base import Plan, Provider


def missing_labels(placements: dict[str, ng.GroupPlacement], minimums: dict[str, int],
                   nodes: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """(problems, notes) for the node groups of a config against the nodes' labels. A group with min_nodes > 0
    that matches no node is a problem; one with min 0 is a note (it may be scaled to zero right now)."""
    problems: list[str] = []
    notes: list[str] = []
    for name, place in placements.items():
        selector = place.node_selector
        matching = [n for n in nodes if all(n.get(k) == v for k, v in selector.items())]
        if matching:
            continue
        wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        closest = _closest(selector, nodes)
        text = f"node group {name}: no node has the labels {wanted}"
        if closest:
            text += f" ({closest})"
        if minimums.get(name, 0) > 0:
            problems.append(text)
        else:
            notes.append(text + " - fine if the group is scaled to zero now")
    return problems, notes


def _closest(selector: dict[str, str], nodes: list[dict[str, str]]) -> str:
    for key, value in selector.items():
        values = sorted({n[key] for n in nodes if key in n})
        if values:
            return f"{key} is set on some nodes, to {', '.join(values)}, not {value}"
    return f"no node has the label key {', '.join(selector)}" if nodes else "the cluster has no nodes"


class Existing(Provider):
    name = "existing"

    def _target(self) -> tuple[str | None, str | None]:
        return os.environ.get("KUBECONFIG"), self.cfg.cluster.kube_context

    @property
    def cluster_name(self) -> str:
        return self.cfg.cluster.kube_context or "current-context"

    def _api(self) -> Any:
        core_api = kube.kubernetes().client.CoreV1Api
        path, context = self._target()
        try:
            return core_api(kube.api_client(path, context))
        except Exception as exc:  # kubeconfig missing, context unknown
            raise UserError(f"cannot use the kubeconfig context {context or '(current)'}: {exc}",
                            hint="set cluster.kube_context or KUBECONFIG") from None

    def _node_labels(self) -> list[dict[str, str]]:
        try:
            return [dict(n.metadata.labels or {}) for n in self._api().list_node().items]
        except UserError:
            raise
        except Exception as exc:
            raise ClusterError(f"cannot list the cluster's nodes: {exc}",
                               hint="the identity needs `list nodes` (a ClusterRole)") from None

    def check_credentials(self) -> str:
        nodes = self._node_labels()
        return f"kubeconfig context {self.cluster_name}: {len(nodes)} node(s)"

    def plan(self) -> Plan:
        minimums = {n: g.min_nodes for n, g in self.cfg.node_groups.items()}
        problems, notes = missing_labels(self.cfg.placements(), minimums, self._node_labels())
        for note in notes:
            self.log(f"note: {note}")
        if problems:
            raise UserError("the cluster lacks nodes the config expects:\n  - " + "\n  - ".join(problems),
                            hint="label your nodes (kubectl label node NAME KEY=VALUE) or set node_groups.<name>."
                                 "node_selector to the labels they carry")
        return Plan(self.name, self.cluster_name)

    def apply(self, plan: Plan) -> None:
        """Nothing to create: an existing cluster is the user's."""

    def destroy_plan(self) -> Plan:
        return Plan(self.name, self.cluster_name)

    def destroy(self, plan: Plan) -> None:
        """qhubctl never deletes a cluster it did not create."""

    def kubeconfig(self) -> dict[str, Any]:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        data = yaml.safe_load(open(path).read())
        if self.cfg.cluster.kube_context:
            data["current-context"] = self.cfg.cluster.kube_context
        return data
