"""conda-store on the real node: QHub deployed by `qhubctl deploy` with conda-store on, its server and worker in
the image built here (qhub/conda-store), and its PostgreSQL and Redis substituted through the config's
`conda_store.postgresql_image` / `redis_image` by images built here from Debian packages (qhub/postgresql,
qhub/redis; the chart's defaults are the upstream images, which cannot be pulled on this machine). Every part runs
in its container on the real node and passes its probes; conda-store answers on the platform's /conda-store path
through the hub's proxy; a user logs in to it through the hub's OAuth, with her hub login, and lists her
namespaces and environments through its REST API, which reads them from PostgreSQL.

The config declares one environment, built from a conda channel served inside the cluster (tests/node/channelkit.py,
set as `conda_store.channel_alias`, the worker let through by `conda_store.mirror_cidrs`): its packages are test
glue (tests/images/localchannel.py, `kernel_env_packages`), a `python` that borrows the JupyterLab image's
interpreter and a package only this channel has. conda-store builds it - its install step in a build pod of its
own, seen by a watch: no Secret, token or network, only the global namespace's folder writable - the user's
JupyterLab lists it as a kernel and a kernel of it imports that package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import channelkit
import pytest
import qhubkit
import requests
import yaml
from jupyterkit import Kernel
from qhubkit import Platform
from typer.testing import CliRunner

from nodekit import ARTIFACTS, wait_for
from qhubctl import realnode
from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster, bin_dir

sys.path.insert(0, str(qhubkit.REPO / "tests" / "images"))
from localchannel import (  # noqa: E402
    JOURNEY_DEMO_VERSION,
    LAB_PYTHON,
    LAB_PYTHON_VERSION,
    kernel_env_packages,
    make_channel,
)

pytestmark = [pytest.mark.node, pytest.mark.long_journey]  # run_tests.py: a session of their own

NS = "qhub-condastore"
RELEASE = "qcs"
USER = "demo"
SUBSTITUTES = ("postgresql", "redis")
IMAGES = ("jupyterhub", "jupyterlab", "conda-store", "backup", *SUBSTITUTES)
CHANNEL_NS = "qhub-condastore-channel"
ENV = "journey"
ENV_PREFIX = f"/opt/conda-store/global/envs/{ENV}"  # where JupyterLab sees it (docs/conda-store.md)
KERNEL = f"conda-store-global-{ENV}"  # qhub_kernels' name: conda-store-<namespace>-<environment>
BUILD = "conda-store-build"  # component label of build pods
# component label -> image the pod must run
PARTS = {"conda-store": "conda-store", "conda-store-worker": "conda-store",
         "conda-store-postgresql": "postgresql", "conda-store-redis": "redis"}


def _tag(name: str) -> str:
    return str(yaml.safe_load((qhubkit.REPO / "images" / name / "image.yaml").read_text())["version"])


def _config() -> dict[str, Any]:
    cfg = qhubkit.local_config(NS, RELEASE)
    # conda-store and what it needs; the other parts stay off to spare the shared node
    cfg["components"] = {**cfg.get("components", {}), "conda_store": True, "dask_gateway": False,
                         "kubessh": False, "jitsi": False}
    cfg["conda_store"] = {f"{name}_image": f"qhub/{name}:{_tag(name)}" for name in SUBSTITUTES}
    # named channels resolve on the in-cluster channel; the worker may reach pods on its port (a policy engine
    # sees the Service's pod address)
    cfg["conda_store"].update(channel_alias=channelkit.alias(CHANNEL_NS), mirror_cidrs=[realnode.POD_CIDR])
    cfg["environments"] = [{"name": ENV, "channels": ["conda-forge"],
                            "dependencies": [f"python={LAB_PYTHON_VERSION}", "qhub-journey-demo"]}]
    return cfg


class BuildPodWatch:
    """Every state of every build pod in NS, from `kubectl get --watch` started before the deploy: the worker
    creates a build pod as soon as it starts and deletes it seconds later, so only a watch sees it."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.seen: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            [str(bin_dir() / "kubectl"), "get", "pods", "-n", NS, "-l", f"app.kubernetes.io/component={BUILD}",
             "--watch", "-o", "json"], env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            self.seen.append(obj)
            buffer = buffer.strip()[end:]

    def pods(self) -> dict[str, list[dict[str, Any]]]:
        """{pod name: its states in the order seen}."""
        found: dict[str, list[dict[str, Any]]] = {}
        for obj in list(self.seen):
            found.setdefault(obj["metadata"]["name"], []).append(obj)
        return found

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


@pytest.fixture(scope="module")
def build_pods(cluster: LocalCluster) -> Iterator[BuildPodWatch]:
    watch = BuildPodWatch(cluster)
    try:
        yield watch
    finally:
        watch.stop()


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory,
             build_pods: BuildPodWatch) -> Iterator[Platform]:
    channels = tmp_path_factory.mktemp("channels")
    make_channel(channels / "conda-forge", kernel_env_packages())
    try:
        # the channel serves before the deploy: the worker builds the declared environment as soon as it starts
        with qhubkit.deployed(cluster, tmp_path_factory.mktemp("condastore"), NS, RELEASE, _config(), IMAGES,
                              timeout="8m", prepare=lambda: channelkit.serve(cluster, CHANNEL_NS, channels)) as d:
            yield d
    finally:
        channelkit.remove(cluster, CHANNEL_NS)


@pytest.fixture(autouse=True)
def _report(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(platform, request)


def _since(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _ready_pod(platform: Platform, component: str) -> dict[str, Any]:
    pods = [p for p in platform.pods(f"app.kubernetes.io/component={component}")
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, f"{component}: {[p['metadata']['name'] for p in pods]}"
    return pods[0]


def test_conda_store_its_database_and_redis_run_in_images_built_here(platform: Platform) -> None:
    for component, image in PARTS.items():
        pod = _ready_pod(platform, component)
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME, f"{name} is not on the real node"
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, (name, status)
        assert status["imageID"].startswith(f"{realnode.REGISTRY}/qhub/{image}@"), (name, status["imageID"])
        assert status["imageID"].endswith(platform.digests[image]), (name, status["imageID"])
        conditions = {c["type"]: c["lastTransitionTime"] for c in pod["status"]["conditions"]}
        print(f"[node] {component}: Ready {_since(pod['status']['startTime'], conditions['Ready']):.0f}s "
              f"after its pod started")
    # the chart runs the substitutes as the upstream images' uids (initdb needs the uid in /etc/passwd)
    pg = _ready_pod(platform, "conda-store-postgresql")
    assert pg["spec"]["securityContext"]["runAsUser"] == 70
    print(f"[node] deploy with conda-store: {platform.deploy_seconds:.0f}s")


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return 0


def _oauth_session(platform: Platform, user: str) -> requests.Session:
    """Log in to conda-store as a browser does: the hub's login form, then /conda-store/login/ -> the hub's
    authorize -> conda-store's callback, which sets conda-store's own cookie."""
    session = qhubkit.demo_access.login(platform.url, user, platform.password)
    done = session.get(f"{platform.url}conda-store/login/", timeout=60)
    assert done.status_code == 200, (done.status_code, done.url, done.text[:300])
    assert "/conda-store/oauth_callback/" in (done.history[-1].url if done.history else done.url) or \
        "/conda-store/oauth_callback/" in done.url, [r.url for r in done.history]
    assert "conda-store-auth" in session.cookies, [r.url for r in done.history]
    return session


def test_a_user_logs_in_through_the_hub_and_lists_environments(platform: Platform) -> None:
    base = f"{platform.url}conda-store/api/v1"
    begun = time.monotonic()
    wait_for("conda-store's API on the platform's /conda-store path",
             lambda: _status(f"{base}/") == 200, timeout=120, interval=2)
    health = requests.get(f"{base}/", timeout=10).json()
    assert health["status"] == "ok", health
    anonymous = requests.get(f"{base}/namespace/", timeout=30)
    assert anonymous.status_code == 200 and anonymous.json()["data"] == [], "anonymous visitors see nothing"

    session = _oauth_session(platform, USER)
    permission = session.get(f"{base}/permission/", timeout=30).json()["data"]
    assert permission["authenticated"] is True and permission["primary_namespace"] == USER, permission
    namespaces = {n["name"] for n in session.get(f"{base}/namespace/?size=100", timeout=30).json()["data"]}
    assert {USER, "global"} <= namespaces, namespaces

    # the config's environments reach the worker as files; it registers each in the global namespace (in
    # PostgreSQL, through the queue in Redis) and the server lists it to the user
    declared = {e["name"] for e in platform.config_dict()["environments"]}

    def listed() -> set[str]:
        answer = session.get(f"{base}/environment/?namespace=global&size=100", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        return {e["name"] for e in answer.json()["data"]} & declared

    wait_for("the declared environments in the user's listing", lambda: listed() == declared, timeout=180,
             interval=3)
    print(f"[node] conda-store: {USER} logged in through the hub and listed {sorted(declared)} in "
          f"{time.monotonic() - begun:.0f}s; namespaces {sorted(namespaces)}")


def test_builds_reach_public_channels_and_the_configured_mirror_only(platform: Platform) -> None:
    policy = json.loads(platform.cluster.kubectl("get", "networkpolicy", f"{RELEASE}-conda-store-worker", "-n", NS,
                                                 "-o", "json"))
    blocks = [(p["ipBlock"], sorted(port["port"] for port in rule["ports"]))
              for rule in policy["spec"]["egress"] for p in rule.get("to", []) if "ipBlock" in p]
    public = {"cidr": "0.0.0.0/0",  # the chart's qhub.privateRanges excepted
              "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]}
    assert blocks == [(public, [80, 443]), ({"cidr": realnode.POD_CIDR}, [channelkit.PORT])], blocks


def _built(session: requests.Session, base: str) -> dict[str, Any]:
    """The declared environment's first build, once it has finished (completed or failed)."""
    def current() -> int | None:
        envs = session.get(f"{base}/environment/?namespace=global&size=100", timeout=30).json()["data"]
        return next((e["current_build_id"] for e in envs if e["name"] == ENV), None)

    build_id = wait_for(f"environment {ENV} in namespace global with a build", current, timeout=180, interval=2)

    def finished() -> dict[str, Any] | None:
        build = session.get(f"{base}/build/{build_id}/", timeout=30).json()["data"]
        return build if build["status"] in ("COMPLETED", "FAILED") else None

    return dict(wait_for(f"build {build_id} of {ENV} to finish", finished, timeout=300, interval=2))


@contextmanager
def _build_log_kept(session: requests.Session, base: str, build_id: int) -> Iterator[str]:
    """The build's log; saved under build/test-artifacts/node/ (and the path printed) when the block fails."""
    log = session.get(f"{base}/build/{build_id}/logs/", timeout=30).text
    try:
        yield log
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{NS}-build-{build_id}.log"
        path.write_text(log)
        print(f"\n[node] conda-store's log of build {build_id}: {path}")
        raise


def test_declared_environment_builds_from_the_in_cluster_channel_and_runs_as_a_kernel(platform: Platform) -> None:
    """conda-store builds the config's environment from the channel served in the cluster; the user's JupyterLab
    offers it as a kernel (qhub_kernels) and a kernel of it imports the package only that channel has."""
    base = f"{platform.url}conda-store/api/v1"
    session = _oauth_session(platform, USER)
    build = _built(session, base)
    with _build_log_kept(session, base, build["id"]) as log:
        assert build["status"] == "COMPLETED", f"build {build['id']} {build['status']}:\n{log[-3000:]}"
        lock = session.get(f"{base}/build/{build['id']}/lockfile/", timeout=30)
        assert lock.status_code == 200, lock.text[:300]
        urls = {p["name"]: p["url"] for p in yaml.safe_load(lock.text)["package"]}
        assert {"python", "ipykernel", "qhub-journey-demo"} <= set(urls), urls
        assert all(u.startswith(f"{channelkit.alias(CHANNEL_NS)}conda-forge/") for u in urls.values()), urls
        built = _since(build["started_on"], build["ended_on"])
        print(f"[node] {ENV}: built in {built:.1f}s ({_since(build['scheduled_on'], build['ended_on']):.1f}s "
              f"after it was queued) from the channel in {CHANNEL_NS}")

    server = platform.start_server(USER)
    specs = requests.get(f"{platform.url}user/{USER}/api/kernelspecs", headers=platform.api(USER), timeout=30)
    assert specs.status_code == 200, specs.text[:300]
    offered = specs.json()["kernelspecs"]
    assert KERNEL in offered, sorted(offered)
    spec = offered[KERNEL]["spec"]
    assert spec["display_name"] == f"{ENV} (global)" and spec["argv"][0] == f"{ENV_PREFIX}/bin/python", spec

    begun = time.monotonic()
    kernel = Kernel(platform.url, USER, platform.token(USER), spec=KERNEL).start()
    try:
        seen = json.loads(kernel.run(
            "import json, os, sys, ipykernel, qhub_journey_demo\n"
            "print(json.dumps({'version': qhub_journey_demo.__version__, 'module': qhub_journey_demo.__file__,"
            " 'ipykernel': ipykernel.__file__, 'path': sys.path, 'executable': sys.executable,"
            " 'prefix': os.environ.get('CONDA_PREFIX')}))", timeout=120))
        first_run = time.monotonic() - begun
    finally:
        kernel.stop()
    site = f"{ENV_PREFIX}/lib/python{LAB_PYTHON_VERSION}/site-packages"
    assert seen["version"] == JOURNEY_DEMO_VERSION and seen["module"] == f"{site}/qhub_journey_demo/__init__.py", seen
    assert seen["path"][-1] == site and seen["prefix"] == ENV_PREFIX, seen
    # the glue's interpreter is the lab image's, whose ipykernel runs the kernel (the env's is a marker only)
    assert seen["executable"] == LAB_PYTHON and not seen["ipykernel"].startswith(ENV_PREFIX), seen
    print(f"[node] {USER}'s server answered in {server:.0f}s; kernel {KERNEL} started and ran its first cell in "
          f"{first_run:.1f}s")


def test_the_build_ran_in_a_pod_of_its_own_without_secrets(platform: Platform, build_pods: BuildPodWatch) -> None:
    """The install step of the declared environment ran in a build pod on the real node: the conda-store image,
    the build ServiceAccount without a token, no Secret, secret env or network path of any kind in its spec,
    the shared volume writable only at the global namespace's folder; it succeeded, its log is in the build's
    log, and the worker deleted it."""
    base = f"{platform.url}conda-store/api/v1"
    session = _oauth_session(platform, USER)
    build = _built(session, base)
    global_prefix = "/opt/conda-store/global/"
    pods = {name: states for name, states in build_pods.pods().items()
            if states[-1]["metadata"]["annotations"]["qhub.dev/conda-store-prefix"].startswith(global_prefix)}
    assert pods, f"no build pod for the global namespace was seen: {sorted(build_pods.pods())}"
    with _build_log_kept(session, base, build["id"]) as log:
        for name, states in pods.items():
            last = states[-1]
            spec = last["spec"]
            assert spec["nodeName"] == realnode.NODE_NAME, (name, spec.get("nodeName"))
            assert spec["serviceAccountName"] == f"{RELEASE}-{BUILD}" and spec["automountServiceAccountToken"] is False
            assert {next(k for k in v if k != "name") for v in spec["volumes"]} == {"persistentVolumeClaim",
                                                                                   "emptyDir"}, spec["volumes"]
            (container,) = spec["containers"]
            worker = _ready_pod(platform, "conda-store-worker")["spec"]["containers"][0]["image"]
            assert container["image"] == worker, (container["image"], worker)
            assert "envFrom" not in container and all("valueFrom" not in e for e in container["env"]), container
            writable = [m["subPath"] for m in container["volumeMounts"]
                        if m["name"] == "store" and not m.get("readOnly")]
            assert writable == ["conda-store/global"], container["volumeMounts"]
            step = container["args"][0]  # install, or pack (the conda-pack archive, after the build)
            phases = [s["status"].get("phase") for s in states]
            if step == "install":
                assert "Succeeded" in phases, phases
                assert f"build pod {name} succeeded" in log, log[-2000:]
                assert re.search(rf"\[{name}\] .*linked \d+ packages into /opt/conda-store/global/", log), log[-2000:]
            ended = [c["state"]["terminated"] for s in states
                     for c in s["status"].get("containerStatuses", []) if "terminated" in c.get("state", {})]
            created = last["metadata"]["creationTimestamp"]
            took = _since(created, ended[-1]["finishedAt"]) if ended else float("nan")
            ran = _since(ended[-1]["startedAt"], ended[-1]["finishedAt"]) if ended else float("nan")
            print(f"[node] build pod {name} ({step}): {took:.0f}s from created to finished, of which its "
                  f"container ran {ran:.0f}s; {phases[-1]}, {len(states)} states seen, spec without secrets")
    assert "install" in {states[-1]["spec"]["containers"][0]["args"][0] for states in pods.values()}
    wait_for("the worker to delete its build pods",
             lambda: platform.pods(f"app.kubernetes.io/component={BUILD}") == [], timeout=120, interval=2)
    policy = f"{NS}-{RELEASE}-{BUILD}"
    assert platform.cluster.kubectl("get", "validatingadmissionpolicybinding", policy, "-o", "name").strip()


def _psql(platform: Platform, sql: str) -> str:
    pod = _ready_pod(platform, "conda-store-postgresql")["metadata"]["name"]
    # the container's own POSTGRES_PASSWORD: local connections need the password too
    return platform.cluster.kubectl("exec", "-n", NS, pod, "--", "sh", "-c",
                                    'PGPASSWORD="$POSTGRES_PASSWORD" psql -U conda-store -d conda-store -tAc "$0"',
                                    sql).strip()


def test_backup_and_restore_bring_back_conda_store_database(platform: Platform, tmp_path: Path) -> None:
    """`qhubctl backup` dumps conda-store's database from its Job (admitted by PostgreSQL's NetworkPolicy) and
    `qhubctl restore --force` loads it back: a row changed after the backup reads as it was."""
    _psql(platform, "CREATE TABLE IF NOT EXISTS qhub_backup_probe (v text); DELETE FROM qhub_backup_probe; "
                    "INSERT INTO qhub_backup_probe VALUES ('before')")
    common = ["-c", str(platform.config), "--kubeconfig", str(platform.cluster.kubeconfig),
              "--key-file", str(tmp_path / "key")]
    archive = tmp_path / "archive"
    done = CliRunner().invoke(app, ["backup", "-o", str(archive), *common], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    manifest = json.loads(next((archive / "manifests").iterdir()).read_text())
    assert manifest["parts"]["meta"]["staged"]["conda-store.sql"]["bytes"] > 1000, manifest["parts"]["meta"]
    _psql(platform, "UPDATE qhub_backup_probe SET v = 'after'")
    done = CliRunner().invoke(app, ["restore", str(archive), *common, "--yes", "--force"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "restored the conda-store database" in done.output, done.output
    assert _psql(platform, "SELECT v FROM qhub_backup_probe") == "before"
    base = f"{platform.url}conda-store/api/v1"
    wait_for("conda-store's API after the restore", lambda: _status(f"{base}/") == 200, timeout=180, interval=2)
