"""QHub deployed on the real node for a journey: images built here and pushed to the node's registry, `qhubctl
deploy` of a config derived from `qhubctl init local`'s in a namespace and release of the journey's own, real
logins, servers started through the hub's REST API, kernels reached through the proxy, and the namespace report a
failing journey leaves behind."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jupyterkit import Kernel, user_token
from typer.testing import CliRunner

from nodekit import ARTIFACTS, wait_for
from qhubctl import localcluster, realnode
from qhubctl.chart import ENV as CHART_ENV
from qhubctl.cli import app
from qhubctl.images import registry
from qhubctl.images.build import build
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import Result, run
from qhubctl.scaffold import config_text

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import demo_access  # noqa: E402


def app_version() -> str:
    return str(yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())["appVersion"])


# The real node has two cores and hosts two test sessions' platforms at once (each with its servers, workers and
# build pods), so the journeys' servers reserve a twentieth of a core rather than the quarter `init local` writes.
TINY_LAB = {"name": "tiny", "display_name": "Tiny", "default": True, "cpu": {"guarantee": 0.05, "limit": 1},
            "memory": {"guarantee": "256Mi", "limit": "1Gi"}}


def local_config(namespace: str, release: str) -> dict[str, Any]:
    """The config `qhubctl init local` writes, in its own namespace and release, with TINY_LAB the only lab
    profile."""
    cfg = yaml.safe_load(config_text("local"))
    cfg.update(namespace=namespace, release_name=release)
    cfg["profiles"]["jupyterlab"] = [dict(TINY_LAB)]
    return dict(cfg)


def push_images(cluster: LocalCluster, names: tuple[str, ...]) -> dict[str, str]:
    """Build the platform images (from cache when nothing changed), push them to the real node's registry under the
    tags the chart's values name, and make the node forget older builds it holds under those tags; the manifest
    digest pushed for each image."""
    digests = {}
    for name in names:
        result = build(REPO / "images" / name)
        tag = str(yaml.safe_load((REPO / "images" / name / "image.yaml").read_text()).get("version") or app_version())
        registry.push(result.image, registry.parse_target(realnode.REGISTRY, f"qhub/{name}:{tag}"))
        digests[name] = result.image.manifest_digest
    localcluster.real_node(cluster.name).drop_stale_images()
    return digests


def helm(cluster: LocalCluster, *args: str, timeout: float = 360, check: bool = True) -> Result:
    """The cached helm binary against the local cluster."""
    return run([str(localcluster.bin_dir() / "helm"), *args, "--kubeconfig", str(cluster.kubeconfig)],
               check=check, timeout=timeout)


def qhubctl_deploy(cluster: LocalCluster, config: Path, timeout: str = "5m",
                   chart: Path | None = None) -> tuple[Result, float]:
    """`qhubctl [--chart CHART] deploy --yes` of `config` (as a CLI run); its result (exit code, output) and the
    seconds it took. Without `chart`, the chart qhubctl finds itself (this checkout's)."""
    args = ["--chart", str(chart)] if chart else []
    args += ["deploy", "-c", str(config), "--kubeconfig", str(cluster.kubeconfig), "--yes", "--timeout", timeout]
    begun = time.monotonic()
    # --chart sets QHUB_CHART for the tools qhubctl starts: the runner puts the variable back afterwards
    result = CliRunner().invoke(app, args, env={CHART_ENV: None}, catch_exceptions=False)
    return Result(["qhubctl", *args], result.exit_code, result.output, ""), time.monotonic() - begun


def wait_namespace_gone(cluster: LocalCluster, ns: str) -> None:
    """A namespace left by an earlier run may still be terminating (it refuses new objects): wait until it is gone;
    a no-op when there is none."""
    run([str(localcluster.bin_dir() / "kubectl"), "wait", "--for=delete", f"namespace/{ns}", "--timeout=300s"],
        env=cluster.env, check=False, timeout=320)


def uninstall(cluster: LocalCluster, ns: str, release: str) -> None:
    """Uninstall the release and delete its namespace and its Dask clusters' (without waiting for them to go), and
    the shared storage's volume qhubctl made for the latter (storage.type existing; the data stays)."""
    helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m", timeout=240, check=False)
    cluster.kubectl("delete", "namespace", ns, f"{ns}-dask", "--wait=false", "--ignore-not-found")
    cluster.kubectl("delete", "persistentvolume", f"{ns}-dask-{release}-shared", "--wait=false", "--ignore-not-found")


@dataclass
class Platform:
    """A deployed QHub: its URL, the shared password of its dummy login, and each user's token and kernel."""

    cluster: LocalCluster
    ns: str
    release: str
    config: Path
    url: str
    password: str
    access: dict[str, Any]
    deploy_seconds: float
    digests: dict[str, str] = field(default_factory=dict)  # image name -> manifest digest pushed for this deploy
    deploy_output: str = ""  # what `qhubctl deploy` printed
    tokens: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, Kernel] = field(default_factory=dict)

    def report(self, name: str) -> Path:
        """Pods, events, descriptions and logs of the namespace, and what the real node has allocated to which pods
        (two test sessions share it), saved under build/test-artifacts/node/; the pods and the last events are also
        printed, so a CI log that outlives the artifacts shows them."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.ns}-{name}.txt"
        node = run([str(localcluster.bin_dir() / "kubectl"), "describe", "node", realnode.NODE_NAME],
                   env=self.cluster.env, check=False).stdout
        allocated = node[node.find("Non-terminated Pods"):node.find("Events:")]
        path.write_text(localcluster.namespace_report(self.cluster, self.ns, logs=True) + "\n" + allocated)
        print(localcluster.namespace_report(self.cluster, self.ns, event_lines=12))
        print(allocated[allocated.find("Allocated resources"):])
        return path

    def login(self, user: str) -> requests.Session:
        """A session logged in as `user` through the hub's login form (the admin has a password of his own)."""
        admin = user == self.access.get("admin_username")
        return demo_access.login(self.url, user, self.access["admin_password"] if admin else self.password)

    def token(self, user: str) -> str:
        """A token of `user`'s, made through the hub API with the user's own login session."""
        if user not in self.tokens:
            self.tokens[user] = user_token(self.login(user), self.url, user, note=f"node test {self.ns}")
        return self.tokens[user]

    def api(self, user: str) -> dict[str, str]:
        return {"Authorization": f"token {self.token(user)}"}

    def hub_api(self, method: str, path: str, token: str, **kw: Any) -> requests.Response:
        """A call to the hub's REST API (`path` after /hub/api) through the proxy with `token`."""
        return requests.request(method, f"{self.url}hub/api{path}", headers={"Authorization": f"token {token}"},
                                timeout=60, **kw)

    def start_server(self, user: str, timeout: float = 300) -> float:
        """Start `user`'s server through the hub API (unless it runs already) and wait until it answers through the
        proxy; the seconds."""
        begun = time.monotonic()
        # a tuple: a Response is falsy for an error status, which must end the wait, not prolong it
        started, = wait_for("the hub to accept the start", lambda: (r := self.post_start(user)) is not None and (r,),
                            timeout=60, interval=2)
        running = started.status_code == 400 and "already running" in started.text
        assert started.status_code in (201, 202) or running, (started.status_code, started.text[:500])

        def answers() -> bool:
            try:
                return requests.get(f"{self.url}user/{user}/api/status", headers=self.api(user),
                                    timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_for(f"{user}'s server to answer through the proxy", answers, timeout=timeout, interval=2)
        return time.monotonic() - begun

    def post_start(self, user: str) -> requests.Response | None:
        """The hub's answer to a start request; None while an earlier stop is still pending, or while the proxy
        cannot reach a hub that was just restarted (502/503: a Ready pod is routed to once kube-proxy has its
        address, a few seconds later)."""
        answer = requests.post(f"{self.url}hub/api/users/{user}/server", headers=self.api(user), timeout=120)
        pending = answer.status_code == 400 and "pending" in answer.text
        return None if pending or answer.status_code in (502, 503) else answer

    def kernel(self, user: str) -> Kernel:
        """A kernel in `user`'s own running server (the server is started on first use)."""
        if user not in self.kernels:
            self.start_server(user)
            self.kernels[user] = Kernel(self.url, user, self.token(user)).start()
        return self.kernels[user]

    def pods(self, selector: str, ns: str | None = None) -> list[dict[str, Any]]:
        """Pods matching `selector` in the release namespace (or `ns`)."""
        return list(json.loads(self.cluster.kubectl("get", "pods", "-n", ns or self.ns, "-l", selector,
                                                    "-o", "json"))["items"])

    def identities(self) -> dict[str, Any]:
        """The hub's record of uids and gids (the `<release>-identities` ConfigMap)."""
        cm = json.loads(self.cluster.kubectl("get", "configmap", f"{self.release}-identities", "-n", self.ns,
                                             "-o", "json"))
        return dict(json.loads(cm["data"]["identities.json"]))

    def read_access(self) -> None:
        """The URL and logins of the deployed hub (again after a deploy that generated new secrets); tokens made
        before are forgotten."""
        access_file = self.config.parent / "access.json"
        if demo_access.main([str(self.config), "--out", str(access_file)]) != 0:
            pytest.fail(f"no login on the deployed hub; see {self.report('login')}", pytrace=False)
        self.access = json.loads(access_file.read_text())
        self.url, self.password = self.access["url"], self.access["password"]
        self.tokens.clear()

    def config_dict(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config.read_text()))

    def redeploy(self, config: dict[str, Any], timeout: str = "5m",
                 chart: Path | None = None) -> tuple[Result, float]:
        """Write `config` over the deployed one and `qhubctl deploy` it (with `chart` when given); the result and
        the seconds it took."""
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        return qhubctl_deploy(self.cluster, self.config, timeout, chart)


@contextmanager
def deployed(cluster: LocalCluster, work: Path, ns: str, release: str, config: dict[str, Any],
             images: tuple[str, ...], *, timeout: str = "5m",
             prepare: Callable[[], None] | None = None) -> Iterator[Platform]:
    """Push `images`, call `prepare` (what the deploy needs running first, in the pushed images), deploy `config`
    into `ns`/`release`, log in; uninstall and delete the namespace after."""
    digests = push_images(cluster, images)
    if prepare:
        prepare()
    wait_namespace_gone(cluster, ns)
    wait_namespace_gone(cluster, f"{ns}-dask")
    path = work / "qhub-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    platform = Platform(cluster, ns, release, path, "", "", {}, 0.0, digests)
    try:
        result, platform.deploy_seconds = qhubctl_deploy(cluster, path, timeout)
        platform.deploy_output = result.stdout
        if result.returncode != 0:
            pytest.fail(f"qhubctl deploy failed ({platform.deploy_seconds:.0f}s):\n{result.stdout}\n"
                        f"see {platform.report('deploy')}", pytrace=False)
        platform.read_access()
        yield platform
    finally:
        for kernel in platform.kernels.values():
            kernel.stop()
        uninstall(cluster, ns, release)


def report_on_failure(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    """For an autouse fixture: when the test failed, save the namespace report and print where."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(f"\n[node] what the pods of {platform.ns} did: {platform.report(request.node.name)}")
