"""Real processes for the service tests of conda-store, kubessh and jitsi: a JupyterHub (with its
configurable-http-proxy) started on loopback, and the chart's rendered files those services run with.

Nothing here is a stand-in: the hub is the jupyterhub package from PyPI, the proxy the configurable-http-proxy
package from npm, and user servers (when a test needs them) are jupyterhub-singleuser processes started by the
hub's SimpleLocalProcessSpawner.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
CACHE = Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub"))
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fatal(Exception):
    """Raised by a wait_until check when waiting longer cannot help (the process died)."""


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Fatal:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


def helm_bin() -> str:
    path = CACHE / "bin" / "helm"
    if not path.exists():
        raise RuntimeError(f"helm not found at {path}: run `make tools`")
    return str(path)


def render(*value_files: Path, values: dict | None = None, release: str = "qhub") -> list[dict]:
    """`helm template` of the umbrella chart; returns the objects."""
    cmd = [helm_bin(), "template", release, str(CHART), "--namespace", "qhub",
           "--set", "nfs.service.clusterIP=10.96.0.40"]
    for f in value_files:
        cmd += ["-f", str(f)]
    extra = None
    if values:
        extra = CACHE / "tmp" / f"values-{os.getpid()}-{time.monotonic_ns()}.yaml"
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(extra)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"helm template failed: {e.stderr}") from e
    finally:
        if extra:
            extra.unlink(missing_ok=True)
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"{kind}/{name} not rendered; have {[(d['kind'], d['metadata']['name']) for d in docs]}")


def chp_command() -> list[str]:
    """configurable-http-proxy from npm, installed once into $QHUB_CACHE/node."""
    node_dir = CACHE / "node"
    chp = node_dir / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        npm = shutil.which("npm")
        if not npm:
            raise RuntimeError("npm not found: configurable-http-proxy (JupyterHub's proxy) is installed with npm")
        node_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(node_dir), "--no-audit", "--no-fund",
                        "configurable-http-proxy@^5"], check=True, capture_output=True, timeout=600)
    return [str(chp)]


@dataclass
class Hub:
    url: str  # public URL (the proxy)
    api_url: str  # hub API, as services see it (http://127.0.0.1:<hub port>/hub/api)
    admin_token: str
    proxy_api_url: str
    proxy_token: str
    dir: Path
    log: Path

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kw)

    def new_token(self, user: str, **body) -> str:
        r = self.api("POST", f"/users/{user}/tokens", json=body or {"note": "test"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def add_route(self, path: str, target: str) -> None:
        """A route in the proxy next to the hub's own (what the platform's Ingress does for /conda-store)."""
        r = requests.post(f"{self.proxy_api_url}/api/routes{path}", json={"target": target},
                          headers={"Authorization": f"token {self.proxy_token}"}, timeout=10)
        assert r.status_code == 201, r.text


@contextlib.contextmanager
def running_hub(workdir: Path, *, services: list[dict], roles: list[dict], users: dict[str, list[str]],
                admins: tuple[str, ...] = (), spawn: bool = False, extra_config: str = "",
                pre_start=None) -> Iterator[Hub]:
    """A JupyterHub on loopback with DummyAuthenticator, `users` {name: [groups]} and the given services.

    With spawn=True user servers are real jupyterhub-singleuser processes (SimpleLocalProcessSpawner) whose
    root directory is workdir/home/<name>.
    pre_start(hub) -> [Popen, ...] starts the services the hub registers before the hub itself (the hub waits
    for a registered service URL at start); they are stopped after the hub.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    public, hub_port, proxy_api = free_port(), free_port(), free_port()
    admin_token, proxy_token = os.urandom(16).hex(), os.urandom(16).hex()
    groups: dict[str, list[str]] = {}
    for user, user_groups in users.items():
        for g in user_groups:
            groups.setdefault(g, []).append(user)
    services = [*services, {"name": "test-admin", "api_token": admin_token}]
    roles = [*roles, {"name": "test-admin", "services": ["test-admin"],
                      "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "proxy"]}]
    singleuser = [str(VENV_BIN / "jupyterhub-singleuser")]
    config = f"""
import os
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex("{os.urandom(32).hex()}")
c.JupyterHub.pid_file = "{workdir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = {repr(chp_command())}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.auth_token = "{proxy_token}"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {repr(list(admins))}
c.JupyterHub.load_groups = {repr({g: {"users": m} for g, m in groups.items()})}
c.JupyterHub.services = {repr(services)}
c.JupyterHub.load_roles = {repr(roles)}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.cmd = {repr(singleuser)}
c.Spawner.args = ["--allow-root"] if os.getuid() == 0 else []
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.cleanup_servers = True
{extra_config}
"""
    (workdir / "jupyterhub_config.py").write_text(config)
    for user in users:
        (workdir / "home" / user).mkdir(parents=True, exist_ok=True)
    log = workdir / "jupyterhub.log"
    hub = Hub(url=f"http://127.0.0.1:{public}", api_url=f"http://127.0.0.1:{hub_port}/hub/api",
              admin_token=admin_token, proxy_api_url=f"http://127.0.0.1:{proxy_api}", proxy_token=proxy_token,
              dir=workdir, log=log)
    services_procs = list(pre_start(hub)) if pre_start else []
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(workdir / "jupyterhub_config.py")],
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        def up():
            if proc.poll() is not None:
                raise Fatal(f"jupyterhub exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            return requests.get(f"{hub.url}/hub/api/", timeout=2).status_code == 200
        wait_until(up, 60, "JupyterHub")
        for user in users:  # create the users (the dummy authenticator accepts them at login too)
            r = hub.api("POST", f"/users/{user}")
            assert r.status_code in (201, 409), r.text
        yield hub
    finally:
        stop(proc, grace=15)
        for p in services_procs:
            stop(p)


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
