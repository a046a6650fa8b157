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
from qhubctl.cli import app
from qhubctl.images import registry
from qhubctl.images.build import build
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run
from qhubctl.scaffold import config_text

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import demo_access  # noqa: E402


def app_version() -> str:
    return str(yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())["appVersion"])


def local_config(namespace: str, release: str) -> dict[str, Any]:
    """The config `qhubctl init local` writes, in its own namespace and release."""
    cfg = yaml.safe_load(config_text("local"))
    cfg.update(namespace=namespace, release_name=release)
    return dict(cfg)


def push_images(cluster: LocalCluster, names: tuple[str, ...]) -> None:
    """Build the platform images (from cache when nothing changed), push them to the real node's registry under the
    tags the chart's values name, and make the node forget older builds it holds under those tags."""
    for name in names:
        result = build(REPO / "images" / name)
        tag = str(yaml.safe_load((REPO / "images" / name / "image.yaml").read_text()).get("version") or app_version())
        registry.push(result.image, registry.parse_target(realnode.REGISTRY, f"qhub/{name}:{tag}"))
    localcluster.real_node(cluster.name).drop_stale_images()


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
    tokens: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, Kernel] = field(default_factory=dict)

    def report(self, name: str) -> Path:
        """Pods, events, descriptions and logs of the namespace, saved under build/test-artifacts/node/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.ns}-{name}.txt"
        path.write_text(localcluster.namespace_report(self.cluster, self.ns, logs=True))
        return path

    def token(self, user: str) -> str:
        """A token of `user`'s, made through the hub API with the user's own login session."""
        if user not in self.tokens:
            session = demo_access.login(self.url, user, self.password)
            self.tokens[user] = user_token(session, self.url, user, note=f"node test {self.ns}")
        return self.tokens[user]

    def api(self, user: str) -> dict[str, str]:
        return {"Authorization": f"token {self.token(user)}"}

    def start_server(self, user: str, timeout: float = 300) -> float:
        """Start `user`'s server through the hub API and wait until it answers through the proxy; the seconds."""
        begun = time.monotonic()
        started = wait_for("the hub to accept the start", lambda: self._post_start(user), timeout=60, interval=2)
        assert started.status_code in (201, 202), (started.status_code, started.text[:500])

        def answers() -> bool:
            try:
                return requests.get(f"{self.url}user/{user}/api/status", headers=self.api(user),
                                    timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_for(f"{user}'s server to answer through the proxy", answers, timeout=timeout, interval=2)
        return time.monotonic() - begun

    def _post_start(self, user: str) -> requests.Response | None:
        """The hub's answer to a start request; None while an earlier stop is still pending."""
        answer = requests.post(f"{self.url}hub/api/users/{user}/server", headers=self.api(user), timeout=120)
        return None if answer.status_code == 400 and "pending" in answer.text else answer

    def kernel(self, user: str) -> Kernel:
        """A kernel in `user`'s own running server (the server is started on first use)."""
        if user not in self.kernels:
            self.start_server(user)
            self.kernels[user] = Kernel(self.url, user, self.token(user)).start()
        return self.kernels[user]

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.cluster.kubectl("get", "pods", "-n", self.ns, "-l", selector,
                                                    "-o", "json"))["items"])


@contextmanager
def deployed(cluster: LocalCluster, work: Path, ns: str, release: str, config: dict[str, Any],
             images: tuple[str, ...]) -> Iterator[Platform]:
    """Push `images`, deploy `config` into `ns`/`release`, log in; uninstall and delete the namespace after."""
    push_images(cluster, images)
    # a namespace left by an earlier run may still be terminating: deploy into a fresh one
    run([str(localcluster.bin_dir() / "kubectl"), "wait", "--for=delete", f"namespace/{ns}", "--timeout=300s"],
        env=cluster.env, check=False, timeout=320)
    path = work / "qhub-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    begun = time.monotonic()
    result = CliRunner().invoke(app, ["deploy", "-c", str(path), "--kubeconfig", str(cluster.kubeconfig), "--yes",
                                      "--timeout", "5m"], catch_exceptions=False)
    seconds = time.monotonic() - begun
    bare = Platform(cluster, ns, release, path, "", "", {}, seconds)
    if result.exit_code != 0:
        pytest.fail(f"qhubctl deploy failed ({seconds:.0f}s):\n{result.output}\nsee {bare.report('deploy')}",
                    pytrace=False)
    access_file = work / "access.json"
    if demo_access.main([str(path), "--out", str(access_file)]) != 0:
        pytest.fail(f"no login on the deployed hub; see {bare.report('login')}", pytrace=False)
    access = json.loads(access_file.read_text())
    platform = Platform(cluster, ns, release, path, access["url"], access["password"], access, seconds)
    try:
        yield platform
    finally:
        for kernel in platform.kernels.values():
            kernel.stop()
        run([str(localcluster.bin_dir() / "helm"), "uninstall", release, "-n", ns, "--wait", "--timeout", "3m",
             "--kubeconfig", str(cluster.kubeconfig)], check=False, timeout=240)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def report_on_failure(platform: Callable[[], Platform | None], request: pytest.FixtureRequest) -> Iterator[None]:
    """For an autouse fixture: when the test failed, save the namespace report and print where."""
    failed = request.session.testsfailed
    yield
    found = platform()
    if request.session.testsfailed > failed and found is not None:
        print(f"\n[node] what the pods of {found.ns} did: {found.report(request.node.name)}")
