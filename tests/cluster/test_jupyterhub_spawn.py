"""A real JupyterHub running the chart's own hub config against the test cluster, and the subchart's install.

The hub runs on the host (containers never run on the simulated nodes): jupyterhub with the rendered
jupyterhub_config.py and hub Secret, configurable-http-proxy in front of it, and KubeSpawner talking to the
API server as the chart's hub ServiceAccount, so the chart's Role is what is exercised. The user pod becomes
Ready under kwok but nothing listens in it, so the test asserts on the pod KubeSpawner created, then stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jhrender import HUB_ONLY, REPO, find, merge, render, secret_text, write_hub_files

from qhubctl.localcluster import LocalCluster, cache_dir
from qhubctl.proc import run

pytestmark = pytest.mark.cluster
RELEASE = "qhub"
TEST_TOKEN = uuid.uuid4().hex
SPAWN_VALUES: dict[str, Any] = {
    "dask-gateway": {"enabled": True},
    "global": {"daskClusters": {"enabled": True}},  # follows dask-gateway.enabled
    "jupyterhub": {
        "hub": {"services": {"dask-gateway": {"enabled": True}}},
        # the trial login, open to any name with its shared password (native, the default: test_native_login.py)
        "auth": {"type": "dummy", "allowAll": True},
        "groups": {"analysts": {"gid": 3001}, "gpu-team": {}},
        "singleuser": {"profiles": {"gpu": {"groups": ["gpu-team"]}}, "extraEnv": {"QHUB_TEST": "1"}},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chp_binary() -> str:
    """configurable-http-proxy from PATH or $QHUB_CACHE/node (npm install --prefix $QHUB_CACHE/node ...)."""
    found = shutil.which("configurable-http-proxy") or shutil.which(
        "configurable-http-proxy", path=str(cache_dir() / "node" / "node_modules" / ".bin")
    )
    if not found:
        pytest.fail(
            "configurable-http-proxy not found: npm install --prefix $QHUB_CACHE/node configurable-http-proxy",
            pytrace=False,
        )
    return found


def service_account_kubeconfig(cluster: LocalCluster, ns: str, dest: Path) -> Path:
    """A kubeconfig that authenticates as the chart's hub ServiceAccount (token from the TokenRequest API)."""
    token = cluster.kubectl("create", "token", f"{RELEASE}-hub", "-n", ns, "--duration", "2h").strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": "hub", "user": {"token": token}}],
        "contexts": [{"name": "hub", "context": {"cluster": server["name"], "user": "hub", "namespace": ns}}],
        "current-context": "hub",
    }
    dest.write_text(yaml.safe_dump(config))
    return dest


def wrapper_config(config_dir: Path, work: Path, ports: dict[str, int]) -> Path:
    """Loads the chart's jupyterhub_config.py unchanged, then moves only the network addresses to loopback and adds
    an admin API token for the test."""
    text = f"""
c = get_config()  # noqa: F821
load_subconfig({str(config_dir / "jupyterhub_config.py")!r})  # noqa: F821
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{ports['hub']}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{ports['hub']}"
c.JupyterHub.bind_url = "http://127.0.0.1:{ports['public']}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports['api']}"
c.JupyterHub.db_url = "sqlite:///{work / 'jupyterhub.sqlite'}"
c.JupyterHub.services.append({{"name": "pytest", "api_token": {TEST_TOKEN!r}}})
c.JupyterHub.load_roles.append({{"name": "pytest", "scopes": ["admin:users", "admin:servers", "admin:groups"],
                                 "services": ["pytest"]}})
"""
    path = work / "test_config.py"
    path.write_text(text)
    return path


class Hub:
    """The hub's REST API through the proxy, as an admin service."""

    def __init__(self, port: int, dummy_password: str = "") -> None:
        self.dummy_password = dummy_password
        self.base = f"http://127.0.0.1:{port}/hub/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {TEST_TOKEN}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=30, **kw)

    def wait_up(self, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"jupyterhub exited with {proc.returncode}:\n{log.read_text()[-4000:]}", pytrace=False)
            try:
                if self.call("GET", "/").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        pytest.fail(f"the hub did not answer in {timeout}s:\n{log.read_text()[-4000:]}", pytrace=False)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture()
def namespace(cluster: LocalCluster) -> Iterator[str]:
    ns = f"jh-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


@pytest.fixture()
def hub(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[tuple[Hub, Path]]:
    """The hub (chart config, hub ServiceAccount rights) and its proxy, running on the host."""
    with running_hub(cluster, namespace, tmp_path, SPAWN_VALUES) as started:
        yield started


@contextlib.contextmanager
def running_hub(cluster: LocalCluster, namespace: str, tmp_path: Path,
                values: dict[str, Any]) -> Iterator[tuple[Hub, Path]]:
    """The hub rendered from `values` and its proxy on the host; yields its admin API client and shared folder."""
    objs = render(values, namespace=namespace)
    rbac = [find(objs, kind, f"{RELEASE}-hub") for kind in ("ServiceAccount", "Role", "RoleBinding")]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in rbac))
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    ports = {"hub": free_port(), "public": free_port(), "api": free_port()}
    hub_secret = secret_text(find(objs, "Secret", f"{RELEASE}-hub"))
    proxy_token = hub_secret["proxy-token"]
    logs = tmp_path / "chp.log", tmp_path / "hub.log"
    chp = subprocess.Popen(
        [chp_binary(), "--ip", "127.0.0.1", "--port", str(ports["public"]), "--api-ip", "127.0.0.1",
         "--api-port", str(ports["api"]), "--default-target", f"http://127.0.0.1:{ports['hub']}"],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
        stdout=logs[0].open("wb"), stderr=subprocess.STDOUT,
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(service_account_kubeconfig(cluster, namespace, tmp_path / "hub.kubeconfig")),
        "POD_NAMESPACE": namespace,
        "QHUB_HUB_SECRET_DIR": str(secret_dir),
        "QHUB_SHARED_DIR": str(shared),
        "QHUB_DUMMY_PASSWORD": hub_secret["dummy-password"],  # as the hub Deployment passes it
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    jupyterhub = Path(sys.executable).parent / "jupyterhub"
    proc = subprocess.Popen(
        [str(jupyterhub), "-f", str(wrapper_config(config_dir, tmp_path, ports))],
        cwd=tmp_path, env=env, stdout=logs[1].open("wb"), stderr=subprocess.STDOUT,
    )
    client = Hub(ports["public"], hub_secret["dummy-password"])
    try:
        client.wait_up(proc, logs[1])
        yield client, shared
    finally:
        stop(proc)
        stop(chp)


def user_pods(cluster: LocalCluster, ns: str, user: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", f"hub.jupyter.org/username={user}", "-o", "json")
    return json.loads(out)["items"]


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)


def test_spawn_creates_the_profiled_pod(
    cluster: LocalCluster, namespace: str, hub: tuple[Hub, Path], tmp_path: Path
) -> None:
    api, shared = hub
    assert api.call("POST", "/users/carol").status_code == 201
    assert api.call("POST", "/groups/analysts/users", json={"users": ["carol"]}).status_code == 200
    started = api.call("POST", "/users/carol/server", json={"profile": "high-memory"})
    assert started.status_code in (201, 202), started.text

    pod = wait_for(lambda: next(iter(user_pods(cluster, namespace, "carol")), None), 60, "carol's pod")
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "singleuser"
    assert pod["metadata"]["labels"]["qhub.dev/access-gateway"] == "true"
    assert "qhub.dev/access-hub" not in pod["metadata"]["labels"]
    assert spec["nodeSelector"] == {"qhub.dev/node-group": "user"}
    assert {"key": "qhub.dev/node-group", "operator": "Equal", "value": "user", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    container = spec["containers"][0]
    assert container["image"] == "qhub/jupyterlab:0.1.0"
    res = container["resources"]
    assert (res["requests"]["cpu"], res["limits"]["cpu"]) == ("2", "4")
    assert (int(res["requests"]["memory"]), int(res["limits"]["memory"])) == (8 * 1024**3, 16 * 1024**3)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/home/carol"]["subPath"] == "home/carol"
    assert mounts["/shared/analysts"]["subPath"] == "shared/analysts"
    assert "/shared/gpu-team" not in mounts
    claim = next(v for v in spec["volumes"] if v["name"] == mounts["/home/carol"]["name"])
    assert claim["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-shared"
    env = {e["name"]: e.get("value") for e in container["env"]}
    gw = f"{RELEASE}-dask-gateway-proxy.{namespace}"
    assert env["DASK_GATEWAY__ADDRESS"] == f"http://{gw}:80/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == f"gateway://{gw}:8786"
    assert env["DASK_GATEWAY__PUBLIC_ADDRESS"] == "/services/dask-gateway/"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert env["HOME"] == "/home/carol" and env["QHUB_TEST"] == "1"
    assert env["JUPYTERHUB_API_URL"] == f"http://{RELEASE}-proxy-public.{namespace}:80/hub/api"
    assert container["workingDir"] == "/home/carol"
    # carol runs as her own uid, recorded by the hub in the identities ConfigMap (the hub's ServiceAccount
    # created it), with her uid as primary group, analysts' gid as supplementary group and no fsGroup
    record = json.loads(json.loads(cluster.kubectl("get", "configmap", f"{RELEASE}-identities", "-n", namespace,
                                                   "-o", "json"))["data"]["identities.json"])
    uid = record["users"]["carol"]
    assert uid >= 100000 and record["groups"]["analysts"] == 3001 and record["nextUid"] > uid
    psc, csc = spec["securityContext"], container["securityContext"]
    assert "fsGroup" not in psc
    assert (psc["supplementalGroups"], psc["seccompProfile"]) == ([3001], {"type": "RuntimeDefault"})
    assert (csc["runAsUser"], csc["runAsGroup"], csc["runAsNonRoot"]) == (uid, uid, True)
    assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    # the home is made by the pod's first init container, as carol, from the server's own image
    init = spec["initContainers"][0]
    assert init["name"] == "home" and init["image"] == container["image"]
    assert (init["securityContext"]["runAsUser"], init["securityContext"]["runAsGroup"]) == (uid, uid)
    assert init["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "QHUB_HOME_NAME", "value": "carol"} in init["env"]
    assert init["volumeMounts"] == [{"name": "shared", "mountPath": "/mnt/home", "subPath": "home"}]

    homes, group = shared / "home", shared / "shared" / "analysts"
    assert stat.S_IMODE(homes.stat().st_mode) == 0o1733 and not (homes / "carol").exists()
    assert group.stat().st_gid == 3001 and stat.S_IMODE(group.stat().st_mode) == 0o2770

    # The gpu profile is limited to gpu-team: carol may not pick it, and no pod is made for it.
    assert api.call("POST", "/users/dave").status_code == 201
    refused = api.call("POST", "/users/dave/server", json={"profile": "gpu"})
    assert refused.status_code >= 400, refused.text
    assert "No such profile: gpu" in (tmp_path / "hub.log").read_text(), "refused for the profile, not another error"
    assert not user_pods(cluster, namespace, "dave")

    assert api.call("DELETE", "/users/carol/server").status_code in (202, 204)
    wait_for(lambda: not user_pods(cluster, namespace, "carol"), 60, "carol's pod to be deleted")


def test_subchart_installs_and_keeps_its_secrets(cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    values = merge(HUB_ONLY, {"sharedStorage": {"existingStorageClass": "standard"}})
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    base = [str(REPO / "charts" / "qhub"), "-n", namespace, "-f", str(REPO / "ci" / "local-cluster-values.yaml"),
            "-f", str(values_file), "--wait", "--timeout", "4m"]
    run(["helm", "install", RELEASE, *base], env=cluster.env, timeout=300)
    deployments = json.loads(cluster.kubectl("get", "deploy", "-n", namespace, "-o", "json"))["items"]
    assert {d["metadata"]["name"] for d in deployments} == {f"{RELEASE}-hub", f"{RELEASE}-proxy"}
    assert all(d["status"].get("readyReplicas") == 1 for d in deployments)
    before = json.loads(cluster.kubectl("get", "secret", f"{RELEASE}-hub", "-n", namespace, "-o", "json"))["data"]

    run(["helm", "upgrade", RELEASE, *base, "--set", "jupyterhub.cull.timeout=7200"], env=cluster.env, timeout=300)
    after = json.loads(cluster.kubectl("get", "secret", f"{RELEASE}-hub", "-n", namespace, "-o", "json"))["data"]
    for key in ("proxy-token", "cookie-secret", "token-dask-gateway", "token-conda-store", "token-kubessh", "token-jitsi"):
        assert after[key] == before[key], f"{key} changed on upgrade"
    assert after["values.yaml"] != before["values.yaml"]
    hub = json.loads(cluster.kubectl("get", "deploy", f"{RELEASE}-hub", "-n", namespace, "-o", "json"))
    assert hub["metadata"]["generation"] == 2, "the config change rolled the hub (checksum/values)"
    run(["helm", "uninstall", RELEASE, "-n", namespace, "--wait"], env=cluster.env, timeout=180)


def test_trial_login_needs_the_generated_password(hub: tuple[Hub, Path]) -> None:
    """auth.type dummy accepts only the shared password generated into the hub Secret."""
    api, _ = hub
    site = api.base.rsplit("/api", 1)[0]

    def login(password: str) -> requests.Response:
        browser = requests.Session()
        browser.get(f"{site}/login", timeout=30)
        form = {"username": "dora", "password": password, "_xsrf": browser.cookies.get("_xsrf", "")}
        return browser.post(f"{site}/login", data=form, allow_redirects=False, timeout=30)

    assert login("anything-at-all").status_code == 403
    assert login(api.dummy_password).status_code == 302
