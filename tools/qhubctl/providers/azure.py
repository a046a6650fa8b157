"""Azure AKS through azure-mgmt-containerservice, in a resource group made with azure-mgmt-resource.

Credentials: azure-identity's DefaultAzureCredential (AZURE_CLIENT_ID/SECRET/TENANT_ID, managed identity, workload
identity, `az login`); the subscription is AZURE_SUBSCRIPTION_ID. The resource group (`cluster.resource_group`,
default `<project>-rg`) and the cluster carry the tags `qhub-project`/`qhub-managed-by` (Azure tag names cannot hold
`/`). Agent pools are named after the node groups (letters and digits, at most 12); `general` is the System pool.

NetworkPolicies are enforced by Cilium: new clusters use Azure CNI Overlay with the Cilium dataplane and network
policy engine (fixed at creation). A cluster without a network policy engine (made by an older qhubctl) gets
Calico installed in place, which AKS supports on any network plugin of an existing cluster.

Destroy deletes the managed cluster, which deletes its node resource group and with it the load balancers, public
IPs and disks Kubernetes created; then the resource group, when qhubctl created it (tagged).
"""

from __future__ import annotations

import os
import re
from typing import Any

from qhubctl import nodegroups as ng
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError, UserError
from qhubctl.providers.base import Action, GroupSpec, Log, Plan, Provider, desired_groups, diff_groups

TAG_PROJECT = "qhub-project"
TAG_MANAGED = "qhub-managed-by"
COMPARED = ("min_nodes", "max_nodes", "labels", "taints", "instance_type", "spot", "disk_size_gb")
ENFORCING = ("cilium", "calico", "azure")  # networkProfile.networkPolicy values with a policy engine
NETPOL_KIND = "aks-network-policy"
# New clusters: Azure CNI Overlay, Cilium dataplane and policy engine.
NETWORK_PROFILE = {"networkPlugin": "azure", "networkPluginMode": "overlay", "networkDataplane": "cilium",
                   "networkPolicy": "cilium"}


def network_policy_actions(name: str, cluster: dict[str, Any]) -> list[Action]:
    """Pure: Calico for an observed cluster (REST JSON properties) that has no network policy engine."""
    have = str((cluster.get("networkProfile") or {}).get("networkPolicy") or "none").lower()
    if have in ENFORCING:
        return []
    return [Action("update", NETPOL_KIND, name, {"networkPolicy": (have, "calico")},
                   detail="AKS installs Calico on the running cluster")]


def pool_name(group: str) -> str:
    name = re.sub(r"[^a-z0-9]", "", group.lower())[:12]
    if not name or not name[0].isalpha():
        raise UserError(f"node group {group!r} cannot be an AKS agent pool name (letters and digits, max 12)")
    return name


def pool_body(spec: GroupSpec, vm_size: str | None = None) -> dict[str, Any]:
    """An AgentPool (REST JSON properties) for a node group."""
    body: dict[str, Any] = {
        "vmSize": spec.instance_type or vm_size,
        "osDiskSizeGB": spec.disk_size_gb,
        "osType": "Linux",
        "type": "VirtualMachineScaleSets",
        "mode": "System" if spec.name == ng.GENERAL else "User",
        "enableAutoScaling": True,
        "minCount": spec.min_nodes,
        "maxCount": spec.max_nodes,
        "count": spec.min_nodes,
        "nodeLabels": dict(spec.labels),
        "nodeTaints": sorted(str(t) for t in spec.taints),
    }
    if spec.spot:
        body.update({"scaleSetPriority": "Spot", "scaleSetEvictionPolicy": "Delete", "spotMaxPrice": -1})
    return body


def pool_spec(name: str, pool: dict[str, Any]) -> GroupSpec:
    taints = []
    for text in pool.get("nodeTaints") or pool.get("node_taints") or []:
        keyval, _, effect = text.partition(":")
        key, _, value = keyval.partition("=")
        taints.append(ng.Taint(key, value, effect))  # type: ignore[arg-type]

    def get(camel: str, snake: str, default: Any = None) -> Any:
        return pool.get(camel, pool.get(snake, default))

    return GroupSpec(
        name=name,
        instance_type=get("vmSize", "vm_size"),
        min_nodes=int(get("minCount", "min_count", 0) or 0),
        max_nodes=int(get("maxCount", "max_count", 0) or 0),
        spot=get("scaleSetPriority", "scale_set_priority") == "Spot",
        disk_size_gb=int(get("osDiskSizeGB", "os_disk_size_gb", 128) or 128),
        labels=dict(get("nodeLabels", "node_labels", {}) or {}),
        taints=frozenset(taints),
    )


def plan_actions(name: str, version: str, desired: list[GroupSpec], group_exists: bool,
                 cluster: dict[str, Any] | None, pools: dict[str, dict[str, Any]]) -> list[Action]:
    """Pure: actions from the observed resource group, ManagedCluster and agent pools (REST JSON) to the config."""
    actions: list[Action] = []
    if not group_exists:
        actions.append(Action("create", "resource-group", f"{name}-rg"))
    if cluster is None:
        actions.append(Action("create", "aks-cluster", name, detail=f"Kubernetes {version}, system pool general"))
        return actions + [Action("create", "agent-pool", pool_name(g.name)) for g in desired if g.name != ng.GENERAL]
    have = ".".join(str(cluster.get("kubernetesVersion", "")).split(".")[:2])
    if have and have != version:
        if int(have.split(".")[1]) > int(version.split(".")[1]):
            raise UserError(f"cluster {name} runs Kubernetes {have}; AKS cannot downgrade to {version}")
        actions.append(Action("update", "aks-cluster", name, {"version": (have, version)}))
    actions += network_policy_actions(name, cluster)
    by_pool = {pool_name(g.name): g for g in desired}
    renamed = [GroupSpec(**{**g.__dict__, "name": n}) for n, g in by_pool.items()]
    observed = {n: pool_spec(n, p) for n, p in pools.items()}
    return actions + diff_groups(renamed, observed, kind="agent-pool", compare=COMPARED)


class Azure(Provider):
    name = "azure"

    def __init__(self, cfg: QHubConfig, log: Log = print, credential: Any = None,
                 subscription_id: str | None = None, client_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, log)
        self.subscription_id = subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID", "")
        self.group = cfg.cluster.resource_group or f"{cfg.project_name}-rg"
        self._credential = credential
        self._client_kwargs = dict(client_kwargs or {})  # e.g. base_url for another cloud or a test endpoint
        self._aks: Any = None
        self._rm: Any = None
        self.tags = {**cfg.cluster.tags, TAG_PROJECT: cfg.project_name, TAG_MANAGED: "qhubctl"}

    def _clients(self) -> tuple[Any, Any]:
        if self._aks is None:
            from azure.mgmt.containerservice import ContainerServiceClient
            try:  # azure-mgmt-resource 26 moved the client into its resources subpackage
                from azure.mgmt.resource.resources import ResourceManagementClient
            except ImportError:
                from azure.mgmt.resource import ResourceManagementClient

            if not self.subscription_id:
                raise UserError("no Azure subscription", hint="set AZURE_SUBSCRIPTION_ID")
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            self._aks = ContainerServiceClient(self._credential, self.subscription_id, **self._client_kwargs)
            self._rm = ResourceManagementClient(self._credential, self.subscription_id, **self._client_kwargs)
        return self._aks, self._rm

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core import exceptions as aexc

        try:
            return fn(*args, **kwargs)
        except aexc.ResourceNotFoundError:
            raise
        except aexc.ClientAuthenticationError as exc:
            raise UserError(f"Azure rejected the credentials: {exc.message}",
                            hint="set AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID or run `az login`") from None
        except aexc.HttpResponseError as exc:
            code = getattr(exc.error, "code", "") or ""
            if exc.status_code == 403 or code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
                raise UserError(f"missing Azure permission for {what}: {exc.message}",
                                hint="the identity needs Contributor on the subscription or resource group") from None
            if "Quota" in code or "quota" in (exc.message or ""):
                raise UserError(f"Azure quota reached in {what}: {exc.message}",
                                hint="request more vCPU quota for the VM family in the region") from None
            raise QHubError(f"Azure {what} failed: {exc.message}") from None

    def observe(self) -> tuple[bool, dict[str, Any] | None, dict[str, dict[str, Any]]]:
        from azure.core import exceptions as aexc

        aks, rm = self._clients()
        exists = bool(self._run("check resource group", rm.resource_groups.check_existence, self.group))
        if not exists:
            return False, None, {}
        try:
            cluster = self._run("get cluster", aks.managed_clusters.get, self.group, self.cluster_name)
        except aexc.ResourceNotFoundError:
            return True, None, {}
        if (cluster.tags or {}).get(TAG_PROJECT) != self.cfg.project_name:
            raise UserError(f"an AKS cluster {self.cluster_name} exists in {self.group} but qhubctl did not create it")
        pools = {p.name: _json(p) for p in self._run("list pools", aks.agent_pools.list, self.group,
                                                     self.cluster_name)}
        return True, _json(cluster), {n: p.get("properties", p) for n, p in pools.items()}

    def check_credentials(self) -> str:
        from azure.core import exceptions as aexc

        self._clients()
        try:
            self._credential.get_token("https://management.azure.com/.default")
        except aexc.ClientAuthenticationError as exc:
            raise UserError(f"no usable Azure credentials: {exc.message}",
                            hint="set AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID or run `az login`") from None
        return f"subscription {self.subscription_id}, resource group {self.group} in {self.cfg.cluster.region}"

    def plan(self) -> Plan:
        exists, cluster, pools = self.observe()
        props = (cluster or {}).get("properties", cluster) if cluster else None
        actions = plan_actions(self.cluster_name, self.cfg.cluster.kubernetes_version, desired_groups(self.cfg),
                               exists, props, pools)
        return Plan(self.name, self.cluster_name, actions)

    def cluster_model(self) -> Any:
        from azure.mgmt.containerservice import models as m

        specs = {g.name: g for g in desired_groups(self.cfg)}
        general = pool_body(specs[ng.GENERAL])
        return m.ManagedCluster(
            location=self.cfg.cluster.region, tags=self.tags, kubernetes_version=self.cfg.cluster.kubernetes_version,
            dns_prefix=self.cluster_name, identity=m.ManagedClusterIdentity(type="SystemAssigned"),
            agent_pool_profiles=[m.ManagedClusterAgentPoolProfile(name="general", **_snake(general))],
            oidc_issuer_profile=m.ManagedClusterOIDCIssuerProfile(enabled=True),
            network_profile=m.ContainerServiceNetworkProfile(**_snake(NETWORK_PROFILE)),
        )

    def apply(self, plan: Plan) -> None:
        from azure.mgmt.containerservice import models as m

        aks, rm = self._clients()
        specs = {pool_name(g.name): g for g in desired_groups(self.cfg)}
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "resource-group":
                self._run("create resource group", rm.resource_groups.create_or_update, self.group,
                          {"location": self.cfg.cluster.region, "tags": self.tags})
            elif action.kind == NETPOL_KIND:
                cluster = self._run("get cluster", aks.managed_clusters.get, self.group, self.cluster_name)
                cluster.network_profile.network_policy = "calico"
                self._run("install Calico", aks.managed_clusters.begin_create_or_update, self.group,
                          self.cluster_name, cluster).result()
            elif action.kind == "aks-cluster":
                model = self.cluster_model()
                if action.op == "update":  # the running cluster as it is (network profile, pools), new version
                    model = self._run("get cluster", aks.managed_clusters.get, self.group, self.cluster_name)
                    model.kubernetes_version = self.cfg.cluster.kubernetes_version
                self._run("create cluster", aks.managed_clusters.begin_create_or_update, self.group,
                          self.cluster_name, model).result()
            elif action.op == "delete":
                self._run("delete pool", aks.agent_pools.begin_delete, self.group, self.cluster_name,
                          action.name).result()
            else:
                if action.op == "replace":
                    self._run("delete pool", aks.agent_pools.begin_delete, self.group, self.cluster_name,
                              action.name).result()
                body = m.AgentPool(**_snake(pool_body(specs[action.name])))
                self._run("write pool", aks.agent_pools.begin_create_or_update, self.group, self.cluster_name,
                          action.name, body).result()

    def destroy_plan(self) -> Plan:
        exists, cluster, _ = self.observe()
        plan = Plan(self.name, self.cluster_name)
        if cluster:
            node_group = (cluster.get("properties", cluster) or {}).get("nodeResourceGroup", "")
            plan.actions.append(Action("delete", "aks-cluster", self.cluster_name,
                                       detail=f"with its node resource group {node_group}: load balancers, IPs, disks"))
        if exists:
            _, rm = self._clients()
            group = self._run("get resource group", rm.resource_groups.get, self.group)
            if (group.tags or {}).get(TAG_PROJECT) == self.cfg.project_name:
                plan.actions.append(Action("delete", "resource-group", self.group))
        return plan

    def destroy(self, plan: Plan) -> None:
        aks, rm = self._clients()
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "aks-cluster":
                self._run("delete cluster", aks.managed_clusters.begin_delete, self.group, self.cluster_name).result()
            else:
                self._run("delete resource group", rm.resource_groups.begin_delete, self.group).result()

    def kubeconfig(self) -> dict[str, Any]:
        import yaml

        aks, _ = self._clients()
        creds = self._run("get credentials", aks.managed_clusters.list_cluster_user_credentials, self.group,
                          self.cluster_name)
        return yaml.safe_load(creds.kubeconfigs[0].value.decode())


def _json(model: Any) -> dict[str, Any]:
    """An SDK model as REST JSON (camelCase keys), for both model generations of the Azure SDKs."""
    return dict(model.as_dict()) if not hasattr(model, "serialize") else dict(model.serialize(keep_readonly=True))


def _snake(body: dict[str, Any]) -> dict[str, Any]:
    """REST property names (camelCase) as SDK model keyword names (snake_case)."""
    special = {"osDiskSizeGB": "os_disk_size_gb"}
    return {special.get(k, re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower()): v for k, v in body.items()}
