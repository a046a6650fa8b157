"""Google GKE through google-cloud-container (ClusterManagerClient).

Credentials are Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default
login`, the metadata server). The cluster is regional (`cluster.region`), named after the project, and carries the
resource labels `qhub-project` / `qhub-managed-by` (GCP label keys cannot hold `/` or `.`). Node pools are named
after the node groups, with autoscaling (total min/max across zones), Kubernetes labels and taints from
qhubctl.nodegroups, spot VMs and GPU accelerators with GKE-managed driver installation.

NetworkPolicies are enforced by GKE Dataplane V2 (`networkConfig.datapathProvider: ADVANCED_DATAPATH`, eBPF, set
at creation and fixed for the cluster's life). A cluster without Dataplane V2 and without network policy
enforcement (made by an older qhubctl) gets GKE's Calico enforcement turned on in place: the NetworkPolicy add-on,
then network policy on the cluster, which GKE rolls out by recreating every node pool's nodes.

Plan logic is pure (`plan_actions`, `pool_spec`, `pool_body`) over the API's JSON shapes, so it is tested without
Google; the SDK calls are checked against the container v1 discovery document.
"""

from __future__ import annotations

import json
from typing import Any

from qhubctl import nodegroups as ng
from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError, UserError
from qhubctl.providers.base import Action, GroupSpec, Log, Plan, Provider, desired_groups, diff_groups, wait_until

LABEL_PROJECT = "qhub-project"
LABEL_MANAGED = "qhub-managed-by"
EFFECT_TO_GKE = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
EFFECT_FROM_GKE = {v: k for k, v in EFFECT_TO_GKE.items()}
COMPARED = ("min_nodes", "max_nodes", "labels", "taints", "instance_type", "spot", "disk_size_gb", "gpu_count",
            "gpu_type")
DATAPLANE_V2 = "ADVANCED_DATAPATH"
NETPOL_KIND = "gke-network-policy"


def network_policy_enforced(cluster: dict[str, Any]) -> str | None:
    """What enforces NetworkPolicies on the observed cluster (REST JSON), or None."""
    if cluster.get("networkConfig", {}).get("datapathProvider") == DATAPLANE_V2:
        return "Dataplane V2"
    if cluster.get("networkPolicy", {}).get("enabled"):
        return "Calico"
    return None


def pool_body(spec: GroupSpec) -> dict[str, Any]:
    """A NodePool (REST JSON shape) for a node group."""
    config: dict[str, Any] = {
        "machineType": spec.instance_type,
        "diskSizeGb": spec.disk_size_gb,
        "labels": dict(spec.labels),
        "taints": [{"key": t.key, "value": t.value, "effect": EFFECT_TO_GKE[t.effect]}
                   for t in sorted(spec.taints, key=str)],
        "spot": spec.spot,
        "oauthScopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }
    if spec.gpu_count:
        config["accelerators"] = [{"acceleratorCount": str(spec.gpu_count), "acceleratorType": spec.gpu_type,
                                   "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}]
    return {
        "name": spec.name,
        "config": config,
        "initialNodeCount": spec.min_nodes,
        "autoscaling": {"enabled": True, "totalMinNodeCount": spec.min_nodes, "totalMaxNodeCount": spec.max_nodes,
                        "locationPolicy": "ANY" if spec.spot else "BALANCED"},
        "management": {"autoRepair": True, "autoUpgrade": True},
    }


def pool_spec(pool: dict[str, Any]) -> GroupSpec:
    """What GKE reports for a node pool, in neutral terms."""
    config = pool.get("config", {})
    scaling = pool.get("autoscaling", {})
    accel = (config.get("accelerators") or [{}])[0]
    return GroupSpec(
        name=pool["name"],
        instance_type=config.get("machineType"),
        min_nodes=int(scaling.get("totalMinNodeCount", scaling.get("minNodeCount", 0))),
        max_nodes=int(scaling.get("totalMaxNodeCount", scaling.get("maxNodeCount", 0))),
        spot=bool(config.get("spot") or config.get("preemptible")),
        disk_size_gb=int(config.get("diskSizeGb", 100)),
        labels=dict(config.get("labels") or {}),
        taints=frozenset(ng.Taint(t["key"], t.get("value", ""), EFFECT_FROM_GKE.get(t.get("effect", ""), "NoSchedule"))
                         for t in config.get("taints") or []),
        gpu_count=int(accel.get("acceleratorCount", 0) or 0),
        gpu_type=accel.get("acceleratorType"),
    )


def plan_actions(name: str, version: str, desired: list[GroupSpec], cluster: dict[str, Any] | None) -> list[Action]:
    """Pure: the actions from the observed Cluster JSON (None: absent) to the desired groups and version."""
    if cluster is None:
        detail = f"Kubernetes {version}, pools " + ", ".join(f"{g.name} {g.min_nodes}..{g.max_nodes}" for g in desired)
        return [Action("create", "gke-cluster", name, detail=detail)]
    actions: list[Action] = []
    have = str(cluster.get("currentMasterVersion", ""))
    have_minor = ".".join(have.split(".")[:2])
    if have_minor and have_minor != version:
        if int(have_minor.split(".")[1]) > int(version.split(".")[1]):
            raise UserError(f"cluster {name} runs Kubernetes {have_minor}; GKE cannot downgrade to {version}")
        actions.append(Action("update", "gke-cluster", name, {"version": (have_minor, version)}))
    if network_policy_enforced(cluster) is None:
        actions.append(Action("update", NETPOL_KIND, name, {"network policy": ("not enforced", "Calico")},
                              detail="GKE recreates the nodes of every node pool"))
    observed = {p["name"]: pool_spec(p) for p in cluster.get("nodePools", [])}
    return actions + diff_groups(desired, observed, kind="node-pool", compare=COMPARED)


def _labels(tags: dict[str, str]) -> dict[str, str]:
    """The user's tags as GCP labels (lower case; no '.' or '/' in keys)."""
    return {k.lower().replace(".", "-").replace("/", "_"): v.lower() for k, v in tags.items()}


class GCP(Provider):
    name = "gcp"

    def __init__(self, cfg: QHubConfig, log: Log = print, client: Any = None) -> None:
        super().__init__(cfg, log)
        self._client = client
        self.parent = f"projects/{cfg.cluster.project}/locations/{cfg.cluster.region}"
        self.path = f"{self.parent}/clusters/{self.cluster_name}"

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import container_v1

            self._client = container_v1.ClusterManagerClient()
        return self._client

    def _call(self, method: str, **request: Any) -> dict[str, Any]:
        """One API call; the proto reply as REST JSON. Google errors become readable messages."""
        from google.api_core import exceptions as gexc
        from google.protobuf.json_format import MessageToDict

        try:
            reply = getattr(self.client, method)(request=request)
        except gexc.NotFound:
            raise
        except gexc.Unauthenticated as exc:
            raise UserError(f"Google rejected the credentials: {exc.message}",
                            hint="run `gcloud auth application-default login` or set "
                                 "GOOGLE_APPLICATION_CREDENTIALS") from None
        except gexc.PermissionDenied as exc:
            raise UserError(f"missing GCP permission for {method}: {exc.message}",
                            hint="the identity needs roles/container.admin on the project") from None
        except gexc.ResourceExhausted as exc:
            raise UserError(f"GCP quota reached in {method}: {exc.message}",
                            hint="request a quota increase in the Cloud console (IAM & Admin > Quotas)") from None
        except gexc.GoogleAPICallError as exc:
            raise QHubError(f"GKE {method} failed: {exc.message}") from None
        return MessageToDict(reply._pb) if hasattr(reply, "_pb") else {}

    def _wait(self, operation: dict[str, Any]) -> None:
        name = f"{self.parent}/operations/{operation['name'].rsplit('/', 1)[-1]}"

        def done() -> bool:
            op = self._call("get_operation", name=name)
            if op.get("error"):
                raise QHubError(f"GKE operation {op['name']} failed: {op['error'].get('message', '')}")
            return op.get("status") == "DONE"

        wait_until(done, f"GKE operation {operation.get('operationType', '')}", timeout=3600, log=self.log)

    def observe(self) -> dict[str, Any] | None:
        from google.api_core import exceptions as gexc

        try:
            cluster = self._call("get_cluster", name=self.path)
        except gexc.NotFound:
            return None
        if cluster.get("resourceLabels", {}).get(LABEL_PROJECT) != self.cfg.project_name:
            raise UserError(f"a GKE cluster named {self.cluster_name} exists but qhubctl did not create it")
        if cluster.get("status") == "STOPPING":
            return None
        return cluster

    def check_credentials(self) -> str:
        import google.auth
        from google.auth import exceptions as gauth

        if self._client is not None:
            return f"project {self.cfg.cluster.project} (client given)"
        try:
            _, project = google.auth.default()
        except gauth.DefaultCredentialsError as exc:
            raise UserError(f"no Google credentials: {exc}",
                            hint="run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") \
                from None
        return f"Application Default Credentials (default project {project}); cluster in {self.parent}"

    def plan(self) -> Plan:
        actions = plan_actions(self.cluster_name, self.cfg.cluster.kubernetes_version, desired_groups(self.cfg),
                               self.observe())
        return Plan(self.name, self.cluster_name, actions)

    def cluster_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.cluster_name,
            "initialClusterVersion": self.cfg.cluster.kubernetes_version,
            "resourceLabels": {**_labels(self.cfg.cluster.tags), LABEL_PROJECT: self.cfg.project_name,
                               LABEL_MANAGED: "qhubctl"},
            "nodePools": [pool_body(g) for g in desired_groups(self.cfg)],
            "workloadIdentityConfig": {"workloadPool": f"{self.cfg.cluster.project}.svc.id.goog"},
            "ipAllocationPolicy": {"useIpAliases": True},
            # Dataplane V2 enforces NetworkPolicies (and needs VPC-native IP aliases, above)
            "networkConfig": {"datapathProvider": DATAPLANE_V2},
        }
        if self.cfg.cluster.release_channel != "UNSPECIFIED":
            body["releaseChannel"] = {"channel": self.cfg.cluster.release_channel}
        return body

    def apply(self, plan: Plan) -> None:
        from google.cloud import container_v1

        specs = {g.name: g for g in desired_groups(self.cfg)}
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "gke-cluster" and action.op == "create":
                cluster = container_v1.Cluster.from_json(json.dumps(self.cluster_body()))
                self._wait(self._call("create_cluster", parent=self.parent, cluster=cluster))
            elif action.kind == "gke-cluster":
                self._wait(self._call("update_master", name=self.path,
                                      master_version=self.cfg.cluster.kubernetes_version))
            elif action.kind == NETPOL_KIND:
                self._enable_network_policy()
            else:
                self._apply_pool(action, specs.get(action.name))

    def _enable_network_policy(self) -> None:
        """GKE's Calico enforcement on a cluster without Dataplane V2: the add-on first, then the policy."""
        from google.cloud import container_v1

        addons = container_v1.AddonsConfig.from_json(json.dumps({"networkPolicyConfig": {"disabled": False}}))
        self._wait(self._call("set_addons_config", name=self.path, addons_config=addons))
        policy = container_v1.NetworkPolicy.from_json(json.dumps({"enabled": True, "provider": "CALICO"}))
        self._wait(self._call("set_network_policy", name=self.path, network_policy=policy))

    def _apply_pool(self, action: Action, spec: GroupSpec | None) -> None:
        from google.cloud import container_v1

        pool_path = f"{self.path}/nodePools/{action.name}"
        if action.op in ("delete", "replace"):
            self._wait(self._call("delete_node_pool", name=pool_path))
        if action.op in ("create", "replace"):
            assert spec is not None
            self._wait(self._call("create_node_pool", parent=self.path,
                                  node_pool=container_v1.NodePool.from_json(json.dumps(pool_body(spec)))))
        if action.op == "update":
            assert spec is not None
            body = pool_body(spec)
            if {"min_nodes", "max_nodes"} & set(action.changes):
                scaling = container_v1.NodePoolAutoscaling.from_json(json.dumps(body["autoscaling"]))
                self._wait(self._call("set_node_pool_autoscaling", name=pool_path, autoscaling=scaling))
            if {"labels", "taints"} & set(action.changes):
                current = self._call("get_node_pool", name=pool_path)  # keep its version and image
                self._wait(self._call(
                    "update_node_pool", name=pool_path, node_version=current.get("version", "-"),
                    image_type=current.get("config", {}).get("imageType", "COS_CONTAINERD"),
                    labels=container_v1.NodeLabels(labels=body["config"]["labels"]),
                    taints=container_v1.NodeTaints.from_json(json.dumps({"taints": body["config"]["taints"]}))))

    def destroy_plan(self) -> Plan:
        cluster = self.observe()
        plan = Plan(self.name, self.cluster_name)
        if cluster:
            plan.actions.append(Action("delete", "gke-cluster", self.cluster_name,
                                       detail="after its LoadBalancer Services and volumes are released"))
        return plan

    def destroy(self, plan: Plan) -> None:
        from google.api_core import exceptions as gexc

        from qhubctl.providers.release import release_cloud_resources

        if not plan.actions:
            return
        release_cloud_resources(self.kubeconfig(), self.log)
        try:
            self._wait(self._call("delete_cluster", name=self.path))
        except gexc.NotFound:
            return

    def kubeconfig(self) -> dict[str, Any]:
        cluster = self._call("get_cluster", name=self.path)
        name = f"gke_{self.cfg.cluster.project}_{self.cfg.cluster.region}_{self.cluster_name}"
        from qhubctl.providers.cloud_tokens import exec_user

        return {
            "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [{"name": name, "cluster": {
                "server": f"https://{cluster['endpoint']}",
                "certificate-authority-data": cluster.get("masterAuth", {}).get("clusterCaCertificate", "")}}],
            "users": [{"name": name, "user": exec_user("gke-token")}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        }
