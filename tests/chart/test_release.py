"""The make targets a release runs besides `make images` (.github/workflows/release.yaml): `make release-check`
refuses a tag that is not the chart's version and appVersion, and `make chart-push` logs in and pushes the packaged
chart to a real OCI registry (Debian's docker-registry on loopback, with htpasswd logins), from which Helm reads it
back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from qhubctl.proc import Result, run

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART_YAML = yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())
USER, PASSWORD = "releaser", "s3cret-for-the-test"


def make(*args: str, env: dict[str, str] | None = None) -> Result:
    # the variables a release sets come from the environment, as in the workflow; none leaks in from this shell
    clean = {k: "" for k in ("TAG", "REGISTRY", "CHART_REPO", "QHUB_REGISTRY_USERNAME", "QHUB_REGISTRY_PASSWORD")}
    return run(["make", "--no-print-directory", *args], cwd=REPO, env={**clean, **(env or {})}, check=False,
               timeout=300)


def test_release_check_refuses_a_tag_other_than_the_chart_version() -> None:
    version = str(CHART_YAML["version"])
    assert str(CHART_YAML["appVersion"]) == version, "a release publishes one version: chart and images"
    ok = make("release-check", env={"TAG": version, "REGISTRY": "registry.invalid/qhub"})
    assert ok.ok and f"{version} pushes images and chart to registry.invalid/qhub" in ok.stdout, ok.stderr
    other = make("release-check", env={"TAG": f"{version}1", "REGISTRY": "registry.invalid/qhub"})
    assert not other.ok and f"TAG {version}1 is not the chart's version {version}" in other.stderr, other.stderr
    no_registry = make("release-check", env={"TAG": version})
    assert not no_registry.ok and "REGISTRY is empty" in no_registry.stderr, no_registry.stderr
    no_tag = make("release-check", env={"REGISTRY": "registry.invalid/qhub"})
    assert not no_tag.ok and "TAG is empty" in no_tag.stderr, no_tag.stderr


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port, accepting only USER with PASSWORD."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry not found: install the Debian package docker-registry (ci/apt-packages.txt)",
                    pytrace=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    (tmp_path / "htpasswd").write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()))
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": "qhub-release-test", "path": str(tmp_path / "htpasswd")}},
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    with open(tmp_path / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:  # 401 without a login: it is up, and asks for one
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer within 30s"
            time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


def test_chart_push_logs_in_and_pushes_the_packaged_chart(registry: str, tmp_path: Path) -> None:
    version = str(CHART_YAML["version"])
    dist = tmp_path / "dist"
    run(["helm", "package", str(REPO / "charts" / "qhub"), "--destination", str(dist)], timeout=120)
    # Helm's own registry config of this "user": chart-push must not store the login there
    user_config = tmp_path / "helm-user" / "registry.json"
    env = {"DIST": str(dist), "REGISTRY": f"{registry}/qhub", "HELM_REGISTRY_CONFIG": str(user_config)}

    nowhere = make("chart-push", env={"DIST": str(dist)})
    assert not nowhere.ok and "set CHART_REPO=oci://<registry>/<path>" in nowhere.stderr, nowhere.stderr
    unpacked = make("chart-push", env={**env, "DIST": str(tmp_path / "empty")})
    assert not unpacked.ok and "run `make package` first" in unpacked.stderr, unpacked.stderr

    refused = make("chart-push", env=env)
    assert not refused.ok and "basic credential not found" in refused.stderr, refused.stderr
    wrong = make("chart-push", env={**env, "QHUB_REGISTRY_USERNAME": USER, "QHUB_REGISTRY_PASSWORD": "wrong"})
    assert not wrong.ok and "401" in wrong.stderr, wrong.stdout + wrong.stderr

    pushed = make("chart-push", env={**env, "QHUB_REGISTRY_USERNAME": USER, "QHUB_REGISTRY_PASSWORD": PASSWORD})
    assert pushed.ok, pushed.stderr
    assert f"Pushed: {registry}/qhub/charts/qhub:{version}" in pushed.stdout, pushed.stdout
    assert not user_config.exists(), "the login went to the user's Helm registry config"

    # Helm reads it back from the registry, with a login of its own
    reader = tmp_path / "reader.json"
    run(["helm", "registry", "login", registry, "--plain-http", "--registry-config", str(reader), "--username", USER,
         "--password-stdin"], input=PASSWORD, timeout=60)
    shown = run(["helm", "show", "chart", f"oci://{registry}/qhub/charts/qhub", "--version", version, "--plain-http",
                 "--registry-config", str(reader)], timeout=120).stdout
    chart = yaml.safe_load(shown)
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("qhub", version, str(CHART_YAML["appVersion"]))
    assert {d["name"] for d in chart["dependencies"]} >= {"nfs", "jupyterhub", "dask-gateway"}
    assert os.path.getsize(dist / f"qhub-{version}.tgz") > 0
