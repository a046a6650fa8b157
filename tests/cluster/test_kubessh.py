"""kubessh end to end on the host: the real qhub_ssh gateway (images/kubessh) with the chart's rendered settings,
against a real JupyterHub whose user servers are real jupyterhub-singleuser processes, driven by paramiko as an
SSH/SFTP client. The host key Secret is exercised against the test cluster's kube-apiserver with the chart's own
ServiceAccount, Role and RoleBinding.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml

from qhubctl.localcluster import LocalCluster, bin_dir
from qhubctl.proc import run
from servicehub import REPO, find, free_port, render, running_hub, stop, wait_until

pytestmark = pytest.mark.cluster
JH_VALUES = REPO / "charts" / "qhub" / "charts" / "jupyterhub" / "values.yaml"
PACKAGE = REPO / "images" / "kubessh" / "rootfs" / "opt" / "qhub-ssh"

# What a user can put in her own ~/.jupyter to see every request her server receives, headers included: the
# attack the gateway's token must never be exposed to.
HEADER_LOGGER = """
import json, os
def _log_headers(handler):
    with open(os.path.join(os.environ["HOME"], "requests-seen.jsonl"), "a") as f:
        f.write(json.dumps({"path": handler.request.path,
                            "authorization": handler.request.headers.get("Authorization", "")}) + "\\n")
c.ServerApp.tornado_settings = {"log_function": _log_headers}
"""


def kubessh_scopes() -> list[str]:
    """Scopes the platform grants the kubessh service (what the gateway must live with): the umbrella's value,
    else the jupyterhub subchart's default."""
    umbrella = yaml.safe_load((REPO / "charts" / "qhub" / "values.yaml").read_text())
    scopes = umbrella["jupyterhub"]["hub"]["services"]["kubessh"].get("scopes")
    return scopes or yaml.safe_load(JH_VALUES.read_text())["hub"]["services"]["kubessh"]["scopes"]


@contextlib.contextmanager
def running_gateway(tmp: Path, settings: dict, env: dict[str, str]) -> Iterator[dict]:
    """`python -m qhub_ssh` with `settings` (the chart's, adjusted) and `env`; yields its ports and log."""
    tmp.mkdir(parents=True, exist_ok=True)
    ssh_port, sftp_port = free_port(), free_port()
    (tmp / "config.json").write_text(json.dumps(settings))
    full_env = {**os.environ, "PYTHONPATH": str(PACKAGE), "QHUB_SSH_BIND": "127.0.0.1",
                "QHUB_SSH_PORT": str(ssh_port), "QHUB_SSH_SFTP_PORT": str(sftp_port), **env}
    log = tmp / "qhub-ssh.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qhub_ssh", "--config", str(tmp / "config.json")],
                                env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"qhub-ssh exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            return "listening" in log.read_text()
        wait_until(listening, 30, "qhub-ssh")
        yield {"ssh": ssh_port, "sftp": sftp_port, "log": log, "proc": proc}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubessh-hub")
    token = os.urandom(16).hex()
    services = [{"name": "kubessh", "api_token": token, "display": False}]
    roles = [{"name": "kubessh-service", "services": ["kubessh"], "scopes": kubessh_scopes()}]
    with running_hub(tmp / "hub", services=services, roles=roles, spawn=True,
                     users={"alice": ["team"], "bob": ["team"], "carol": [], "dave": [], "erin": []}) as hub:
        (hub.dir / "home" / "carol" / ".jupyter").mkdir()
        (hub.dir / "home" / "carol" / ".jupyter" / "jupyter_server_config.py").write_text(HEADER_LOGGER)
        hub.kubessh_token = token
        yield hub


def gateway_settings(**overrides) -> dict:
    """The chart's rendered gateway settings, with the host key in a file (no Kubernetes API on this path)."""
    settings = json.loads(find(render(), "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    return {**settings, "hostKeySecret": "", **overrides}


def hub_env(hub, key_file: Path) -> dict[str, str]:
    return {"JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": hub.kubessh_token,
            "QHUB_SSH_PROXY_URL": hub.url, "QHUB_SSH_HOST_KEY": str(key_file)}


@pytest.fixture(scope="module")
def gateway(hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubessh")
    key_file = tmp / "keys" / "ssh_host_ed25519_key"
    settings = gateway_settings()
    with running_gateway(tmp / "gw", settings, hub_env(hub, key_file)) as gw:
        yield {**gw, "hub": hub, "key_file": key_file,
               "settings": json.loads(find(render(), "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])}


def connect(port: int, user: str, password: str, source: str = "127.0.0.1") -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    client.connect("127.0.0.1", port=port, username=user, password=password, look_for_keys=False,
                   allow_agent=False, timeout=20, auth_timeout=20, banner_timeout=20, sock=sock)
    return client


def run_command(port: int, user: str, token: str, command: str) -> str:
    client = connect(port, user, token)
    try:
        _, stdout, _ = client.exec_command(command, timeout=120)
        out = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0, out
        return out
    finally:
        client.close()


def test_rendered_settings_match_the_platform(gateway):
    s = gateway["settings"]
    assert s["hubApiUrl"] == "http://qhub-hub:8081/hub/api"
    assert s["proxyUrl"] == "http://qhub-proxy-public:80"
    assert (s["sshPort"], s["sftpPort"]) == (8022, 8023)


def test_login_runs_a_command_in_the_users_own_server(gateway):
    hub = gateway["hub"]
    assert not hub.api("GET", "/users/alice").json()["servers"], "alice's server starts stopped"
    token = hub.new_token("alice")
    client = connect(gateway["ssh"], "alice", token)
    try:
        host_key = client.get_transport().get_remote_server_key()
        stored = paramiko.Ed25519Key.from_private_key_file(str(gateway["key_file"]))
        assert host_key.get_name() == "ssh-ed25519" and host_key.asbytes() == stored.asbytes(), "the kept key"

        stdin, stdout, stderr = client.exec_command("pwd; echo $((6*7)); echo $JUPYTERHUB_USER; echo oops >&2",
                                                    timeout=120)
        assert stdout.read().decode() == f"{hub.dir / 'home' / 'alice'}\n42\nalice\n"
        assert stderr.read().decode() == "oops\n", "stderr stays separate"
        assert stdout.channel.recv_exit_status() == 0
        server = hub.api("GET", "/users/alice").json()["servers"][""]
        assert server["ready"], "the login started alice's server"

        _, stdout, _ = client.exec_command("exit 3", timeout=60)
        assert stdout.channel.recv_exit_status() == 3, "the command's exit status comes back"

        blob = bytes(range(256)) * 64 + b"\r\n\x03\x04 end"  # binary, line endings and control bytes intact
        stdin, stdout, _ = client.exec_command("cat > blob.bin && sha256sum blob.bin", timeout=60)
        stdin.write(blob)
        stdin.channel.shutdown_write()
        assert stdout.read().decode().split()[0] == hashlib.sha256(blob).hexdigest()
        assert (hub.dir / "home" / "alice" / "blob.bin").read_bytes() == blob

        chan = client.invoke_shell(width=100, height=30)
        chan.settimeout(60)
        chan.send("echo shell-$((20+22))\n")
        seen = ""
        deadline = time.monotonic() + 60
        while "shell-42" not in seen and time.monotonic() < deadline:
            seen += chan.recv(4096).decode(errors="replace")
        assert "shell-42" in seen, seen[-500:]
        chan.send("exit\n")
    finally:
        client.close()


def test_sftp_runs_in_the_users_own_server(gateway, tmp_path):
    """SFTP on both ports is served inside the user's server (the gateway has no home to serve): paths start in
    the server's home, files land there byte for byte, and a stopped server is started for it."""
    hub = gateway["hub"]
    home = hub.dir / "home" / "erin"
    assert not hub.api("GET", "/users/erin").json()["servers"], "erin's server starts stopped"
    token = hub.new_token("erin")
    blob = os.urandom(300_000)
    (tmp_path / "data.bin").write_bytes(blob)
    for port in (gateway["sftp"], gateway["ssh"]):  # the SFTP-only port and SSH's sftp subsystem
        client = connect(port, "erin", token)
        try:
            sftp = client.open_sftp()
            assert sftp.normalize(".") == str(home), "relative paths start in her server's home"
            name = f"data-{port}.bin"
            sftp.mkdir(f"up-{port}")
            sftp.put(str(tmp_path / "data.bin"), f"up-{port}/{name}")
            assert (home / f"up-{port}" / name).read_bytes() == blob
            assert sftp.stat(f"up-{port}/{name}").st_size == len(blob)
            with sftp.open(f"up-{port}/{name}") as f:
                f.seek(1000)
                assert f.read(5000) == blob[1000:6000]
            sftp.rename(f"up-{port}/{name}", f"up-{port}/renamed.bin")
            assert sorted(sftp.listdir(f"up-{port}")) == ["renamed.bin"]
            with pytest.raises(FileNotFoundError):
                sftp.stat("no-such-file")
            sftp.remove(f"up-{port}/renamed.bin")
            sftp.rmdir(f"up-{port}")
            assert not (home / f"up-{port}").exists()
            sftp.close()
        finally:
            client.close()
    assert hub.api("GET", "/users/erin").json()["servers"][""]["ready"], "the SFTP login started her server"
    # the SFTP-only port runs no commands
    client = connect(gateway["sftp"], "erin", token)
    try:
        with pytest.raises(paramiko.SSHException):
            client.exec_command("id", timeout=20)[1].read()
    finally:
        client.close()


def test_wrong_tokens_and_other_users_are_refused(gateway):
    hub = gateway["hub"]
    alice = hub.new_token("alice")
    for user, password in [
        ("alice", "not-a-token"),
        ("alice", ""),
        ("bob", alice),  # alice's token does not open bob's account
        ("test-admin", hub.admin_token),  # a service token is not a user login
    ]:
        with pytest.raises(paramiko.AuthenticationException):
            connect(gateway["ssh"], user, password).close()
        with pytest.raises(paramiko.AuthenticationException):
            connect(gateway["sftp"], user, password).close()
    assert not hub.api("GET", "/users/bob").json()["servers"], "no refused login started bob's server"
    log = gateway["log"].read_text()
    assert 'login refused for "bob"' in log and alice not in log, "refusals are logged, tokens never"


def test_port_forwarding_reaches_only_the_users_own_server(gateway):
    """What VS Code Remote-SSH needs: a TCP forward to localhost:<port> of the user's server, byte-exact."""
    hub = gateway["hub"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def echo():
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data[::-1])
    threading.Thread(target=echo, daemon=True).start()

    client = connect(gateway["ssh"], "alice", hub.new_token("alice"))
    try:
        chan = client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                                   timeout=60)
        chan.settimeout(60)
        payload = bytes(range(256)) * 16
        chan.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += chan.recv(65536)
        assert got == payload[::-1]
        chan.close()
        for host in ("10.1.2.3", "qhub-hub"):  # nothing but the user's own server
            with pytest.raises(paramiko.ChannelException):
                client.get_transport().open_channel("direct-tcpip", (host, 8081), ("127.0.0.1", 0), timeout=20)
    finally:
        client.close()
        listener.close()
    client = connect(gateway["sftp"], "alice", hub.new_token("alice"))
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=20)
    finally:
        client.close()


def scoped_token(hub, user: str, scopes: list[str]) -> str:
    """A token with only `scopes`, created by the user herself (as on the hub's token page)."""
    own = hub.new_token(user)
    r = hub.api("POST", f"/users/{user}/tokens", token=own, json={"note": "narrow", "scopes": scopes})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_gateway_token_never_reaches_user_servers(gateway):
    """carol logs every request her own server receives, headers included (a jupyter_server_config.py in her home).
    Commands, SFTP and shells through the gateway must show her only her own token."""
    hub = gateway["hub"]
    token = hub.new_token("carol")
    assert run_command(gateway["ssh"], "carol", token, "echo $JUPYTERHUB_USER") == "carol\n"
    client = connect(gateway["sftp"], "carol", token)
    try:
        sftp = client.open_sftp()
        sftp.listdir(".")
        sftp.close()
    finally:
        client.close()
    client = connect(gateway["ssh"], "carol", token)
    try:
        chan = client.invoke_shell()
        chan.settimeout(60)
        chan.send("echo shell-ok\n")
        seen = ""
        while "shell-ok\r\n" not in seen:
            seen += chan.recv(4096).decode(errors="replace")
        chan.close()
    finally:
        client.close()
    seen_file = hub.dir / "home" / "carol" / "requests-seen.jsonl"
    requests_seen = [json.loads(line) for line in seen_file.read_text().splitlines()]
    terminal_calls = [r for r in requests_seen if "/api/terminals" in r["path"]]
    assert len(terminal_calls) >= 3, f"carol's server logged too few terminal requests: {requests_seen}"
    for r in requests_seen:
        assert hub.kubessh_token not in r["authorization"], f"the gateway's token reached carol's server: {r['path']}"
    assert {r["authorization"] for r in terminal_calls} == {f"token {token}"}, "terminals opened with her token"


def test_the_tokens_scopes_decide_the_login(gateway):
    hub = gateway["hub"]
    narrow = scoped_token(hub, "alice", ["read:users:name!user"])
    for port in (gateway["ssh"], gateway["sftp"]):
        with pytest.raises(paramiko.AuthenticationException):
            connect(port, "alice", narrow).close()
    assert 'token of "alice" lacks access:servers' in gateway["log"].read_text()
    # a token that grants exactly dave's server is enough; his stopped server is started by the gateway's own
    # read:servers/start:servers role
    assert not hub.api("GET", "/users/dave").json()["servers"]
    only_access = scoped_token(hub, "dave", ["access:servers!user=dave"])
    assert run_command(gateway["ssh"], "dave", only_access, "echo $JUPYTERHUB_USER") == "dave\n"
    assert hub.api("GET", "/users/dave").json()["servers"][""]["ready"]


def test_failed_logins_are_limited_per_source_and_per_user(hub, tmp_path):
    settings = gateway_settings(failedLoginWindow=6, maxFailedLoginsPerSource=3, maxFailedLoginsPerUser=2)
    with running_gateway(tmp_path / "gw", settings, hub_env(hub, tmp_path / "key")) as gw:
        alice, bob = hub.new_token("alice"), hub.new_token("bob")

        def refused(user: str, token: str, source: str) -> bool:
            try:
                connect(gw["ssh"], user, token, source=source).close()
                return False
            except paramiko.AuthenticationException:
                return True

        started = time.monotonic()
        # per user name: two wrong tokens for bob, from two addresses, lock bob out everywhere
        assert refused("bob", "wrong-1", "127.0.0.2") and refused("bob", "wrong-2", "127.0.0.3")
        assert refused("bob", bob, "127.0.0.4"), "bob's right token is refused while his name is locked"
        assert not refused("alice", alice, "127.0.0.4"), "other names from that address still log in"
        # per source address: three wrong logins under three names lock the address out for every name
        for name in ("x1", "x2", "x3"):
            assert refused(name, "wrong", "127.0.0.5")
        assert refused("alice", alice, "127.0.0.5"), "the address is locked for every name"
        assert not refused("alice", alice, "127.0.0.6")
        assert time.monotonic() - started < 6, "the checks above ran inside one window"
        log = gw["log"].read_text()
        assert 'login refused for "bob" from "127.0.0.4": too many failed logins' in log
        assert 'login refused for "alice" from "127.0.0.5": too many failed logins' in log
        time.sleep(6.5)
        assert not refused("bob", bob, "127.0.0.4"), "failures older than the window no longer count"
        assert not refused("alice", alice, "127.0.0.5")


def test_user_names_are_escaped_in_the_log(gateway):
    forged = 'mallory" from "10.9.9.9" accepted for "alice'
    for name in (forged, "zo\u00eb"):
        with pytest.raises(paramiko.AuthenticationException):
            connect(gateway["sftp"], name, "wrong").close()
    log = gateway["log"].read_text()
    assert forged not in log, "the name reaches the log only escaped"
    assert 'login refused for "mallory\\" from \\"10.9.9.9\\" accepted for \\"alice" from "127.0.0.1"' in log
    assert 'login refused for "zo\\u00eb"' in log


def test_host_key_kept_in_its_secret_with_the_charts_rbac(cluster: LocalCluster, tmp_path: Path):
    """Two gateways start at once against the chart's empty host key Secret, as the chart's ServiceAccount: one
    stores a key, both serve it, a restart serves it again, re-applying the rendered Secret (what a GitOps sync
    does) keeps it, and the ServiceAccount can do nothing else with Secrets."""
    ns = f"kubessh-{uuid.uuid4().hex[:6]}"
    sa = f"system:serviceaccount:{ns}:qhub-kubessh"
    docs = render()
    objs = [find(docs, kind, name) for kind, name in (("ServiceAccount", "qhub-kubessh"), ("Role", "qhub-kubessh"),
                                                      ("RoleBinding", "qhub-kubessh"),
                                                      ("Secret", "qhub-kubessh-host-key"))]
    objs[2]["subjects"][0]["namespace"] = ns  # rendered for namespace qhub
    manifest = "\n---\n".join(yaml.safe_dump(o) for o in objs)
    cluster.kubectl("create", "namespace", ns)
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        admin = yaml.safe_load(cluster.kubeconfig.read_text())
        server = admin["clusters"][0]["cluster"]
        sa_dir = tmp_path / "sa"
        sa_dir.mkdir()
        (sa_dir / "token").write_text(cluster.kubectl("create", "token", "qhub-kubessh", "-n", ns, "--duration", "1h"))
        (sa_dir / "ca.crt").write_bytes(base64.b64decode(server["certificate-authority-data"]))
        (sa_dir / "namespace").write_text(ns)
        settings = gateway_settings(hostKeySecret="qhub-kubessh-host-key", kubeApiUrl=server["server"],
                                    kubeSaDir=str(sa_dir))

        def served_key(port: int) -> bytes:
            with paramiko.Transport(("127.0.0.1", port)) as t:
                t.start_client(timeout=20)
                return t.get_remote_server_key().asbytes()

        def stored() -> bytes:
            data = json.loads(cluster.kubectl("get", "secret", "qhub-kubessh-host-key", "-n", ns, "-o", "json"))
            return base64.b64decode(data["data"]["ssh_host_ed25519_key"])

        with running_gateway(tmp_path / "a", settings, {}) as a, running_gateway(tmp_path / "b", settings, {}) as b:
            key = served_key(a["ssh"])
            assert served_key(b["ssh"]) == key, "racing gateways agree on one key"
        assert paramiko.Ed25519Key.from_private_key(io.StringIO(stored().decode())).asbytes() == key
        logs = (tmp_path / "a" / "qhub-ssh.log").read_text() + (tmp_path / "b" / "qhub-ssh.log").read_text()
        assert logs.count("generated a new SSH host key") == 1
        for apply in (["apply"], ["apply", "--server-side", "--force-conflicts"]):
            cluster.kubectl(*apply, "-n", ns, "-f", "-", input=yaml.safe_dump(objs[3]))
        with running_gateway(tmp_path / "c", settings, {}) as c:
            assert served_key(c["ssh"]) == key, "kept across a restart and re-applied manifests"
        for verb, what, allowed in [("get", "secret/qhub-kubessh-host-key", "yes"),
                                    ("update", "secret/qhub-kubessh-host-key", "yes"),
                                    ("get", "secret/qhub-hub", "no"), ("list", "secrets", "no"),
                                    ("create", "secrets", "no"), ("delete", "secret/qhub-kubessh-host-key", "no"),
                                    ("get", "pods", "no")]:
            answer = run([str(bin_dir() / "kubectl"), "auth", "can-i", verb, what, "-n", ns, "--as", sa],
                         env=cluster.env, check=False, timeout=60).stdout.strip()
            assert answer == allowed, (verb, what, answer)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
