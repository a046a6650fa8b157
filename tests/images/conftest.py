"""Fixtures for image tests: a local conda channel, a private $QHUB_CACHE, Debian's docker-registry on loopback
and Debian's dockerd, all started here and stopped at the end of the session.

A missing tool is a failure naming the Debian package to install, never a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess  # daemons (registry, dockerd) are long-lived: proc.run, which waits for exit, does not fit
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localchannel import make_channel  # noqa: E402
from qhubctl.proc import run  # noqa: E402


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: `apt-get install -y {package}`", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{what} did not come up within {timeout}s ({last})", pytrace=False)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def qhub_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache for the module's tests; Debian packages for the base come from the user's cache if present.
    Module-scoped: QHUB_CACHE is process-wide, and later tests (the local cluster's tools) need the real one."""
    cache = tmp_path_factory.mktemp("qhub-cache")
    old = os.environ.get("QHUB_CACHE")
    user_debs = Path(old or Path.home() / ".cache" / "qhub") / "images" / "debs"
    if user_debs.is_dir():
        shutil.copytree(user_debs, cache / "images" / "debs")
    os.environ["QHUB_CACHE"] = str(cache)
    yield cache
    # keep downloaded base packages for the next session (a build checks them against base.lock.json)
    user_debs.mkdir(parents=True, exist_ok=True)
    for deb in (cache / "images" / "debs").glob("*.deb"):
        if not (user_debs / deb.name).exists():
            shutil.copy2(deb, user_debs / deb.name)
    if old is None:
        os.environ.pop("QHUB_CACHE", None)
    else:
        os.environ["QHUB_CACHE"] = old


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_channel(tmp_path_factory.mktemp("channel"))


@pytest.fixture
def make_spec(tmp_path: Path, channel: Path):  # noqa: ANN201
    """Write a spec directory using the local channel; returns its path."""

    def write(deps: list[str], name: str = "demo", image: dict | None = None, channels: list[str] | None = None,
              directory: Path | None = None) -> Path:
        spec = directory or tmp_path / name
        spec.mkdir(parents=True, exist_ok=True)
        env = {"name": name, "channels": channels or [channel.as_uri()], "dependencies": deps}
        (spec / "environment.yaml").write_text(json.dumps(env, indent=2))
        (spec / "image.yaml").write_text(json.dumps({"base": "busybox", **(image or {})}, indent=2))
        return spec

    return write


@dataclass
class Registry:
    host: str
    log: Path
    proc: subprocess.Popen

    def requests(self, method: str, path_re: str = ".*") -> list[str]:
        """Access-log lines for `method` on a path matching `path_re`."""
        pattern = re.compile(rf"\"{method} (/v2/{path_re}\S*) HTTP")
        return [m.group(1) for line in self.log.read_text().splitlines() if (m := pattern.search(line))]

    def blob_uploads(self, repository: str) -> int:
        """Finished blob uploads (the closing PUT of each upload session) into `repository`."""
        return len(self.requests("PUT", re.escape(repository) + r"/blobs/uploads/"))


def start_registry(root: Path, auth: str = "") -> Registry:
    """docker-registry on a free loopback port, storing under `root`; `auth` is the config's auth: section."""
    binary = need("docker-registry", "docker-registry")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text()[-2000:]}", pytrace=False)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)  # noqa: S310
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        return True

    wait_until(up, 30, "docker-registry")
    return Registry(f"127.0.0.1:{port}", log, proc)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    stop(reg.proc)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, str]]:
    """A registry that wants HTTP basic auth (htpasswd with bcrypt, as docker-registry requires)."""
    import bcrypt

    root = tmp_path_factory.mktemp("auth-registry")
    user, password = "qhub", "s3cret-for-tests"
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    reg = start_registry(root / "reg", f"auth:\n  htpasswd:\n    realm: qhub-test\n    path: {htpasswd}\n")
    yield reg, user, password
    stop(reg.proc)


@dataclass
class Docker:
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 300) -> str:
        return run(["docker", *args], env=self.env, timeout=timeout).stdout


@contextlib.contextmanager
def _docker_data_root(tmp: Path) -> Iterator[Path]:
    """The dockerd's data root: $QHUB_CACHE/test-dockerd, kept between runs so that a pull of an unchanged image
    finds its layers there (the platform and GPU images are GBs; a fresh root unpacked them all again, and deleting
    the old test folder took minutes). A second test session running at the same time gets a fresh folder."""
    cache = Path(os.environ.get("QHUB_CACHE") or Path.home() / ".cache" / "qhub") / "test-dockerd"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield tmp / "data"
            return
        yield cache / "data"


def _forget_other_sessions_images(docker: Docker, pulled_before: set[str]) -> None:
    """Remove the images an earlier session left (tagged with that session's registry port): what this session
    pulled stays for the next one, so the kept data root holds one run's images."""
    refs = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split()
    stale = [r for r in refs if r in pulled_before]
    if stale:
        docker("image", "rm", "--force", *stale, timeout=600)


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    """Debian's dockerd with its own data root (kept between runs: _docker_data_root) and socket; no bridge network
    (containers run with --network none), no iptables changes. Pulls from 127.0.0.1 registries need no
    configuration: loopback is insecure-ok."""
    dockerd = need("dockerd", "docker.io")
    need("docker", "docker.io")
    if os.geteuid() != 0:
        pytest.fail("dockerd needs root; run the images tests as root", pytrace=False)
    root = Path(tmp_path_factory.mktemp("dockerd"))
    sock = root / "docker.sock"
    log = root / "dockerd.log"
    with _docker_data_root(root) as data:
        with open(log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603
                [dockerd, "--data-root", str(data), "--exec-root", str(root / "exec"),
                 "--pidfile", str(root / "docker.pid"), "-H", f"unix://{sock}",
                 "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(root / "client")}

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited: {log.read_text()[-3000:]}", pytrace=False)
            return run(["docker", "version", "--format", "{{.Server.Version}}"], env=env, check=False).ok

        wait_until(up, 60, "dockerd")
        client = Docker(env)
        before = set(client("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split())
        try:
            yield client
        finally:
            _forget_other_sessions_images(client, before)
            stop(proc)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, object]]:
    """A registry in token mode (Bearer), with its token service on another loopback port."""
    from tokenserver import TokenServer

    root = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(root, "qhub", "token-test-password")
    reg = start_registry(root / "reg", tokens.registry_auth())
    yield reg, tokens
    stop(reg.proc)
    tokens.close()
