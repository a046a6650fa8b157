"""QHub itself on the real node: the images built here, deployed by `qhubctl deploy` from the config `qhubctl init
local` writes, every pod running its real process on `real-0`, a real login through the proxy's NodePort, and a
JupyterLab server spawned for the user and answering through the proxy."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import qhubkit
import requests
import yaml
from qhubkit import Platform, demo_access

from jitsikit import JWT_PATTERN, container_env, verify_room_token
from nodekit import wait_for
from qhubctl import realnode
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.node

NS = "qhub-real"
RELEASE = "qreal"
IMAGES = ("jupyterhub", "jupyterlab", "kubessh")


@pytest.fixture(scope="module")
def deployed(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Images pushed to the node's registry, QHub deployed with the `init local` config."""
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("qhub-real"), NS, RELEASE,
                          qhubkit.local_config(NS, RELEASE), IMAGES) as platform:
        yield platform


@pytest.fixture(autouse=True)
def _report(deployed: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(deployed, request)


def _pods(cluster: LocalCluster) -> list[dict]:
    return json.loads(cluster.kubectl("get", "pods", "-n", NS, "-o", "json"))["items"]


def test_every_pod_runs_its_real_process_on_the_real_node(cluster: LocalCluster, deployed: Platform) -> None:
    # qhubctl created the namespace enforcing Pod Security "restricted" (storage on local-path, no NFS server):
    # every pod below, and the user server spawned later, was admitted under it
    labels = json.loads(cluster.kubectl("get", "namespace", NS, "-o", "json"))["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    pods = _pods(cluster)
    assert {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods} >= {"hub", "proxy", "kubessh"}
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["spec"].get("nodeName") == realnode.NODE_NAME, f"{name} is not on the real node"
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"], f"{name}/{status['name']} is not ready"
            assert status["imageID"].startswith(f"{realnode.REGISTRY}/qhub/"), status["imageID"]
            assert status["containerID"].startswith("containerd://")


def test_login_through_the_proxy_and_the_hub_health_endpoint(deployed: Platform, tmp_path: Path) -> None:
    access_file = tmp_path / "access.json"
    code = demo_access.main([str(deployed.config), "--out", str(access_file)])
    assert code == 0
    access = json.loads(access_file.read_text())
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", access["url"])
    health = requests.get(access["url"] + "hub/health", timeout=10)
    assert health.status_code == 200
    wrong = requests.Session()
    page = wrong.get(access["url"] + "hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    refused = wrong.post(access["url"] + "hub/login", allow_redirects=False, timeout=10,
                         data={"username": access["username"], "password": "not-the-password",
                               **({"_xsrf": xsrf.group(1)} if xsrf else {})})
    assert refused.status_code in (200, 403) and "hub/spawn" not in refused.headers.get("Location", "")


def test_a_jupyterlab_server_spawns_on_the_real_node_and_answers(cluster: LocalCluster, deployed: Platform,
                                                                 tmp_path: Path) -> None:
    access_file = tmp_path / "access.json"
    assert demo_access.main([str(deployed.config), "--out", str(access_file)]) == 0
    access = json.loads(access_file.read_text())
    user, url = access["username"], access["url"]
    session = demo_access.login(url, user, access["password"])
    form = session.get(f"{url}hub/spawn", timeout=30)
    profiles = re.findall(r'name="profile"[^>]*value="([^"]+)"', form.text)
    xsrf = next(c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/hub"))
    started = time.monotonic()
    spawn = session.post(f"{url}hub/spawn", data={"_xsrf": xsrf, **({"profile": profiles[0]} if profiles else {})},
                         allow_redirects=False, timeout=60)
    assert spawn.status_code == 302, spawn.text[:500]

    def lab() -> str | None:
        try:
            page = session.get(f"{url}user/{user}/lab", timeout=30)
        except requests.RequestException:
            return None
        return page.text if page.status_code == 200 and "JupyterLab" in page.text else None

    page = wait_for("JupyterLab to answer through the proxy", lab, timeout=300, interval=3)
    assert f"/user/{user}/" in page
    spawn_seconds = time.monotonic() - started
    pod = json.loads(cluster.kubectl("get", "pod", f"jupyter-{user}", "-n", NS, "-o", "json"))
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert pod["status"]["containerStatuses"][0]["ready"]
    assert pod["spec"]["securityContext"].get("runAsNonRoot") is True
    print(f"[node] deploy {deployed.deploy_seconds:.0f}s, spawn to JupyterLab {spawn_seconds:.0f}s")


def test_helm_test_runs_real_probes_that_fail_when_the_hub_or_the_gateway_is_down(cluster: LocalCluster,
                                                                                  deployed: Platform) -> None:
    helm_test = ("test", RELEASE, "-n", NS, "--logs", "--timeout", "2m")
    passed = qhubkit.helm(cluster, *helm_test, check=False, timeout=180)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "answered: version=" in passed.stdout  # the hub's API, through the proxy
    assert "/services/dask-gateway/api/health answered: status=" in passed.stdout  # the gateway's, through its proxy
    for component, probe in (("hub", "test-hub-api"), ("dask-gateway-api", "test-gateway-api")):
        deployment = f"{RELEASE}-{component}"
        cluster.kubectl("scale", "deployment", deployment, "-n", NS, "--replicas=0")
        try:
            cluster.kubectl("wait", "--for=delete", "pod", "-n", NS, "-l", f"app.kubernetes.io/component={component}",
                            "--timeout=60s", timeout=90)
            failed = qhubkit.helm(cluster, *helm_test, check=False, timeout=240)
            assert failed.returncode != 0, f"helm test passed with {deployment} down"
            assert f"{RELEASE}-{probe}" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        finally:
            cluster.kubectl("scale", "deployment", deployment, "-n", NS, "--replicas=1")
            cluster.kubectl("rollout", "status", "deployment", deployment, "-n", NS, "--timeout=180s", timeout=200)


def test_deploy_names_the_workload_whose_image_cannot_be_pulled(cluster: LocalCluster, tmp_path: Path) -> None:
    """Jitsi on, with the images as a user without Jitsi's would have them: QHub's own from the node's registry,
    Jitsi's web, prosody, jicofo and jvb nowhere (they are not in any registry this machine reaches, and their
    software is in neither Debian, Maven Central nor npm). `qhubctl deploy` fails within its timeout and says which
    workload waits for which image, and why. Meanwhile the part of Jitsi QHub builds, the room-token service, runs
    in its container on the real node: a user logged in to the hub gets a room token from it that verifies with
    the secret prosody is given."""
    ns, release = "qhub-broken", "qbroken"
    cfg = qhubkit.local_config(ns, release)
    cfg["components"]["jitsi"] = True
    cfg["jitsi"] = {"host": "meet.qhub.test"}
    cfg["components"].update(dask_gateway=False, kubessh=False)  # not needed here, and the node's cores are few
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    qhubkit.push_images(cluster, ("jitsi-token",))
    qhubkit.wait_namespace_gone(cluster, ns)
    platform = Platform(cluster, ns, release, config, "", "", {}, 0.0)
    try:
        result, elapsed = qhubkit.qhubctl_deploy(cluster, config, timeout="40s")
        assert result.returncode == 3, result.stdout
        assert elapsed < 150, f"deploy took {elapsed:.0f}s with a 40s timeout"
        assert f"Deployment/{release}-jitsi-web" in result.stdout, result.stdout
        assert re.search(r"ErrImagePull|ImagePullBackOff", result.stdout), result.stdout
        assert re.search(rf"{re.escape(realnode.REGISTRY)}/jitsi/web:\S+", result.stdout), result.stdout
        for name in ("hub", "jitsi-token"):
            cluster.kubectl("rollout", "status", "deployment", f"{release}-{name}", "-n", ns, "--timeout=180s",
                            timeout=200)
        (token_pod,) = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l",
                                                  "app.kubernetes.io/component=jitsi-token", "-o", "json"))["items"]
        assert token_pod["spec"]["nodeName"] == realnode.NODE_NAME
        assert token_pod["status"]["containerStatuses"][0]["imageID"].startswith(f"{realnode.REGISTRY}/qhub/")
        platform.read_access()
        begun = time.monotonic()
        headers = platform.api("demo")

        def token_answer() -> requests.Response | None:
            # the hub answers logins before it has added the services' proxy routes (it first waits for each
            # service to respond): until then /services/jitsi/ goes to the hub, which has no such page
            r = requests.get(f"{platform.url}services/jitsi/token", params={"room": "standup"}, headers=headers,
                             timeout=20)
            return r if r.status_code == 200 else None

        r = wait_for("a room token from the token service through the hub's proxy", token_answer, 90)
        def get(kind: str, name: str) -> dict:
            return dict(json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o", "json")))

        prosody = get("deployment", f"{release}-jitsi-prosody")["spec"]["template"]["spec"]["containers"][0]
        prosody_env = container_env(prosody, lambda name: get("secret", name))
        claims = verify_room_token(r.json()["token"], prosody_env)
        assert claims["room"] == "standup" and claims["context"]["user"]["name"] == "demo"
        print(f"\n[node] jitsi room token from the token service on the real node in {time.monotonic() - begun:.1f}s")
        r = requests.get(f"{platform.url}services/jitsi/token", params={"room": "standup"}, timeout=20,
                         allow_redirects=False)
        assert r.status_code in (302, 401, 403) and not JWT_PATTERN.search(r.text), "no token without a hub login"
    except BaseException:
        print(f"\n[node] what the pods of {ns} did: {platform.report('jitsi')}")
        raise
    finally:
        qhubkit.uninstall(cluster, ns, release)
