"""conda-store subchart: what it renders inside the umbrella (defaults and the ci/values conda-store-* files);
lint, manifest validation and Pod Security over the whole matrix are in test_matrix.py."""

from __future__ import annotations

import ast
import json

import pytest
import yaml

from .addons import VALUES, assert_hardened, env, get, has, objects, pod, render, render_error

pytestmark = pytest.mark.chart
EXTERNAL = VALUES / "conda-store-external-values.yaml"
MINIO = VALUES / "conda-store-minio-values.yaml"


def test_defaults_render_server_worker_database_and_redis():
    docs = objects(render(), "conda-store")
    for kind, name in [("Deployment", "qhub-conda-store"), ("Deployment", "qhub-conda-store-worker"),
                       ("StatefulSet", "qhub-conda-store-postgresql"), ("Deployment", "qhub-conda-store-redis"),
                       ("Service", "qhub-conda-store"), ("Secret", "qhub-conda-store")]:
        assert has(docs, kind, name), (kind, name)
    assert not has(docs, "StatefulSet", "qhub-conda-store-minio"), "artifacts on the shared filesystem by default"
    assert get(docs, "Service", "qhub-conda-store")["spec"]["ports"][0]["port"] == 8080
    assert_hardened(docs, token=frozenset({"qhub-conda-store-worker"}))
    for name in ("qhub-conda-store", "qhub-conda-store-worker"):
        spec = pod(get(docs, "Deployment", name))
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["store"] == {"name": "store", "mountPath": "/opt/conda-store", "subPath": "conda-store"}
        assert {v["name"]: v for v in spec["volumes"]}["store"]["persistentVolumeClaim"]["claimName"] == "qhub-shared"
        e = env(spec["containers"][0])
        assert e["JUPYTERHUB_API_URL"] == "http://qhub-hub:8081/hub/api"
        assert e["JUPYTERHUB_API_TOKEN"] == {"secretKeyRef": {"name": "qhub-hub", "key": "token-conda-store"}}
        assert "$(POSTGRES_PASSWORD)@qhub-conda-store-postgresql:5432" in e["CONDA_STORE_DATABASE_URL"]
        assert spec["nodeSelector"] == {"qhub.dev/node-group": "general"}


def test_config_is_python_and_policy_is_json_without_secrets():
    docs = render(values={"conda-store": {"environments": {"e": {"dependencies": ["python"]}}}})
    data = get(docs, "ConfigMap", "qhub-conda-store-config")["data"]
    ast.parse(data["conda_store_config.py"])
    settings = json.loads(data["settings.json"])
    assert settings["urlPrefix"] == "/conda-store" and settings["hub"]["clientId"] == "service-conda-store"
    assert settings["hub"]["oauthCallbackUrl"] == "/conda-store/oauth_callback/"
    secret = get(docs, "Secret", "qhub-conda-store")["data"]
    assert set(secret) == {"token-secret", "postgresql-password", "redis-password"}
    configmaps = json.dumps([d["data"] for d in docs if d["kind"] == "ConfigMap"])
    import base64
    for value in secret.values():
        assert base64.b64decode(value).decode() not in configmaps, "a generated secret leaked into a ConfigMap"


def test_prebuilt_environments_and_rebuild_on_change():
    env_a = {"dask": {"channels": ["conda-forge"], "dependencies": ["python=3.12", "dask", {"pip": ["rich"]}]}}
    docs = render(values={"conda-store": {"environments": env_a}})
    files = get(docs, "ConfigMap", "qhub-conda-store-environments")["data"]
    assert yaml.safe_load(files["dask.yaml"]) == {"name": "dask", "channels": ["conda-forge"],
                                                   "dependencies": ["python=3.12", "dask", {"pip": ["rich"]}]}
    worker = pod(get(docs, "Deployment", "qhub-conda-store-worker"))
    assert {"name": "environments", "mountPath": "/opt/environments", "readOnly": True} in \
        worker["containers"][0]["volumeMounts"]
    changed = {"dask": {**env_a["dask"], "dependencies": ["python=3.12", "dask", "numpy"]}}
    docs2 = render(values={"conda-store": {"environments": changed}})
    a = get(docs, "Deployment", "qhub-conda-store-worker")["spec"]["template"]["metadata"]["annotations"]
    b = get(docs2, "Deployment", "qhub-conda-store-worker")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/environments"] != b["checksum/environments"], "a spec change restarts the worker"
    assert a["checksum/config"] == b["checksum/config"]


def test_external_services_and_worker_placement():
    docs = objects(render(EXTERNAL), "conda-store")
    assert not any(d["kind"] == "StatefulSet" for d in docs) and not has(docs, "Deployment", "qhub-conda-store-redis")
    worker = pod(get(docs, "Deployment", "qhub-conda-store-worker"))
    e = env(worker["containers"][0])
    assert e["CONDA_STORE_DATABASE_URL"] == {"secretKeyRef": {"name": "conda-store-db", "key": "url"}}
    assert e["CONDA_STORE_REDIS_URL"] == {"secretKeyRef": {"name": "conda-store-redis", "key": "url"}}
    assert e["CONDA_STORE_S3_SECRET_KEY"] == {"secretKeyRef": {"name": "conda-store-s3", "key": "secret-key"}}
    assert worker["nodeSelector"] == {"qhub.dev/node-group": "worker"}
    assert worker["tolerations"][0]["value"] == "worker"
    assert worker["containers"][0]["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert get(docs, "Deployment", "qhub-conda-store-worker")["spec"]["replicas"] == 2
    settings = json.loads(get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"])
    assert settings["worker"]["concurrency"] == 1 and settings["storage"]["type"] == "s3"
    assert settings["permissions"]["groupRoles"] == {"data-team": "admin", "analysts": "editor"}
    assert set(get(docs, "Secret", "qhub-conda-store")["data"]) == {"token-secret"}


def test_minio_storage():
    docs = objects(render(MINIO), "conda-store")
    minio = get(docs, "StatefulSet", "qhub-conda-store-minio")
    assert minio["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    server = pod(get(docs, "Deployment", "qhub-conda-store"))["containers"][0]
    assert server["image"] == "registry.internal:5000/mirror/conda-store-server:2025.2.2"
    ref = {"secretKeyRef": {"name": "qhub-conda-store", "key": "minio-user"}}
    assert env(server)["CONDA_STORE_S3_ACCESS_KEY"] == ref
    settings = json.loads(get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"])
    assert settings["storage"]["endpoint"] == "qhub-conda-store-minio:9000"
    assert settings["build"]["lockBackend"] == "conda-lock", "the upstream image solves with its own conda"


def test_network_policies_are_exact():
    docs = objects(render(), "conda-store")
    pols = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert set(pols) == {"qhub-conda-store", "qhub-conda-store-worker", "qhub-conda-store-postgresql",
                         "qhub-conda-store-redis", "qhub-conda-store-build"}
    server_in = pols["qhub-conda-store"]["ingress"][0]
    assert {"podSelector": {"matchLabels": {"qhub.dev/access-conda-store": "true"}}} in server_in["from"]
    assert server_in["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert pols["qhub-conda-store-worker"]["ingress"] == []
    assert pols["qhub-conda-store-postgresql"]["egress"] == []
    db_from = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for p in pols["qhub-conda-store-postgresql"]["ingress"][0]["from"]]
    # the server, the worker, and qhubctl's backup and restore Jobs of this release only
    assert db_from == ["conda-store", "conda-store-worker", "backup"]
    assert pols["qhub-conda-store-postgresql"]["ingress"][0]["from"][2]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "qhub", "app.kubernetes.io/component": "backup"}
    off = render(values={"global": {"networkPolicy": {"enabled": False}}})
    assert not [d for d in objects(off, "conda-store") if d["kind"] == "NetworkPolicy"]


def test_ingress_serves_conda_store_path():
    ingress = next(d for d in render() if d["kind"] == "Ingress")
    paths = {p["path"]: p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths["/conda-store"] == {"name": "qhub-conda-store", "port": {"number": 8080}}
    disabled = render(VALUES / "minimal-values.yaml")
    assert not objects(disabled, "conda-store")


@pytest.mark.parametrize("values, needle", [
    ({"conda-store": {"sever": {"replicas": 2}}}, "sever"),
    ({"conda-store": {"storage": {"type": "gcs"}}}, "/storage/type"),
    ({"conda-store": {"permissions": {"defaultGroupRole": "owner"}}}, "/permissions/defaultGroupRole"),
    ({"conda-store": {"worker": {"concurency": 3}}}, "concurency"),
    ({"conda-store": {"environments": {"x": {"channels": ["conda-forge"]}}}}, "dependencies"),
])
def test_schema_rejects_typos(values, needle):
    assert needle in render_error(values)


def test_required_settings_are_named():
    err = render_error({"conda-store": {"postgresql": {"internal": False}}})
    assert "conda-store.postgresql.externalSecret.name is required" in err
    err = render_error({"conda-store": {"storage": {"type": "s3"}}})
    assert "conda-store.storage.s3.endpoint is required" in err


@pytest.mark.parametrize("domain", ["", "qhub.example.org"])
def test_oauth_client_matches_the_hub_registration(domain):
    """conda-store's OAuth client settings equal what the jupyterhub subchart registers in the hub (JupyterHub
    compares redirect URIs exactly), with and without a public domain."""
    import base64 as b64

    tls = {"mode": "upstream"} if domain else {"mode": "none"}  # a domain needs HTTPS
    docs = render(VALUES / "defaults-values.yaml", values={"global": {"domain": domain, "tls": tls}})
    hub_values = yaml.safe_load(b64.b64decode(get(docs, "Secret", "qhub-hub")["data"]["values.yaml"]))
    registered = hub_values["hub"]["services"]["conda-store"]
    settings = json.loads(get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"])
    assert settings["hub"]["oauthCallbackUrl"] == registered["oauthRedirectUri"]
    assert registered["url"] == "http://qhub-conda-store:8080/conda-store" and registered["enabled"] is True
    assert settings["hub"]["authorizeUrl"].endswith("/hub/api/oauth2/authorize")
    scopes = hub_values["hub"]["services"]["kubessh"]["scopes"]
    # the SSH gateway starts servers; it reaches them only with the user's own token
    assert set(scopes) == {"read:servers", "start:servers"}, scopes


BUILD = "qhub-conda-store-build"
POLICY = "qhub-qhub-conda-store-build"


def _build_settings(docs: list[dict]) -> dict:
    return json.loads(get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"])["buildPod"]


def test_builds_run_in_pods_the_worker_may_create_and_nothing_more():
    """The worker's ServiceAccount creates, follows and deletes pods in the release namespace only; the build
    pods' ServiceAccount has no binding and no token; build pods have no network; the admission policy that
    bounds the worker's pods is bound to the release namespace (tests/cluster/test_conda_store_build_admission.py
    runs its CEL on the real API server)."""
    docs = render()
    worker = pod(get(docs, "Deployment", "qhub-conda-store-worker"))
    assert worker["serviceAccountName"] == "qhub-conda-store-worker" and worker["automountServiceAccountToken"]
    assert env(worker["containers"][0])["CONDA_PKGS_DIRS"] == "/opt/conda-store/.pkgs"
    rules = get(docs, "Role", "qhub-conda-store-worker")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
                     {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    binding = get(docs, "RoleBinding", "qhub-conda-store-worker")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qhub-conda-store-worker", "namespace": "qhub"}]
    assert get(docs, "ServiceAccount", BUILD)["automountServiceAccountToken"] is False
    bound = [s["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in d["subjects"]]
    assert BUILD not in bound, "the build pods' ServiceAccount has no rights"
    policy = get(docs, "NetworkPolicy", BUILD)["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "conda-store-build"
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == [] and policy["egress"] == []
    vap = get(docs, "ValidatingAdmissionPolicy", POLICY)["spec"]
    assert vap["failurePolicy"] == "Fail" and vap["matchConstraints"]["resourceRules"][0]["operations"] == [
        "CREATE", "DELETE"]
    assert vap["matchConditions"][0]["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:qhub:qhub-conda-store-worker'")
    vapb = get(docs, "ValidatingAdmissionPolicyBinding", POLICY)["spec"]
    assert vapb == {"policyName": POLICY, "validationActions": ["Deny"], "matchResources": {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "qhub"}}}}
    worker_egress = get(docs, "NetworkPolicy", "qhub-conda-store-worker")["spec"]["egress"]
    assert {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]} in worker_egress


def test_the_build_pod_template_is_what_the_policy_admits():
    """The template the worker fills in (settings.json): the worker's image, the build ServiceAccount without a
    token, hardened, plain env only, the claim only at the package cache (read-only) until the worker adds the
    build's namespace folder, and the pod kind validates strictly on every supported Kubernetes version."""
    from .manifests import kube_versions, pod_problems, validation_errors

    docs = render(values={"conda-store": {"build": {"pod": {"timeoutSeconds": 900}}}})
    settings = _build_settings(docs)
    assert settings["enabled"] is True and settings["timeoutSeconds"] == 900
    template = settings["podTemplate"]
    spec = template["spec"]
    worker = pod(get(docs, "Deployment", "qhub-conda-store-worker"))
    assert spec["containers"][0]["image"] == worker["containers"][0]["image"]
    assert spec["serviceAccountName"] == BUILD and spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 900
    assert spec["enableServiceLinks"] is False and spec["nodeSelector"] == worker["nodeSelector"]
    assert all("valueFrom" not in e for e in spec["containers"][0]["env"])
    assert {next(k for k in v if k != "name") for v in spec["volumes"]} == {"persistentVolumeClaim", "emptyDir"}
    assert [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "store"] == [
        {"name": "store", "mountPath": "/opt/conda-store/.pkgs", "subPath": "conda-store/.pkgs", "readOnly": True}]
    named = {**template, "metadata": {**template["metadata"], "name": "build-x"}}
    assert pod_problems([named]) == []
    for version in kube_versions():
        assert validation_errors([named], version) == [], version


def test_the_upstream_image_builds_in_the_worker_without_any_pod_rights():
    """lockBackend conda-lock is the upstream image, which has no build-pod code: no Role, account or policy, and
    the worker keeps no token."""
    docs = render(values={"conda-store": {"build": {"lockBackend": "conda-lock"}}})
    assert _build_settings(docs)["enabled"] is False
    assert pod(get(docs, "Deployment", "qhub-conda-store-worker"))["automountServiceAccountToken"] is False
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for kind, name in [("Role", "qhub-conda-store-worker"), ("ServiceAccount", BUILD),
                       ("ValidatingAdmissionPolicy", POLICY), ("NetworkPolicy", BUILD)]:
        assert (kind, name) not in kinds, (kind, name)
