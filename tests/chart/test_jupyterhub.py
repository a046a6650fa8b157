"""The jupyterhub subchart, the umbrella's Ingress, switch checks and helm tests, rendered with `helm template`."""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jhrender import HUB_ONLY, find, helm_template, import_hub_modules, merge, render, secret_text, write_hub_files

pytestmark = pytest.mark.chart

GROUPS = {"analysts": {"gid": 3001, "users": ["alice"]}, "gpu-team": {"users": ["bob"]}}
TOKEN_KEYS = ["proxy-token", "token-dask-gateway", "token-conda-store", "token-kubessh", "token-jitsi"]
PASSWORD_KEYS = ["dummy-password", "dummy-admin-password"]


@pytest.fixture(scope="module")
def objs() -> list[dict[str, Any]]:
    # the trial login (dummy) with its two generated passwords; native, the default, is in test_hub_auth.py
    return render({"jupyterhub": {"groups": GROUPS, "auth": {"type": "dummy"}}})


def pod_specs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {}
    for o in objs:
        if o["kind"] == "Deployment":
            specs[o["metadata"]["name"]] = o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            specs[o["metadata"]["name"]] = o["spec"]
    return specs


def fail_message(values: dict[str, Any], base: dict[str, Any] = HUB_ONLY) -> str:
    result = helm_template(merge(base, values), check=False)
    assert result.returncode != 0, "rendering should have failed"
    return result.stderr


def test_pods_are_hardened_and_sized(objs: list[dict[str, Any]]) -> None:
    specs = pod_specs(objs)
    assert {"qhub-hub", "qhub-proxy", "qhub-test-hub-api"} <= set(specs)
    for name, spec in specs.items():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert csc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert csc["readOnlyRootFilesystem"] is True, (name, c["name"])
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) >= {"cpu", "memory"}, (name, c["name"], kind)


def test_hub_deployment(objs: list[dict[str, Any]]) -> None:
    hub = find(objs, "Deployment", "qhub-hub")
    assert hub["spec"]["replicas"] == 1 and hub["spec"]["strategy"] == {"type": "Recreate"}
    tpl = hub["spec"]["template"]
    assert set(tpl["metadata"]["annotations"]) == {"checksum/config-map", "checksum/values"}
    spec = tpl["spec"]
    assert spec["serviceAccountName"] == "qhub-hub"
    assert spec["nodeSelector"] == {"qhub.dev/node-group": "general"}
    derived = 10000 + zlib.adler32(b"gpu-team") % 50000
    assert spec["securityContext"]["supplementalGroups"] == [3001, derived]
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (1000, 100)
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/srv/shared"] == "shared" and mounts["/srv/jupyterhub"] == "data"
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
    assert claims["shared"] == "qhub-shared" and claims["data"] == "qhub-hub-db"
    assert find(objs, "PersistentVolumeClaim", "qhub-hub-db")["spec"]["accessModes"] == ["ReadWriteOnce"]
    labels = tpl["metadata"]["labels"]
    assert "qhub.dev/access-hub" not in labels and labels["qhub.dev/access-proxy"] == "true"


def test_config_checksums_follow_values() -> None:
    def checksums(extra: dict[str, Any]) -> dict[str, str]:
        return find(render(extra), "Deployment", "qhub-hub")["spec"]["template"]["metadata"]["annotations"]

    first, again = checksums({}), checksums({})
    changed = checksums({"jupyterhub": {"cull": {"timeout": 7200}}})
    assert first == again, "checksums are deterministic although generated tokens are random per render"
    assert changed["checksum/values"] != first["checksum/values"]
    assert changed["checksum/config-map"] == first["checksum/config-map"]


def test_generated_secrets_owned_once_and_never_leak(objs: list[dict[str, Any]]) -> None:
    data = secret_text(find(objs, "Secret", "qhub-hub"))
    assert set(TOKEN_KEYS) | set(PASSWORD_KEYS) | {"values.yaml", "cookie-secret"} == set(data)
    tokens = [data[k] for k in TOKEN_KEYS]
    assert all(re.fullmatch(r"[A-Za-z0-9]{64}", t) for t in tokens) and len(set(tokens)) == len(tokens)
    tokens += [data["cookie-secret"], *(data[k] for k in PASSWORD_KEYS)]
    others = yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"])
    assert not [t for t in tokens if t in others or t in data["values.yaml"]]
    template = (Path(__file__).parents[2] / "charts/qhub/charts/jupyterhub/templates/hub/secret.yaml").read_text()
    assert template.count('include "qhub.generatedSecret"') == 5, "every generated value goes through lookup"
    assert re.fullmatch(r"[A-Za-z0-9]{24}", data["dummy-password"]) and data["dummy-password"] not in others
    # SharedPasswordAuthenticator: admin password >= 32 characters and different from the users' one
    assert re.fullmatch(r"[A-Za-z0-9]{48}", data["dummy-admin-password"])
    assert data["dummy-admin-password"] != data["dummy-password"]
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for d in pod_specs(objs).values()
        for c in d["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert {"name": "qhub-hub", "key": "proxy-token"} in refs
    assert {"name": "qhub-hub", "key": "dummy-password"} in refs, "trial mode never accepts any password"
    assert {"name": "qhub-hub", "key": "dummy-admin-password"} in refs


def test_cookie_secret_is_32_bytes_as_hex(objs: list[dict[str, Any]]) -> None:
    """JupyterHub decodes a hex cookie secret and warns "Cookie secret is 64 bytes. It should be 32." otherwise."""
    first = secret_text(find(objs, "Secret", "qhub-hub"))["cookie-secret"]
    again = secret_text(find(render({}), "Secret", "qhub-hub"))["cookie-secret"]
    for value in (first, again):
        assert re.fullmatch(r"[0-9a-f]{64}", value), value
        assert len(bytes.fromhex(value)) == 32
    assert first != again, "random per install"


def test_cookie_secret_kept_only_when_well_formed() -> None:
    """The helper keeps a stored hex secret across upgrades and replaces one of the old 64-letter form."""
    helpers = (Path(__file__).parents[2] / "charts/qhub/templates/_helpers.tpl").read_text()
    body = helpers[helpers.index('define "qhub.generatedSecret"'):]
    body = body[: body.index("{{- end -}}\n\n")]
    assert 'regexMatch "^[0-9a-f]{64}$" $stored' in body and "sha256sum" in body


def test_existing_trial_secret_supplies_both_passwords() -> None:
    values = {"jupyterhub": {"auth": {"type": "dummy",
                                      "dummy": {"existingSecret": "trial", "key": "pw", "adminKey": "admin-pw"}}}}
    hub = find(render(values), "Deployment", "qhub-hub")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in hub["env"]}
    assert env["QHUB_DUMMY_PASSWORD"] == {"name": "trial", "key": "pw"}
    assert env["QHUB_DUMMY_ADMIN_PASSWORD"] == {"name": "trial", "key": "admin-pw", "optional": True}


def test_rbac_is_namespaced_least_privilege(objs: list[dict[str, Any]]) -> None:
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding") and "hub" in o["metadata"]["name"]]
    rules = find(objs, "Role", "qhub-hub")["rules"]
    granted = {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]}
    assert all(rule["apiGroups"] == [""] for rule in rules)
    assert {r for r, _ in granted} == {"pods", "persistentvolumeclaims", "events", "configmaps"}
    assert ("pods", "create") in granted and ("pods", "delete") in granted
    assert not {v for r, v in granted if r not in ("pods", "configmaps")} - {"get", "list", "watch"}
    # the identities record: created at run time (create cannot be limited to a name), then read and updated by name
    maps = [rule for rule in rules if rule["resources"] == ["configmaps"]]
    assert [(m.get("resourceNames"), m["verbs"]) for m in maps] == [(None, ["create"]),
                                                                   (["qhub-identities"], ["get", "update"])]
    binding = find(objs, "RoleBinding", "qhub-hub")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qhub-hub", "namespace": "qhub"}]


def test_network_policies(objs: list[dict[str, Any]]) -> None:
    hub = find(objs, "NetworkPolicy", "qhub-hub")["spec"]
    sources = [f["podSelector"]["matchLabels"] for f in hub["ingress"][0]["from"]]
    assert {"qhub.dev/access-hub": "true"} in sources
    assert any(s.get("app.kubernetes.io/component") == "proxy" for s in sources)
    assert hub["ingress"][0]["ports"] == [{"port": 8081, "protocol": "TCP"}] and len(hub["ingress"]) == 1
    user = find(objs, "NetworkPolicy", "qhub-singleuser")["spec"]
    assert user["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "singleuser"
    assert {f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in user["ingress"][0]["from"]} == {
        "proxy",
        "hub",
    }
    # egress in the cluster is an allowlist of components and ports: here (the hub alone) DNS and the proxy
    in_release = [(t["podSelector"], rule["ports"]) for rule in user["egress"] for t in rule.get("to", [])
                  if "podSelector" in t and "namespaceSelector" not in t]
    assert [(s["matchLabels"]["app.kubernetes.io/component"], p) for s, p in in_release] == [
        ("proxy", [{"port": 8000, "protocol": "TCP"}])]
    assert all("matchExpressions" not in s for s, _ in in_release), "no 'everything but' selectors"
    blocks = [t["ipBlock"] for rule in user["egress"] for t in rule.get("to", []) if "ipBlock" in t]
    assert blocks and "169.254.0.0/16" in blocks[0]["except"] and "10.0.0.0/8" in blocks[0]["except"]
    proxy = find(objs, "NetworkPolicy", "qhub-proxy")["spec"]
    api_rule = [r for r in proxy["ingress"] if r["ports"] == [{"port": 8001, "protocol": "TCP"}]][0]
    assert api_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hub"
    assert {"ports": [{"port": 8000, "protocol": "TCP"}]} in proxy["ingress"], "the public port from anywhere"
    # the proxy's egress is what it routes to: here (no platform service registered) the hub and user servers
    routed = [(t["podSelector"], rule["ports"]) for rule in proxy["egress"] for t in rule["to"]
              if "namespaceSelector" not in t]
    assert [(s["matchLabels"]["app.kubernetes.io/component"], p) for s, p in routed] == [
        ("hub", [{"port": 8081, "protocol": "TCP"}]), ("singleuser", [{"port": 8888, "protocol": "TCP"}])]
    assert all("matchExpressions" not in s for s, _ in routed), "no 'everything but' selectors"
    off = render({"global": {"networkPolicy": {"enabled": False}}})
    assert not [o for o in off if o["kind"] == "NetworkPolicy"]


def test_profiles_pinned_to_node_groups(objs: list[dict[str, Any]], tmp_path: Path) -> None:
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, tmp_path, "qhub")
    spawner = mods["qhub_hub_spawner"]
    profiles = {p["slug"]: p for p in spawner.build_profiles(settings)}
    assert list(profiles) == ["small", "gpu", "high-memory"]  # the default first
    small = profiles["small"]["kubespawner_override"]
    assert small["node_selector"] == {"qhub.dev/node-group": "user"}
    assert small["tolerations"] == [{"key": "qhub.dev/node-group", "operator": "Equal", "value": "user", "effect": "NoSchedule"}]
    assert (small["cpu_guarantee"], small["cpu_limit"], small["mem_limit"]) == (0.5, 2.0, "4G")
    assert small["image"] == "qhub/jupyterlab:0.1.0" and "extra_resource_limits" not in small
    gpu = profiles["gpu"]["kubespawner_override"]
    assert gpu["node_selector"] == {"qhub.dev/node-group": "gpu"}
    assert {t["key"] for t in gpu["tolerations"]} == {"qhub.dev/node-group", "nvidia.com/gpu"}
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"} and gpu["image"] == "qhub/jupyterlab-gpu:0.1.0"
    env = spawner.dask_gateway_env(settings)
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://qhub-dask-gateway-proxy.qhub:8786"


def test_profile_limited_to_groups(tmp_path: Path) -> None:
    objs = render({"jupyterhub": {"groups": GROUPS, "singleuser": {"profiles": {"gpu": {"groups": ["gpu-team"]}}}}})
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, tmp_path, "qhub")
    spawner = mods["qhub_hub_spawner"]
    profiles = spawner.build_profiles(settings)
    assert [p["slug"] for p in spawner.visible_profiles(profiles, {"analysts"})] == ["small", "high-memory"]
    assert "gpu" in [p["slug"] for p in spawner.visible_profiles(profiles, {"gpu-team"})]
    assert values["groups"] == {"analysts": 3001, "gpu-team": 10000 + zlib.adler32(b"gpu-team") % 50000}


def _profiles(values: dict[str, Any], tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The hub's spawner module and the profiles it builds from the chart rendered with `values`."""
    config_dir, secret_dir = write_hub_files(render(values), tmp_path)
    mods = import_hub_modules(config_dir)
    settings = mods["qhub_hub_values"].HubSettings(
        yaml.safe_load((secret_dir / "values.yaml").read_text()), secret_dir, tmp_path, "qhub")
    spawner = mods["qhub_hub_spawner"]
    return spawner, spawner.build_profiles(settings)


def test_gpu_profile_is_for_the_gpu_group_by_default(tmp_path: Path) -> None:
    """The default gpu profile names no groups: only singleuser.gpuGroup's members (gpu-users) see it."""
    spawner, profiles = _profiles({"jupyterhub": {"groups": GROUPS}}, tmp_path / "default")
    by_slug = {p["slug"]: p for p in profiles}
    assert by_slug["gpu"]["qhub_groups"] == ["gpu-users"]
    assert by_slug["small"]["qhub_groups"] == by_slug["high-memory"]["qhub_groups"] == []
    assert [p["slug"] for p in spawner.visible_profiles(profiles, {"analysts"})] == ["small", "high-memory"]
    assert [p["slug"] for p in spawner.visible_profiles(profiles, set())] == ["small", "high-memory"]
    assert "gpu" in [p["slug"] for p in spawner.visible_profiles(profiles, {"gpu-users"})]
    # another gate group, and a GPU profile opened to everyone explicitly
    spawner, profiles = _profiles({"jupyterhub": {"groups": GROUPS, "singleuser": {"gpuGroup": "gpu-team"}}},
                                  tmp_path / "renamed")
    assert {p["slug"]: p["qhub_groups"] for p in profiles}["gpu"] == ["gpu-team"]
    assert "gpu" in [p["slug"] for p in spawner.visible_profiles(profiles, {"gpu-team"})]
    spawner, profiles = _profiles({"jupyterhub": {"singleuser": {"profiles": {"gpu": {"allowAll": True}}}}},
                                  tmp_path / "open")
    assert "gpu" in [p["slug"] for p in spawner.visible_profiles(profiles, set())]


def test_spawn_defaults_come_from_a_profile_open_to_everyone(tmp_path: Path) -> None:
    """KubeSpawner's class-level sizes (used as the base every chosen profile is merged into) never carry a group-only
    profile's GPU request, even when that profile is the default."""
    from traitlets.config import Config

    values = {"jupyterhub": {"singleuser": {"profiles": {"gpu": {"default": True}, "small": {"default": False}}}}}
    config_dir, secret_dir = write_hub_files(render(values), tmp_path)
    mods = import_hub_modules(config_dir)
    settings = mods["qhub_hub_values"].HubSettings(
        yaml.safe_load((secret_dir / "values.yaml").read_text()), secret_dir, tmp_path, "qhub")
    c = Config()
    mods["qhub_hub_spawner"].configure_spawner(c, settings)
    ks = c.KubeSpawner
    assert "extra_resource_limits" not in ks and ks.node_selector == {"qhub.dev/node-group": "user"}
    assert ks.image == "qhub/jupyterlab:0.1.0"


def test_allow_all_with_groups_fails_and_gpu_group_is_checked() -> None:
    err = fail_message({"jupyterhub": {"singleuser": {"profiles": {"gpu": {"allowAll": True, "groups": ["ml"]}}}}})
    assert "jupyterhub.singleuser.profiles.gpu sets both allowAll (every user) and groups" in err
    assert "gpuGroup" in fail_message({"jupyterhub": {"singleuser": {"gpuGroup": "GPU users"}}})


def test_hub_config_file_loads(objs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    monkeypatch.setenv("QHUB_HUB_SECRET_DIR", str(secret_dir))
    monkeypatch.setenv("POD_NAMESPACE", "qhub")
    tokens = secret_text(find(objs, "Secret", "qhub-hub"))
    monkeypatch.setenv("QHUB_DUMMY_PASSWORD", tokens["dummy-password"])  # as the hub Deployment passes it
    monkeypatch.setenv("QHUB_DUMMY_ADMIN_PASSWORD", tokens["dummy-admin-password"])
    for mod in ("qhub_hub_values", "qhub_hub_setup", "qhub_hub_spawner"):
        monkeypatch.delitem(__import__("sys").modules, mod, raising=False)
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(config_dir)).load_config()
    assert c.ConfigurableHTTPProxy.api_url == "http://qhub-proxy-api.qhub:8001"
    assert c.ConfigurableHTTPProxy.auth_token == tokens["proxy-token"]
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"
    assert c.JupyterHub.authenticator_class == "jupyterhub.authenticators.shared.SharedPasswordAuthenticator"
    assert "DummyAuthenticator" not in c, "DummyAuthenticator.password is deprecated since JupyterHub 5.3"
    assert c.SharedPasswordAuthenticator.user_password == tokens["dummy-password"], "one generated password"
    assert c.SharedPasswordAuthenticator.admin_password == tokens["dummy-admin-password"]
    assert c.JupyterHub.cookie_secret == bytes.fromhex(tokens["cookie-secret"])
    assert len(c.JupyterHub.cookie_secret) == 32
    assert c.KubeSpawner.hub_connect_url == "http://qhub-proxy-public.qhub:80"
    assert c.JupyterHub.load_groups["analysts"] == {"users": ["alice"], "properties": {"gid": 3001}}
    assert c.Authenticator.allowed_users == {"alice", "bob"}
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"idle-culler"}  # every QHub service is off in HUB_ONLY
    assert "--timeout=3600" in services["idle-culler"]["command"]
    # the culler's first call comes before the hub pod is Ready (its Service has no endpoint yet): localhost
    assert "--url=http://127.0.0.1:8081/hub/api" in services["idle-culler"]["command"]
    assert "DASK_GATEWAY__ADDRESS" not in c.KubeSpawner.environment


def test_registered_services_and_tokens(tmp_path: Path) -> None:
    extra = {
        "dask-gateway": {"enabled": True},
        "global": {"daskClusters": {"enabled": True}},
        "conda-store": {"enabled": True},
        "jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": True}, "conda-store": {"enabled": True}}}},
    }
    objs = [o for o in render(extra) if o["metadata"]["name"].startswith("qhub-hub")]
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, tmp_path, "qhub")

    class Cfg(dict):
        def __getattr__(self, key: str) -> Any:
            return self.setdefault(key, Cfg())

    c = Cfg()
    mods["qhub_hub_setup"].configure_services(c, settings)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["dask-gateway"]["url"] == "http://qhub-dask-gateway-proxy:80"
    assert services["dask-gateway"]["api_token"] == (secret_dir / "token-dask-gateway").read_text()
    assert services["conda-store"]["url"] == "http://qhub-conda-store:8080/conda-store"
    assert services["conda-store"]["oauth_redirect_uri"] == "/conda-store/oauth_callback/"
    # the platform's path /conda-store answers on the proxy too (no Ingress on a local cluster)
    assert c.Proxy.extra_routes == {"/conda-store/": "http://qhub-conda-store:8080"}
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["idle-culler-service"]["scopes"] == ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    assert roles["user"]["scopes"][0] == "self" and sorted(roles["user"]["scopes"][1:]) == [
        "access:services!service=conda-store", "access:services!service=dask-gateway"]


def test_external_database() -> None:
    objs = render({"jupyterhub": {"hub": {"db": {"type": "external", "external": {"existingSecret": "hub-db"}}}}})
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == "qhub-hub-db"]
    spec = find(objs, "Deployment", "qhub-hub")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["QHUB_HUB_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hub-db", "key": "url"}
    assert "emptyDir" in [v for v in spec["volumes"] if v["name"] == "data"][0]
    egress = find(objs, "NetworkPolicy", "qhub-hub")["spec"]["egress"]
    assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in egress
    err = fail_message({"jupyterhub": {"hub": {"db": {"type": "external"}}}})
    assert "jupyterhub.hub.db.external.existingSecret is required" in err


def test_oauth_client_secret_comes_from_a_secret() -> None:
    auth = {"type": "generic-oauth", "genericOAuth": {"clientId": "qhub", "existingSecret": "oidc", "authorizeUrl": "https://id/a"}}
    objs = render({"jupyterhub": {"auth": auth}})
    env = find(objs, "Deployment", "qhub-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = [e for e in env if e["name"] == "QHUB_OAUTH_CLIENT_SECRET"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "oidc", "key": "client-secret"}
    err = fail_message({"jupyterhub": {"auth": {"type": "github"}}})
    assert "jupyterhub.auth.github.existingSecret is required" in err


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"jupyterhub": {"hub": {"logLvel": "INFO"}}}, "logLvel"),
        ({"jupyterhub": {"singleuser": {"profiles": {"small": {"cpuu": 1}}}}}, "cpuu"),
        ({"global": {"domian": "x.org"}}, "domian"),
        ({"ingress": {"classname": "nginx"}}, "classname"),
    ],
)
def test_schema_rejects_typos_naming_the_key(values: dict[str, Any], named: str) -> None:
    assert f"'{named}' not allowed" in fail_message(values)


def test_profile_on_unknown_node_group_fails() -> None:
    err = fail_message({"jupyterhub": {"singleuser": {"profiles": {"high-memory": {"nodeGroup": "highmem"}}}}})
    assert 'jupyterhub.singleuser.profiles.high-memory runs on node group "highmem"' in err and "enabled=false" in err
    ok = render({"jupyterhub": {"singleuser": {"profiles": {"gpu": {"enabled": False}}}}})
    values = yaml.safe_load(secret_text(find(ok, "Secret", "qhub-hub"))["values.yaml"])
    assert set(values["singleuser"]["profiles"]) == {"small", "high-memory"}


def test_gid_clash_fails() -> None:
    err = fail_message({"jupyterhub": {"groups": {"a": {"gid": 3001}, "b": {"gid": 3001}}}})
    assert "both get gid 3001" in err


def test_switches_must_agree_and_renamed_values_fail() -> None:
    err = fail_message({"jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": True}}}}})
    assert "dask-gateway.enabled is false but jupyterhub.hub.services.dask-gateway.enabled is true" in err
    err = fail_message({"jupyterhub": {"enabled": False}, "dask-gateway": {"enabled": True}})
    assert "dask-gateway.enabled is true but jupyterhub.enabled is false" in err
    assert "moved to global.domain" in fail_message({"domain": "hub.example.org"})
    err = fail_message({"jupyterhub": {"singleuser": {"profileList": []}}})
    assert "renamed to jupyterhub.singleuser.profiles" in err
    assert "needs a host name" in fail_message({"global": {"tls": {"mode": "secret"}}})


def test_ingress_routes() -> None:
    objs = render()
    ing = find(objs, "Ingress", "qhub")["spec"]
    assert "tls" not in ing and "host" not in ing["rules"][0]
    assert [(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
            for p in ing["rules"][0]["http"]["paths"]] == [("/", "qhub-proxy-public", 80)]
    extra = {
        "global": {"domain": "hub.example.org", "tls": {"mode": "cert-manager", "certManager": {"issuer": "le"}},
                   "daskClusters": {"enabled": True}},
        "ingress": {"className": "nginx"},
        "dask-gateway": {"enabled": True},
        "jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": True}}}},
    }
    ing_obj = find(render(extra), "Ingress", "qhub")
    assert ing_obj["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "le"}
    spec = ing_obj["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["hub.example.org"], "secretName": "qhub-tls"}]
    assert spec["rules"][0]["host"] == "hub.example.org"
    routes = {p["path"]: p["backend"]["service"]["name"] for p in spec["rules"][0]["http"]["paths"]}
    assert routes == {"/": "qhub-proxy-public", "/services/dask-gateway": "qhub-dask-gateway-proxy"}


def test_helm_test_pods() -> None:
    extra = {"dask-gateway": {"enabled": True}, "global": {"daskClusters": {"enabled": True}},
             "jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": True}}}}}
    pods = {o["metadata"]["name"]: o for o in render(extra) if o["kind"] == "Pod"}
    assert set(pods) == {"qhub-test-hub-api", "qhub-test-gateway-api"}
    for name, access, url in [
        ("qhub-test-hub-api", "qhub.dev/access-hub", "http://qhub-hub:8081/hub/api/"),
        ("qhub-test-gateway-api", "qhub.dev/access-gateway", "http://qhub-dask-gateway-proxy:80/services/dask-gateway/api/health"),
    ]:
        pod = pods[name]
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["metadata"]["labels"][access] == "true"
        assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False
        assert url in pod["spec"]["containers"][0]["command"]


def test_manifests_validate_strictly(objs: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    failures = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, "1.35.0", strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append((obj["kind"], obj["metadata"]["name"], err.message))
    assert not failures
