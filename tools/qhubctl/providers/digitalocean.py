"""DigitalOcean Kubernetes (DOKS) through pydo.

The API token is DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN, doctl's name). The cluster is named after the
project and tagged `qhub-project:<project>`; node pools are named after the node groups with autoscaling, Kubernetes
labels and taints. Destroy uses DOKS's "destroy with associated resources", which also deletes the load balancers
and volumes the cluster created (they are listed first). The kubeconfig comes from the API and holds a token.

NetworkPolicies: every DOKS cluster runs Cilium as its network plugin, which enforces them; the cluster API has no
setting to turn it on or off (tests/providers/test_digitalocean.py checks the API's request template for one), so
there is nothing to set here. `qhubctl check` proves it on the running cluster.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from qhubctl import nodegroups as ng
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError, UserError
from qhubctl.providers.base import Action, GroupSpec, Log, Plan, Provider, desired_groups, diff_groups, wait_until

COMPARED = ("min_nodes", "max_nodes", "labels", "taints", "instance_type")


def tag(project: str) -> str:
    return f"qhub-project:{project}"


def pool_body(spec: GroupSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "size": spec.instance_type, "count": max(spec.min_nodes, 1),
        "auto_scale": True, "min_nodes": spec.min_nodes, "max_nodes": spec.max_nodes,
        "labels": dict(spec.labels),
        "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in sorted(spec.taints, key=str)],
    }


def pool_spec(pool: dict[str, Any]) -> GroupSpec:
    return GroupSpec(
        name=pool["name"], instance_type=pool.get("size"),
        min_nodes=int(pool.get("min_nodes", 0) or 0), max_nodes=int(pool.get("max_nodes", 0) or 0),
        labels=dict(pool.get("labels") or {}),
        taints=frozenset(ng.Taint(t["key"], t.get("value", ""), t["effect"]) for t in pool.get("taints") or []),
    )


def plan_actions(name: str, version: str, desired: list[GroupSpec], cluster: dict[str, Any] | None) -> list[Action]:
    """Pure: actions from the observed cluster JSON (None: absent) to the config."""
    if cluster is None:
        return [Action("create", "doks-cluster", name, detail=f"Kubernetes {version}, pools "
                       + ", ".join(f"{g.name} {g.min_nodes}..{g.max_nodes}" for g in desired))]
    actions: list[Action] = []
    have = ".".join(str(cluster.get("version", "")).split(".")[:2])
    if have and have != version:
        if int(have.split(".")[1]) > int(version.split(".")[1]):
            raise UserError(f"cluster {name} runs Kubernetes {have}; DOKS cannot downgrade to {version}")
        actions.append(Action("update", "doks-cluster", name, {"version": (have, version)}))
    observed = {p["name"]: pool_spec(p) for p in cluster.get("node_pools", [])}
    return actions + diff_groups(desired, observed, kind="node-pool", compare=COMPARED,
                                 replace_fields=("instance_type",))


class DigitalOcean(Provider):
    name = "digitalocean"

    def __init__(self, cfg: QHubConfig, log: Log = print, client: Any = None) -> None:
        super().__init__(cfg, log)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import pydo

            token = os.environ.get("DIGITALOCEAN_TOKEN") or os.environ.get("DIGITALOCEAN_ACCESS_TOKEN")
            if not token:
                raise UserError("no DigitalOcean API token", hint="set DIGITALOCEAN_TOKEN (a read/write API token)")
            self._client = pydo.Client(token=token)
        return self._client

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core import exceptions as aexc  # pydo is generated on azure-core

        try:
            return fn(*args, **kwargs)
        except aexc.ResourceNotFoundError:
            raise
        except aexc.ClientAuthenticationError as exc:
            raise UserError(f"DigitalOcean rejected the token: {exc.message}",
                            hint="create a read/write token and set DIGITALOCEAN_TOKEN") from None
        except aexc.HttpResponseError as exc:
            if exc.status_code == 403:
                raise UserError(f"missing DigitalOcean permission for {what}: {exc.message}",
                                hint="the token needs write scope (or the kubernetes:* scopes)") from None
            if exc.status_code == 422 and "limit" in (exc.message or "").lower():
                raise UserError(f"DigitalOcean limit reached in {what}: {exc.message}",
                                hint="raise the droplet limit of the team (Settings > Team)") from None
            raise QHubError(f"DigitalOcean {what} failed: {exc.message}") from None

    def observe(self) -> dict[str, Any] | None:
        found = self._run("list clusters", self.client.kubernetes.list_clusters)
        for cluster in found.get("kubernetes_clusters", []):
            if cluster["name"] == self.cluster_name:
                if tag(self.cfg.project_name) not in cluster.get("tags", []):
                    raise UserError(f"a DOKS cluster {self.cluster_name} exists but qhubctl did not create it")
                return cluster
        return None

    def check_credentials(self) -> str:
        account = self._run("get account", self.client.account.get)
        return f"DigitalOcean account {account.get('account', {}).get('email', '?')}"

    def plan(self) -> Plan:
        return Plan(self.name, self.cluster_name, plan_actions(
            self.cluster_name, self.cfg.cluster.kubernetes_version, desired_groups(self.cfg), self.observe()))

    def version_slug(self) -> str:
        options = self._run("list options", self.client.kubernetes.list_options)
        want = self.cfg.cluster.kubernetes_version
        slugs = [v["slug"] for v in options.get("options", {}).get("versions", [])
                 if str(v.get("kubernetes_version", "")).startswith(want + ".")]
        if not slugs:
            raise UserError(f"DOKS does not offer Kubernetes {want} now",
                            hint="set cluster.kubernetes_version to a version DOKS lists")
        return slugs[0]

    def cluster_body(self) -> dict[str, Any]:
        return {"name": self.cluster_name, "region": self.cfg.cluster.region, "version": self.version_slug(),
                "tags": [tag(self.cfg.project_name), "qhub"], "auto_upgrade": False,
                "node_pools": [pool_body(g) for g in desired_groups(self.cfg)]}

    def _wait_running(self, cluster_id: str) -> None:
        def running() -> bool:
            state = self._run("get cluster", self.client.kubernetes.get_cluster, cluster_id)
            return state["kubernetes_cluster"]["status"]["state"] == "running"

        wait_until(running, f"DOKS cluster {self.cluster_name}", timeout=1800, log=self.log)

    def apply(self, plan: Plan) -> None:
        specs = {g.name: g for g in desired_groups(self.cfg)}
        k8s = self.client.kubernetes
        cluster = None
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "doks-cluster" and action.op == "create":
                made = self._run("create cluster", k8s.create_cluster, body=self.cluster_body())
                self._wait_running(made["kubernetes_cluster"]["id"])
                continue
            cluster = cluster or self.observe()
            assert cluster is not None
            if action.kind == "doks-cluster":
                self._run("upgrade cluster", k8s.upgrade_cluster, cluster["id"], body={"version": self.version_slug()})
                continue
            pools = {p["name"]: p for p in cluster.get("node_pools", [])}
            if action.op in ("delete", "replace"):
                self._run("delete pool", k8s.delete_node_pool, cluster["id"], pools[action.name]["id"])
            if action.op in ("create", "replace"):
                self._run("add pool", k8s.add_node_pool, cluster["id"], body=pool_body(specs[action.name]))
            if action.op == "update":
                body = pool_body(specs[action.name])
                body["count"] = pools[action.name].get("count", body["count"])
                del body["size"]
                self._run("update pool", k8s.update_node_pool, cluster["id"], pools[action.name]["id"], body=body)

    def destroy_plan(self) -> Plan:
        plan = Plan(self.name, self.cluster_name)
        cluster = self.observe()
        if cluster is None:
            return plan
        extra = self._run("list associated resources", self.client.kubernetes.list_associated_resources,
                          cluster["id"])
        for kind in ("load_balancers", "volumes", "volume_snapshots"):
            for item in extra.get(kind, []):
                plan.actions.append(Action("delete", kind.rstrip("s").replace("_", "-"), item.get("name", item["id"]),
                                           detail=f"created by the cluster: {item['id']}"))
        plan.actions.append(Action("delete", "doks-cluster", self.cluster_name, detail=cluster["id"]))
        return plan

    def destroy(self, plan: Plan) -> None:
        cluster = self.observe()
        if cluster is None:
            return
        self.log(f"  - doks-cluster {self.cluster_name} with its load balancers and volumes")
        self._run("destroy cluster", self.client.kubernetes.destroy_associated_resources_dangerous, cluster["id"])
        wait_until(lambda: self.observe() is None, f"DOKS cluster {self.cluster_name} to be deleted",
                   timeout=1800, log=self.log)

    def kubeconfig(self) -> dict[str, Any]:
        cluster = self.observe()
        if cluster is None:
            raise UserError(f"cluster {self.cluster_name} does not exist", hint="run `qhubctl cluster create`")
        from azure.core.rest import HttpRequest

        # GET /v2/kubernetes/clusters/{id}/kubeconfig answers YAML, which pydo's generated method does not return
        response = self._run("get kubeconfig", self.client.send_request,
                             HttpRequest("GET", f"/v2/kubernetes/clusters/{cluster['id']}/kubeconfig"), stream=True)
        response.read()
        self._run("get kubeconfig", response.raise_for_status)
        return yaml.safe_load(response.text())  # holds a bearer token valid for a week; no doctl needed
