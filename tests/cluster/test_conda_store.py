"""conda-store end to end on the host: the real conda-store server and worker from PyPI (pinned in
ci/requirements-conda-store.txt, own venv) run with the chart's rendered conda_store_config.py, settings.json and
prebuilt-environment files, against a real PostgreSQL and Redis (Debian packages, started here on loopback) and a
real JupyterHub that logs users in over OAuth. Namespace rights per JupyterHub group are checked through
conda-store's REST API.

Builds run as in QHub's conda-store image (images/conda-store): its rootfs is put on PYTHONPATH and PATH, so the
worker solves with the py-rattler lock plugin and installs through its conda command, from a local channel
(tests/images/localchannel.py) served over HTTP as the channel alias, which stands where conda-forge's mirror
would be: `conda-forge` in a spec is that channel.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from servicehub import CACHE, REPO, Fatal, find, free_port, render, running_hub, stop, wait_until

sys.path.insert(0, str(Path(__file__).parents[1] / "images"))
from localchannel import Pkg, demo_packages, make_channel  # noqa: E402

pytestmark = pytest.mark.cluster
IMAGE_ROOTFS = Path(__file__).parents[2] / "images" / "conda-store" / "rootfs"
REQUIREMENTS = REPO / "ci" / "requirements-conda-store.txt"
JH_VALUES = REPO / "charts" / "qhub" / "charts" / "jupyterhub" / "values.yaml"
USERS = {"alice": ["data-team"], "bob": ["analysts"], "carol": ["admin"], "dave": []}
ENVIRONMENT = {"description": "prebuilt from values", "channels": ["conda-forge"],
               "dependencies": ["python=3.12", "qhub-hello=2"]}


def values(channel_alias: str) -> dict:
    return {"conda-store": {
        "permissions": {"groupRoles": {"data-team": "admin"}},
        "build": {"allowedChannels": ["conda-forge"], "channelAlias": channel_alias},
        "environments": {"analysis": ENVIRONMENT},
    }}


def channel_packages() -> list[Pkg]:
    """The local channel's demo packages plus what makes an environment a kernel in QHub's JupyterLab: a
    `python` executable and an `ipykernel` package directory (markers only: no interpreter is built here)."""
    site = "lib/python3.12/site-packages"
    return [p for p in demo_packages() if p.name != "python"] + [
        Pkg("python", "3.12.1", files={"bin/python": ("#!/bin/sh\necho not a real python\n", 0o755)}),
        Pkg("ipykernel", "6.29.5", subdir="noarch", depends=["python >=3.8"],
            files={f"{site}/ipykernel/__init__.py": ("version = '6.29.5'\n", 0o644)}),
    ]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    """A local channel named conda-forge under a channel alias served over HTTP on loopback."""
    root = tmp_path_factory.mktemp("channels")
    make_channel(root / "conda-forge", channel_packages())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def conda_store_venv() -> Path:
    """$QHUB_CACHE/venvs/conda-store from the pinned requirements, rebuilt when they change."""
    venv = CACHE / "venvs" / "conda-store"
    stamp = venv / "requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True, timeout=900)
        stamp.write_text(digest)
    return venv


def tool(name: str) -> str:
    for d in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/bin", "/usr/sbin"):
        if (Path(d) / name).exists():
            return str(Path(d) / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: apt-get install postgresql redis-server")
    return found


def as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres system user then."""
    if os.getuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="qhub-cs-pg-"))
    if os.getuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
    password = os.urandom(12).hex()
    (root / "pw").write_text(password)
    if os.getuid() == 0:
        os.chown(root / "pw", pwd.getpwnam("postgres").pw_uid, -1)
    subprocess.run([*as_postgres(), tool("initdb"), "-D", str(root / "data"), "-U", "conda-store",
                    "--pwfile", str(root / "pw"), "--auth", "scram-sha-256"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*as_postgres(), tool("postgres"), "-D", str(root / "data"), "-p", str(port),
                             "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=open(root / "log", "w"), start_new_session=True)
    env = {**os.environ, "PGPASSWORD": password}
    try:
        wait_until(lambda: subprocess.run([tool("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                          capture_output=True).returncode == 0, 30, "PostgreSQL")
        subprocess.run([tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "conda-store", "conda-store"],
                       check=True, env=env, capture_output=True)
        yield f"postgresql+psycopg2://conda-store:{password}@127.0.0.1:{port}/conda-store"
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    d = tmp_path_factory.mktemp("redis")
    port, password = free_port(), os.urandom(12).hex()
    proc = subprocess.Popen([tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
                             password, "--save", "", "--appendonly", "no", "--dir", str(d)],
                            stdout=open(d / "log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: subprocess.run([tool("redis-cli"), "-p", str(port), "-a", password, "--no-auth-warning",
                                           "ping"], capture_output=True, text=True).stdout.strip() == "PONG",
                   20, "Redis")
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def platform(tmp_path_factory, postgres, redis, channel):
    tmp = tmp_path_factory.mktemp("conda-store")
    venv = conda_store_venv()
    docs = render(values=values(channel))
    config = find(docs, "ConfigMap", "qhub-conda-store-config")["data"]
    (tmp / "etc").mkdir()
    settings = json.loads(config["settings.json"])
    assert settings["buildPod"]["enabled"], "the chart runs builds in build pods with lockBackend rattler"
    # no API server to create build pods on here: the install step runs in the worker, as without build pods
    # (tests/node/test_conda_store_journey.py shows the build pods on the real node)
    config = {**config, "settings.json": json.dumps({**settings, "buildPod": {"enabled": False}})}
    for name, content in config.items():
        (tmp / "etc" / name).write_text(content)
    (tmp / "environments").mkdir()
    for name, content in find(docs, "ConfigMap", "qhub-conda-store-environments")["data"].items():
        (tmp / "environments" / name).write_text(content)
    scopes = yaml.safe_load(JH_VALUES.read_text())["hub"]["services"]["conda-store"]["scopes"]

    token, port = os.urandom(16).hex(), free_port()
    cs_url = f"http://127.0.0.1:{port}"
    services = [{"name": "conda-store", "api_token": token, "url": f"{cs_url}/conda-store",
                 "oauth_redirect_uri": "/conda-store/oauth_callback/", "oauth_no_confirm": True, "display": False}]
    roles = [{"name": "conda-store-service", "services": ["conda-store"], "scopes": scopes},
             # JupyterHub >= 5 lets a user log in to a service only with access:services for it
             {"name": "user", "scopes": ["self", "access:services!service=conda-store"]}]
    procs: list[subprocess.Popen] = []

    def start_conda_store(hub):
        env = {**os.environ, "CONDA_STORE_DATABASE_URL": postgres, "CONDA_STORE_REDIS_URL": redis,
               "CONDA_STORE_DIRECTORY": str(tmp / "store"), "CONDA_STORE_ENVIRONMENTS": str(tmp / "environments"),
               "CONDA_STORE_TOKEN_SECRET": os.urandom(32).hex(), "CONDA_STORE_PORT": str(port),
               "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": token, "HOME": str(tmp),
               "CONDA_PKGS_DIRS": str(tmp / "store" / ".pkgs"),
               # the image's layout: its packages on PYTHONPATH, its conda command before the venv's Python
               "PYTHONPATH": str(IMAGE_ROOTFS / "opt" / "qhub-conda-store"),
               "PATH": f"{IMAGE_ROOTFS / 'usr' / 'local' / 'bin'}:{venv / 'bin'}:{os.environ['PATH']}"}
        for prog in ("conda-store-server", "conda-store-worker"):
            log = open(tmp / f"{prog}.log", "w")
            config = str(tmp / "etc" / "conda_store_config.py")
            procs.append(subprocess.Popen([str(venv / "bin" / prog), "--config", config],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                                          start_new_session=True))
        return procs

    with running_hub(tmp / "hub", services=services, roles=roles, users=USERS, pre_start=start_conda_store) as hub:
        hub.add_route("/conda-store", cs_url)  # what the platform Ingress does

        def up():
            for p in procs:
                if p.poll() is not None:
                    raise Fatal(f"{p.args[0]} exited: {(tmp / (Path(p.args[0]).name + '.log')).read_text()[-3000:]}")
            return requests.get(f"{hub.url}/conda-store/api/v1/", timeout=3).status_code == 200
        wait_until(up, 120, "conda-store server")
        # the worker's first scan registers the prebuilt environments and records the store's free space,
        # which conda-store checks before accepting a spec
        wait_until(lambda: "task_watch_paths" in (worker_log := (tmp / "conda-store-worker.log").read_text())
                   and "succeeded" in worker_log.split("task_watch_paths")[-1], 120, "worker's first scan")
        yield {"hub": hub, "tmp": tmp, "sessions": {}, "channel": channel}


def login(platform, user: str) -> requests.Session:
    """Browser-like OAuth login: conda-store -> hub login form -> hub authorize -> conda-store callback."""
    if user in platform["sessions"]:
        return platform["sessions"][user]
    hub = platform["hub"]
    s = requests.Session()
    r = s.get(f"{hub.url}/conda-store/login/", timeout=30)
    assert r.status_code == 200 and "/hub/login" in r.url, (r.status_code, r.url)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', r.text)
    assert xsrf, "the hub login form carries an XSRF token"
    r = s.post(r.url, data={"username": user, "password": "any", "_xsrf": html.unescape(xsrf.group(1))}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert "/conda-store/oauth_callback/" in r.url and "conda-store-auth" in s.cookies, r.url
    platform["sessions"][user] = s
    return s


def api(platform, method: str, path: str, user: str | None = None, **kw) -> requests.Response:
    s = login(platform, user) if user else requests.Session()
    return s.request(method, f"{platform['hub'].url}/conda-store/api/v1{path}", timeout=30, **kw)


def namespaces(platform, user: str | None) -> set[str]:
    r = api(platform, "GET", "/namespace/?size=100", user)
    assert r.status_code == 200, r.text
    return {n["name"] for n in r.json()["data"]}


def spec(name: str, channels=("conda-forge",)) -> str:
    return yaml.safe_dump({"name": name, "channels": list(channels), "dependencies": ["python=3.12", "numpy"]})


def create_env(platform, user: str | None, namespace: str, name: str, **kw) -> requests.Response:
    body = {"namespace": namespace, "specification": spec(name, **kw)}
    return api(platform, "POST", "/specification/", user, json=body)


def test_oauth_login_gives_group_based_role_bindings(platform):
    r = api(platform, "GET", "/permission/", "alice")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["authenticated"] is True and data["primary_namespace"] == "alice"
    roles = {arn: set(v) for arn, v in data["entity_roles"].items()}
    assert roles["alice/*"] == {"admin"} and roles["data-team/*"] == {"admin"} and roles["global/*"] == {"viewer"}
    assert not any(arn.startswith(("bob", "analysts", "*")) for arn in roles), roles
    bob = {arn: set(v) for arn, v in api(platform, "GET", "/permission/", "bob").json()["data"]["entity_roles"].items()}
    assert bob["analysts/*"] == {"developer"}, "defaultGroupRole applies to groups without an override"
    carol = api(platform, "GET", "/permission/", "carol").json()["data"]["entity_roles"]
    assert carol == {"*/*": ["admin"], "global/*": ["viewer"]} or set(carol["*/*"]) == {"admin"}


def test_users_see_own_group_and_global_namespaces(platform):
    for user in USERS:
        login(platform, user)  # first logins create the namespaces of the user and their groups
    assert namespaces(platform, "alice") == {"alice", "data-team", "global"}
    assert namespaces(platform, "bob") == {"bob", "analysts", "global"}
    assert namespaces(platform, "dave") == {"dave", "global"}
    assert {"alice", "bob", "carol", "dave", "data-team", "analysts", "global"} <= namespaces(platform, "carol")
    assert namespaces(platform, None) == set(), "anonymous clients see nothing"


def test_environment_creation_follows_group_rights(platform):
    allowed = [("alice", "alice"), ("alice", "data-team"), ("bob", "analysts"), ("bob", "bob"),
               ("carol", "global"), ("carol", "analysts")]
    denied = [("alice", "analysts"), ("alice", "bob"), ("alice", "global"), ("bob", "data-team"),
              ("dave", "global"), ("dave", "alice"), (None, "global"), (None, "dave")]
    for user, ns in allowed:
        r = create_env(platform, user, ns, f"env-{user}")
        assert r.status_code == 200, (user, ns, r.text)
        assert isinstance(r.json()["data"]["build_id"], int)
    for user, ns in denied:
        r = create_env(platform, user, ns, f"env-{user or 'anon'}")
        assert r.status_code in (401, 403), (user, ns, r.status_code, r.text)
    # an editor cannot create a namespace; an admin of one can't create someone else's
    assert api(platform, "POST", "/namespace/newteam/", "bob").status_code == 403
    assert api(platform, "POST", "/namespace/newteam/", "alice").status_code == 403
    assert api(platform, "POST", "/namespace/newteam/", "carol").status_code == 200


def test_spec_validation_and_channel_policy(platform):
    r = api(platform, "POST", "/specification/", "alice", json={"namespace": "alice", "specification": "name: [x"})
    assert r.status_code == 400 and "YAML" in r.text
    bad = yaml.safe_dump({"name": "bad", "dependencies": ["numpy=>=1"]})  # rejected by conda's MatchSpec
    r = api(platform, "POST", "/specification/", "alice", json={"namespace": "alice", "specification": bad})
    assert r.status_code == 400 and "numpy=>=1" in r.text
    r = api(platform, "POST", "/specification/", "alice",
            json={"namespace": "alice", "specification": yaml.safe_dump({"name": "a/b", "dependencies": ["x"]})})
    assert r.status_code == 400
    r = create_env(platform, "alice", "alice", "evil", channels=("https://evil.example.org/channel",))
    assert r.status_code == 400 and "channel" in r.text.lower(), "build.allowedChannels from values is enforced"


def wait_for_build(platform, build_id: int, user: str = "dave") -> dict:
    def finished():
        b = api(platform, "GET", f"/build/{build_id}/", user).json()["data"]
        return b if b["status"] in ("COMPLETED", "FAILED") else None
    return wait_until(finished, 240, f"build {build_id}", interval=2)


def build_logs(platform, build_id: int, user: str = "dave") -> str:
    """A finished build's log: the worker stores it after it has marked the build finished, so an empty answer
    right after is waited through."""
    return wait_until(lambda: api(platform, "GET", f"/build/{build_id}/logs/", user).text, 30,
                      f"the log of build {build_id}", interval=1)


def test_prebuilt_environment_builds_with_rattler_from_the_channel(platform):
    """The worker registers the chart's prebuilt environment in the global namespace and builds it: the
    rattler lock plugin solves it against the channel alias, conda-lock installs the lock through the image's
    conda command; the environment's program runs with its prefix filled in."""
    def registered():
        r = api(platform, "GET", "/environment/?namespace=global&size=100", "dave")
        return {e["name"]: e for e in r.json()["data"]}.get("analysis")
    env = wait_until(registered, 120, "prebuilt environment 'analysis' in namespace global", interval=1)
    assert env["description"] == "prebuilt from values"
    build = wait_for_build(platform, env["current_build_id"])
    logs = build_logs(platform, build["id"])
    assert build["status"] == "COMPLETED", logs[-3000:]
    assert "plugin-rattler" in logs and "linked" in logs, logs[-3000:]
    lock = api(platform, "GET", f"/build/{build['id']}/lockfile/", "dave")
    assert lock.status_code == 200, lock.text
    locked = {p["name"]: p for p in yaml.safe_load(lock.text)["package"]}
    assert locked["qhub-hello"]["version"] == "2.0" and locked["libqhub"]["version"].startswith("2")
    assert "ipykernel" in locked, "build.includedPackages joins every environment"
    assert all(p["url"].startswith(platform["channel"] + "conda-forge/") for p in locked.values())
    prefix = platform["tmp"] / "store" / "global" / "envs" / "analysis"
    out = subprocess.run([str(prefix / "bin" / "qhub-hello")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"qhub-hello 2.0 prefix={prefix.resolve()} data=greetings from the local channel", out
    assert any(prefix.glob("lib/python3*/site-packages/ipykernel")) and (prefix / "bin" / "python").exists()
    packages = api(platform, "GET", f"/build/{build['id']}/packages/?size=100", "dave").json()["data"]
    assert {"qhub-hello", "qhub-data", "libqhub", "python", "ipykernel"} <= {p["name"] for p in packages}


def test_unsolvable_spec_fails_its_build_with_the_solver_message(platform):
    body = {"namespace": "dave", "specification": yaml.safe_dump(
        {"name": "broken", "channels": ["conda-forge"], "dependencies": ["qhub-broken"]})}
    r = api(platform, "POST", "/specification/", "dave", json=body)
    assert r.status_code == 200, r.text
    build = wait_for_build(platform, r.json()["data"]["build_id"])
    assert build["status"] == "FAILED"
    logs = build_logs(platform, build["id"])
    assert "does-not-exist" in logs, logs[-2000:]


def test_pip_sections_lock_to_wheels_only(platform):
    """The lock plugin resolves pip packages to wheels from PyPI and refuses a package that has only a source
    distribution (its setup code would run inside the build)."""
    venv = CACHE / "venvs" / "conda-store"
    script = (
        "import json, sys; from qhub_conda_store.lock import pip_locked, PipResolveError\n"
        "wheels = pip_locked(['rich==13.9.4'], '3.12', 'linux-64')\n"
        "try:\n    pip_locked(['onetimepass==1.0.1'], '3.12', 'linux-64'); refused = ''\n"
        "except PipResolveError as e:\n    refused = str(e)\n"
        "print(json.dumps({'urls': [p.url for p in wheels], 'hashes': [p.hash.sha256 for p in wheels],"
        " 'refused': refused}))\n")
    env = {**os.environ, "PYTHONPATH": str(IMAGE_ROOTFS / "opt" / "qhub-conda-store")}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert any("/rich-13.9.4-" in u for u in result["urls"]) and all(u.endswith(".whl") for u in result["urls"])
    assert all(h and len(h) == 64 for h in result["hashes"])
    assert "onetimepass" in result["refused"], result


# -- the chart on the test cluster ------------------------------------------------------------------------------

def test_subcharts_install_upgrade_rollback_keep_generated_secrets(cluster):
    """The umbrella with conda-store, kubessh and jitsi on: install --wait, upgrade, rollback; every generated
    secret (conda-store passwords and token key, the SSH host key, Jitsi's XMPP passwords and JWT secret) stays;
    their pods pass Pod Security "restricted"."""
    import uuid

    from qhubctl.proc import run as prun

    ns, release, chart = f"qhub-addons-{uuid.uuid4().hex[:6]}", "qhub", str(REPO / "charts" / "qhub")
    values = cluster.workdir / f"{ns}-values.yaml"
    values.write_text(yaml.safe_dump({
        "dask-gateway": {"enabled": False},
        "global": {"daskClusters": {"enabled": False}},  # follows dask-gateway.enabled
        "jitsi": {"enabled": True, "host": "meet.qhub.test"},
        "jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": False}, "jitsi": {"enabled": True}}}},
        "conda-store": {"environments": {"base": {"dependencies": ["python=3.12"]}}},
    }))
    base = ["--namespace", ns, "-f", str(REPO / "ci" / "local-cluster-values.yaml"), "-f", str(values)]

    def helm(*args):
        return prun(["helm", *args], env=cluster.env, timeout=600).stdout

    def secrets() -> dict[str, dict]:
        return {name: json.loads(cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json")).get("data") or {}
                for name in ("qhub-conda-store", "qhub-kubessh-host-key", "qhub-jitsi")}

    def template_of(deploy: str) -> dict:
        return json.loads(cluster.kubectl("get", "deploy", deploy, "-n", ns, "-o", "json"))["spec"]["template"]

    try:
        helm("install", release, chart, *base, "--create-namespace", "--wait", "--timeout", "5m")
        for kind in ("deploy", "statefulset"):
            for obj in json.loads(cluster.kubectl("get", kind, "-n", ns, "-o", "json"))["items"]:
                name = obj["metadata"]["name"]
                if any(part in name for part in ("conda-store", "kubessh", "jitsi")):
                    assert obj["status"].get("readyReplicas", 0) == obj["spec"]["replicas"], name
        # the chart creates the SSH host key Secret empty; the gateway (not running on simulated nodes) fills it
        # at its first start, as here
        assert secrets()["qhub-kubessh-host-key"] == {}, "the chart renders no key material"
        cluster.kubectl("patch", "secret", "qhub-kubessh-host-key", "-n", ns, "--type=merge", "-p", json.dumps(
            {"data": {"ssh_host_ed25519_key": base64.b64encode(b"key stored by the gateway").decode()}}))
        first = secrets()
        assert set(first["qhub-jitsi"]) == {"jicofo-auth-password", "jvb-auth-password", "jwt-app-secret",
                                            "cookie-secret"}
        svc = json.loads(cluster.kubectl("get", "svc", "qhub-kubessh", "-n", ns, "-o", "json"))["spec"]
        assert svc["type"] == "NodePort" and {p["port"] for p in svc["ports"]} == {8022, 8023}

        # Pod Security: ask the API server what switching the namespace to "restricted" would flag
        warnings = prun([str(CACHE / "bin" / "kubectl"), "label", "--dry-run=server", "--overwrite", "ns", ns,
                         "pod-security.kubernetes.io/enforce=restricted"], env=cluster.env).stderr
        assert "nfs" in warnings, "the check sees violations (the NFS server is privileged by design)"
        flagged = [w for w in warnings.splitlines() if any(p in w for p in ("conda-store", "kubessh", "jitsi"))]
        assert not flagged, flagged

        worker_before = template_of("qhub-conda-store-worker")["metadata"]["annotations"]["checksum/environments"]
        values.write_text(values.read_text().replace("python=3.12", "python=3.13"))
        helm("upgrade", release, chart, *base, "--set", "kubessh.loginTimeout=90", "--wait", "--timeout", "5m")
        assert secrets() == first, "upgrade regenerated a secret"
        worker_after = template_of("qhub-conda-store-worker")["metadata"]["annotations"]["checksum/environments"]
        assert worker_after != worker_before, "a changed environment restarts the worker (rebuild)"

        helm("rollback", release, "1", "-n", ns, "--wait", "--timeout", "5m")
        assert secrets() == first, "rollback changed a secret"
        annotations = template_of("qhub-conda-store-worker")["metadata"]["annotations"]
        assert annotations["checksum/environments"] == worker_before
        history = json.loads(helm("history", release, "-n", ns, "-o", "json"))
        assert [h["status"] for h in history][-1] == "deployed" and len(history) == 3
    finally:
        prun(["helm", "uninstall", release, "-n", ns, "--wait", "--timeout", "3m"], env=cluster.env, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        values.unlink(missing_ok=True)
