"""The dask-gateway subchart as `helm template` renders it, and its rendered dask_gateway_config.py loaded by the
real dask-gateway-server classes (cluster options, resolved cluster config, the pods the controller would make)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User
from dask_gateway_server.utils import FrozenAttrDict
from traitlets.config import Config, PyFileConfigLoader

from qhubctl.config import parse_config
from qhubctl.errors import CommandError
from qhubctl.proc import run
from qhubctl.scaffold import config_text
from qhubctl.values import IMAGE_ENVIRONMENT, chart_values

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
CRDS = CHART / "charts" / "dask-gateway" / "crds"
BASE = ["--set", "nfs.service.clusterIP=10.96.0.20"]
GIB = 2**30
DASK_NS = "qhub-dask"  # the clusters' namespace: global.daskClusters.namespace, by default "<release ns>-dask"
ACCOUNTS = ("qhub-dask-gateway-api", "qhub-dask-gateway-controller", "qhub-dask-gateway-proxy")


def template(*args: str) -> list[dict[str, Any]]:
    out = run(["helm", "template", "qhub", str(CHART), "--namespace", "qhub", *BASE, *args], timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def namespace_of(doc: dict[str, Any]) -> str:
    """Where `helm install -n qhub` puts the object (no namespace in the render: the release's)."""
    return str(doc["metadata"].get("namespace", "qhub"))


def find(docs: list[dict[str, Any]], kind: str, name: str, namespace: str = "qhub") -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name and namespace_of(d) == namespace]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} rendered"
    return hits[0]


def gateway_config(docs: list[dict[str, Any]], dest: Path) -> Config:
    """Write the rendered ConfigMap's files and load dask_gateway_config.py the way dask-gateway-server does."""
    cm = find(docs, "ConfigMap", "qhub-dask-gateway-config")
    for name, text in cm["data"].items():
        (dest / name).write_text(text)
    return PyFileConfigLoader("dask_gateway_config.py", path=str(dest)).load_config()


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return template()


@pytest.fixture(scope="module")
def config(docs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Config:
    return gateway_config(docs, tmp_path_factory.mktemp("gw"))


# The hub's identities record as the gateway reads it when a user starts a cluster (QHubKubeBackend._identity).
IDENTITIES = {"users": {"alice": 100000, "bob": 100001, "carol": 100002, "eve": 100003},
              "groups": {"staff": 3001, "dask": 3002}}


def resolve(config: Config, user: User, request: dict[str, Any]) -> KubeClusterConfig:
    """What start_cluster hands the controller for `user`: the user's identity from the record, then the options."""
    known = config.Backend.cluster_options.__globals__
    known["_IDENTITIES"][user.name] = known["identity_of"](IDENTITIES, user)
    options = config.Backend.cluster_options(user)
    parsed = options.parse_options(request)
    return KubeClusterConfig(**options.get_configuration(parsed, user))


def test_services_and_deployments_follow_the_shared_names(docs: list[dict[str, Any]]) -> None:
    api = find(docs, "Service", "qhub-dask-gateway-api")
    assert [(p["name"], p["port"]) for p in api["spec"]["ports"]] == [("api", 8000)]
    proxy = find(docs, "Service", "qhub-dask-gateway-proxy")
    assert [(p["name"], p["port"]) for p in proxy["spec"]["ports"]] == [("http", 80), ("scheduler", 8786)]
    for name in ("qhub-dask-gateway-api", "qhub-dask-gateway-controller", "qhub-dask-gateway-proxy"):
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"qhub.dev/node-group": "general"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]


def test_api_server_reads_the_hub_token_from_the_hub_secret(docs: list[dict[str, Any]]) -> None:
    pod = find(docs, "Deployment", "qhub-dask-gateway-api")["spec"]["template"]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "qhub-hub", "key": "token-dask-gateway"}
    assert pod["metadata"]["labels"]["qhub.dev/access-hub"] == "true"
    cm = find(docs, "ConfigMap", "qhub-dask-gateway-config")
    cfg = json.loads(cm["data"]["gateway.json"])
    assert cfg["hub"]["apiUrl"] == "http://qhub-hub.qhub:8081/hub/api"
    assert cfg["apiUrl"] == "http://qhub-dask-gateway-api.qhub:8000/api"
    assert (cfg["namespace"], cfg["releaseNamespace"]) == (DASK_NS, "qhub")
    assert "token" not in cm["data"]["gateway.json"].lower()


def test_config_change_restarts_api_and_controller(docs: list[dict[str, Any]]) -> None:
    changed = template("--set", "dask-gateway.clusters.idleTimeout.defaultMinutes=90")
    for name in ("qhub-dask-gateway-api", "qhub-dask-gateway-controller"):
        before = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        after = find(changed, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert before != after, name


def test_proxy_routes_the_prefix_to_the_api(docs: list[dict[str, Any]]) -> None:
    routes = yaml.safe_load(find(docs, "ConfigMap", "qhub-dask-gateway-proxy")["data"]["routes.yaml"])["http"]
    assert routes["routers"]["gateway-api"]["rule"] == "PathPrefix(`/services/dask-gateway`)"
    assert routes["services"]["gateway-api"]["loadBalancer"]["servers"] == [
        {"url": "http://qhub-dask-gateway-api.qhub:8000"}]
    assert routes["middlewares"]["gateway-api-prefix"]["stripPrefix"]["prefixes"] == ["/services/dask-gateway"]
    assert "qhub-dashboard-prefix" in routes["middlewares"]


def grants(docs: list[dict[str, Any]], account: str) -> dict[str, list[dict[str, Any]]]:
    """The rules `account` (a ServiceAccount of the release namespace) holds, per namespace, through the rendered
    RoleBindings; ClusterRoleBindings would show up under "*"."""
    roles = {(namespace_of(d), d["metadata"]["name"]): d["rules"] for d in docs if d["kind"] == "Role"}
    found: dict[str, list[dict[str, Any]]] = {}
    for b in docs:
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding") and {"kind": "ServiceAccount", "name": account,
                                                                  "namespace": "qhub"} in b["subjects"]:
            where = namespace_of(b) if b["kind"] == "RoleBinding" else "*"
            found.setdefault(where, []).extend(roles.get((where, b["roleRef"]["name"]), [{"resources": ["*"]}]))
    return found


def test_no_gateway_account_touches_a_secret_of_the_release_namespace(docs: list[dict[str, Any]]) -> None:
    """The hub's tokens, database passwords and the like live in the release namespace: no dask-gateway
    ServiceAccount has any right on a Secret there, the controller and Traefik have no right there at all, and the
    API server may read only the identities ConfigMap by name. No grant is cluster-wide."""
    for account in ACCOUNTS:
        held = grants(docs, account)
        assert set(held) <= {"qhub", DASK_NS}, (account, held)
        for rule in held.get("qhub", []):
            assert not {"secrets", "*"} & set(rule["resources"]), (account, rule)
    assert "qhub" not in grants(docs, "qhub-dask-gateway-controller")
    assert "qhub" not in grants(docs, "qhub-dask-gateway-proxy")
    assert grants(docs, "qhub-dask-gateway-api")["qhub"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["qhub-identities"], "verbs": ["get"]}]


def test_each_account_holds_what_it_needs_in_the_clusters_namespace(docs: list[dict[str, Any]]) -> None:
    def verbs(account: str, resource: str) -> set[str]:
        return {v for r in grants(docs, account)[DASK_NS] if resource in r["resources"] for v in r["verbs"]}

    assert verbs("qhub-dask-gateway-api", "daskclusters") == {"get", "list", "watch", "create", "patch"}
    assert verbs("qhub-dask-gateway-api", "secrets") == {"get"}
    assert {"create", "delete", "list", "watch"} <= verbs("qhub-dask-gateway-controller", "pods")
    assert verbs("qhub-dask-gateway-controller", "secrets") == {"get", "create", "delete"}
    assert {"create", "delete"} <= verbs("qhub-dask-gateway-controller", "ingressroutes")
    assert {"patch"} <= verbs("qhub-dask-gateway-controller", "daskclusters/status")
    for rule in grants(docs, "qhub-dask-gateway-proxy")[DASK_NS]:  # Traefik only reads
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    assert not any("*" in rule["verbs"] for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"])


def test_traefik_watches_the_clusters_namespace_only(docs: list[dict[str, Any]]) -> None:
    args = find(docs, "Deployment", "qhub-dask-gateway-proxy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--providers.kubernetescrd.namespaces")] == [
        f"--providers.kubernetescrd.namespaces={DASK_NS}"]
    assert "--providers.kubernetescrd.disableclusterscoperesources=true" in args
    custom = template("--set", "global.daskClusters.namespace=dask-of-qhub")
    args = find(custom, "Deployment", "qhub-dask-gateway-proxy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--providers.kubernetescrd.namespaces=dask-of-qhub" in args
    assert json.loads(find(custom, "ConfigMap", "qhub-dask-gateway-config")["data"]["gateway.json"])["namespace"] == \
        "dask-of-qhub"
    assert find(custom, "Role", "qhub-dask-gateway-proxy", "dask-of-qhub")


def test_the_clusters_namespace_is_created_restricted_or_left_to_the_user(docs: list[dict[str, Any]]) -> None:
    ns = find(docs, "Namespace", DASK_NS)
    labels = ns["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "warn", "audit")} == {"restricted"}
    kubernetes_validate.validate(ns, "1.35.0", strict=True)
    inside = {d["kind"] for d in docs if d["metadata"].get("namespace") == DASK_NS}
    assert inside == {"Role", "RoleBinding", "NetworkPolicy", "PersistentVolumeClaim"}, inside
    mine = template("--set", "global.daskClusters.createNamespace=false")
    assert not [d for d in mine if d["kind"] == "Namespace"]


@pytest.mark.parametrize(("settings", "message"), [
    (["global.daskClusters.namespace=qhub"], "is the release namespace"),
    (["global.daskClusters.namespace=" + "d" * 64], "maxLength"),
    (["dask-gateway.enabled=false", "jupyterhub.hub.services.dask-gateway.enabled=false"],
     "global.daskClusters.enabled"),
])
def test_a_clusters_namespace_that_cannot_work_fails_the_render(settings: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        template(*(a for s in settings for a in ("--set", s)))


def test_a_release_namespace_too_long_for_the_default_is_named() -> None:
    long = "q" * 60
    with pytest.raises(CommandError, match="longer than the 63 characters.*set global.daskClusters.namespace"):
        run(["helm", "template", "qhub", str(CHART), "--namespace", long, *BASE], timeout=120)


def peers(rules: list[dict[str, Any]], key: str, port: int | str) -> list[tuple[str | None, str]]:
    """(namespace name or None for the policy's own, component or instance) of each peer admitted on `port`."""
    def admits(entry: dict[str, Any]) -> bool:  # a port, or a range of them (endPort)
        if isinstance(port, int) and isinstance(entry["port"], int):
            return entry["port"] <= port <= entry.get("endPort", entry["port"])
        return entry["port"] == port

    found = []
    for rule in rules:
        if rule.get("ports") and not any(admits(p) for p in rule["ports"]):
            continue
        for peer in rule.get(key, []):
            ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            labels = (peer.get("podSelector") or {}).get("matchLabels", {})
            found.append((ns, labels.get("app.kubernetes.io/component") or labels.get("gateway.dask.org/instance")))
    return found


def test_network_policies_cover_every_component_and_dask_pods(docs: list[dict[str, Any]]) -> None:
    """Across the two namespaces: Traefik -> schedulers and dashboards, the API <-> schedulers, schedulers and
    workers among themselves on comm ports only (not dashboards, not the scheduler's API); users reach clusters only
    through Traefik."""
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert {"qhub-dask-gateway-api", "qhub-dask-gateway-controller", "qhub-dask-gateway-proxy",
            "qhub-dask-clusters"} <= names
    dask = find(docs, "NetworkPolicy", "qhub-dask-clusters", DASK_NS)["spec"]
    assert dask["podSelector"]["matchLabels"] == {"gateway.dask.org/instance": "qhub-dask-gateway"}
    assert peers(dask["ingress"], "from", 8786) == [(None, "qhub-dask-gateway"), ("qhub", "dask-gateway-proxy")]
    assert peers(dask["ingress"], "from", 8787) == [("qhub", "dask-gateway-proxy")]
    assert peers(dask["ingress"], "from", 8788) == [("qhub", "dask-gateway-api")]
    assert peers(dask["ingress"], "from", 40123) == [(None, "qhub-dask-gateway")]  # a port Dask picked
    assert ("qhub", "dask-gateway-api") in peers(dask["egress"], "to", 8000)
    api = find(docs, "NetworkPolicy", "qhub-dask-gateway-api")["spec"]
    assert peers(api["ingress"], "from", "api") == [(None, "dask-gateway-proxy"), (DASK_NS, "dask-scheduler")]
    assert (DASK_NS, "dask-scheduler") in peers(api["egress"], "to", 8788)
    proxy = find(docs, "NetworkPolicy", "qhub-dask-gateway-proxy")["spec"]
    assert (DASK_NS, "dask-scheduler") in peers(proxy["egress"], "to", 8786)
    assert (DASK_NS, "dask-scheduler") in peers(proxy["egress"], "to", 8787)
    off = template("--set", "global.networkPolicy.enabled=false")
    assert not [d for d in off if d["kind"] == "NetworkPolicy" and namespace_of(d) == DASK_NS]
    assert not [d for d in off if d["kind"] == "NetworkPolicy" and "dask" in d["metadata"]["name"]]


def test_profiles_resolve_to_pods_on_their_node_groups(config: Config) -> None:
    alice = User("alice", groups=["staff"])
    small = resolve(config, alice, {})
    assert small.worker_cores == 1 and small.worker_memory == 4 * GIB and small.worker_threads == 1
    assert small.idle_timeout == 30 * 60
    assert small.worker_extra_pod_config["nodeSelector"] == {"qhub.dev/node-group": "worker"}
    assert small.scheduler_extra_pod_config["nodeSelector"] == {"qhub.dev/node-group": "general"}
    gpu = resolve(config, alice, {"profile": "gpu", "idle_timeout_minutes": 120})
    assert gpu.image == "qhub/dask-worker-gpu:0.1.0" and gpu.idle_timeout == 7200
    assert gpu.worker_extra_pod_config["nodeSelector"] == {"qhub.dev/node-group": "gpu"}
    keys = {t["key"] for t in gpu.worker_extra_pod_config["tolerations"]}
    assert keys == {"qhub.dev/node-group", "nvidia.com/gpu"}
    assert gpu.worker_extra_container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    with pytest.raises(ValueError):
        resolve(config, alice, {"idle_timeout_minutes": 10_000})


def test_pods_run_as_the_users_uid_with_their_groups(config: Config) -> None:
    """A user's schedulers and workers run as the uid the hub gave the user, with the gids of the user's groups,
    and make the user's home (as the user) before mounting it; a user the hub never gave a uid gets no cluster."""
    resolved = resolve(config, User("bob", groups=["dask", "staff", "no-gid"]), {})
    controller = KubeController(config=config)
    for is_worker in (False, True):
        pod = controller.make_pod("qhub", "abc123", FrozenAttrDict(resolved.to_dict()), is_worker=is_worker)
        psc = pod["spec"]["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"], psc["supplementalGroups"]) == (100001, 100001, [3001, 3002])
        assert "fsGroup" not in psc, "an fsGroup would make the kubelet re-group the shared volume"
        (init,) = pod["spec"]["initContainers"]
        assert init["name"] == "home" and init["image"] == pod["spec"]["containers"][0]["image"]
        assert (init["securityContext"]["runAsUser"], init["securityContext"]["runAsGroup"]) == (100001, 100001)
        assert init["env"] == [{"name": "QHUB_HOME_NAME", "value": "bob"}]
        assert init["volumeMounts"] == [{"name": "shared", "mountPath": "/mnt/home", "subPath": "home"}]
    identity_of = config.Backend.cluster_options.__globals__["identity_of"]
    with pytest.raises(PublicException, match="no uid on the platform yet"):
        identity_of(IDENTITIES, User("mallory"))


def test_controller_would_create_valid_restricted_pods(config: Config) -> None:
    resolved = resolve(config, User("alice"), {"profile": "medium"})
    controller = KubeController(config=config)
    for is_worker in (False, True):
        pod = controller.make_pod("qhub", "abc123", FrozenAttrDict(resolved.to_dict()), is_worker=is_worker)
        pod["metadata"]["namespace"] = "qhub"
        kubernetes_validate.validate(pod, "1.35.0", strict=True)
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (c,) = spec["containers"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert pod["metadata"]["labels"]["gateway.dask.org/instance"] == "qhub-dask-gateway"
        assert "qhub.dev/access-nfs" not in pod["metadata"]["labels"], "pods never reach NFS"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/opt/conda-store"] == {"name": "shared", "mountPath": "/opt/conda-store",
                                               "subPath": "conda-store", "readOnly": True}
        assert mounts["/home/alice"]["subPath"] == "home/alice"
        claim = {v["name"]: v for v in spec["volumes"]}["shared"]["persistentVolumeClaim"]["claimName"]
        assert claim == "qhub-shared"
    assert c["resources"]["requests"] == {"cpu": "2.000", "memory": str(8 * GIB)}


def test_group_limits_and_group_only_profiles(tmp_path: Path) -> None:
    docs = template(
        "--set", "dask-gateway.clusters.profiles[0].name=small",
        "--set", "dask-gateway.clusters.profiles[0].displayName=small",
        "--set", "dask-gateway.clusters.profiles[0].cores=1",
        "--set", "dask-gateway.clusters.profiles[0].memory=2",
        "--set", "dask-gateway.clusters.profiles[0].threads=1",
        "--set", "dask-gateway.clusters.profiles[0].nodeGroup=worker",
        "--set", "dask-gateway.clusters.profiles[0].gpus=0",
        "--set", "dask-gateway.clusters.profiles[0].groups[0]=dask",
        "--set", "dask-gateway.clusters.limits.groups.power.maxWorkers=64",
        "--set", "dask-gateway.clusters.limits.groups.power.maxCores=100",
        "--set", "dask-gateway.clusters.limits.groups.power.maxMemory=400",
    )
    config = gateway_config(docs, tmp_path)
    member = resolve(config, User("bob", groups=["dask", "power"]), {})
    assert member.cluster_max_workers == 64 and member.cluster_max_cores == 100
    assert resolve(config, User("carol", groups=["dask"]), {}).cluster_max_workers == 20
    with pytest.raises(PublicException, match="no Dask worker profile"):
        config.Backend.cluster_options(User("eve", groups=[]))


def test_environment_option_switches_the_dask_commands(tmp_path: Path) -> None:
    docs = template("--set", "dask-gateway.clusters.environments[0].name=geo",
                    "--set", "dask-gateway.clusters.environments[0].prefix=/opt/conda-store/envs/geo")
    resolved = resolve(gateway_config(docs, tmp_path), User("alice"), {"environment": "geo"})
    assert resolved.worker_cmd == ["/opt/conda-store/envs/geo/bin/dask-worker"]
    assert resolved.scheduler_cmd == ["/opt/conda-store/envs/geo/bin/dask-scheduler"]


def test_config_environments_are_offered_to_dask_clusters_read_only(tmp_path: Path) -> None:
    """From the config to the pods: with conda-store on, qhubctl's values make the rendered gateway offer the image's
    own environment (the default: the image's commands, no PATH change) and each config environment with `dask`,
    whose choice runs its dask-scheduler and dask-worker from the conda-store mount, which is read-only in both pods."""
    data = yaml.safe_load(config_text("local"))
    data["components"] = {**data.get("components", {}), "conda_store": True, "dask_gateway": True}
    data["environments"] = [{"name": "geo", "dependencies": ["python=3.12", "dask", "distributed", "dask-gateway"]},
                            {"name": "notes", "dependencies": ["python=3.12", "ipykernel"], "dask": False}]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(chart_values(parse_config(data, environ={}))))
    (tmp_path / "gw").mkdir()
    config = gateway_config(template("-f", str(tmp_path / "values.yaml")), tmp_path / "gw")
    alice = User("alice")
    (choice,) = [f for f in config.Backend.cluster_options(alice).fields if f.field == "environment"]
    assert list(choice.options) == [IMAGE_ENVIRONMENT, "geo"] and choice.default == IMAGE_ENVIRONMENT
    own = resolve(config, alice, {})
    assert own.worker_cmd == ["dask-worker"] and own.scheduler_cmd == ["dask-scheduler"]
    assert "PATH" not in {e["name"] for e in own.worker_extra_container_config["env"]}
    geo = resolve(config, alice, {"environment": "geo"})
    prefix = "/opt/conda-store/global/envs/geo"
    assert geo.worker_cmd == [f"{prefix}/bin/dask-worker"] and geo.scheduler_cmd == [f"{prefix}/bin/dask-scheduler"]
    assert geo.environment["QHUB_DASK_ENVIRONMENT"] == "geo"
    controller = KubeController(config=config)
    for is_worker in (False, True):
        pod = controller.make_pod("qhub", "abc123", FrozenAttrDict(geo.to_dict()), is_worker=is_worker)
        pod["metadata"]["namespace"] = "qhub"
        kubernetes_validate.validate(pod, "1.35.0", strict=True)
        (c,) = pod["spec"]["containers"]
        assert c["args"][0] == f"{prefix}/bin/{'dask-worker' if is_worker else 'dask-scheduler'}"
        assert {"name": "PATH", "value": f"{prefix}/bin:/usr/local/bin:/usr/bin:/bin"} in c["env"]
        (store,) = [m for m in c["volumeMounts"] if prefix.startswith(m["mountPath"] + "/")]
        assert store == {"name": "shared", "mountPath": "/opt/conda-store", "subPath": "conda-store",
                         "readOnly": True}
    with pytest.raises(ValueError, match="not a valid option"):
        resolve(config, alice, {"environment": "notes"})


def test_schedulers_can_run_on_the_worker_group(tmp_path: Path) -> None:
    docs = template("--set", "dask-gateway.clusters.scheduler.nodeGroup=worker")
    resolved = resolve(gateway_config(docs, tmp_path), User("alice"), {})
    assert resolved.scheduler_extra_pod_config["nodeSelector"] == {"qhub.dev/node-group": "worker"}


TPU_PROFILE = {"name": "tpu", "displayName": "tpu", "cores": 1, "memory": 1, "threads": 1, "nodeGroup": "tpu",
               "gpus": 0}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"clusters": {"profiles": [TPU_PROFILE], "defaultProfile": "tpu"}}, "is not a key of global.nodeGroups"),
        ({"clusters": {"defaultProfile": "huge"}}, "defaultProfile"),
        ({"clusters": {"profiles": [dict(TPU_PROFILE, nodeGroup="worker")] * 2, "defaultProfile": "tpu"}},
         "used twice"),
        ({"clusters": {"scheduler": {"nodeGroup": "user"}}}, "nodeGroup"),
    ],
)
def test_inconsistent_cluster_settings_fail_the_render(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(yaml.safe_dump({"dask-gateway": values}))
    with pytest.raises(CommandError, match=message):
        template("-f", str(tmp_path / "v.yaml"))


def test_crds_define_daskcluster_and_the_traefik_route_kinds() -> None:
    crds = [d for f in sorted(CRDS.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    by_name = {d["metadata"]["name"]: d for d in crds}
    dc = by_name["daskclusters.gateway.dask.org"]["spec"]
    assert dc["names"]["kind"] == "DaskCluster" and dc["scope"] == "Namespaced"
    (version,) = dc["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert {"ingressroutes.traefik.io", "ingressroutetcps.traefik.io", "middlewares.traefik.io"} <= set(by_name)
    for crd in crds:
        kubernetes_validate.validate(crd, "1.35.0", strict=True)
