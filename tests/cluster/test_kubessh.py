"""kubessh end to end on the host: the real qhub_ssh gateway (images/kubessh) with the chart's rendered settings
and host key, against a real JupyterHub whose user servers are real jupyterhub-singleuser processes, driven by
paramiko as an SSH/SFTP client.

The chart's cluster lifecycle (install --wait, upgrade, rollback, host key kept) is in test_kubessh_chart below.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import json
import os
import subprocess
import sys
import time
import uuid

import paramiko
from cryptography.hazmat.primitives import serialization
import pytest
import yaml

from servicehub import REPO, find, free_port, render, running_hub, stop, wait_until

pytestmark = pytest.mark.cluster
JH_VALUES = REPO / "charts" / "qhub" / "charts" / "jupyterhub" / "values.yaml"


def kubessh_scopes() -> list[str]:
    """Scopes the platform grants the kubessh service (what the gateway must live with): the umbrella's value,
    else the jupyterhub subchart's default."""
    umbrella = yaml.safe_load((REPO / "charts" / "qhub" / "values.yaml").read_text())
    scopes = umbrella["jupyterhub"]["hub"]["services"]["kubessh"].get("scopes")
    return scopes or yaml.safe_load(JH_VALUES.read_text())["hub"]["services"]["kubessh"]["scopes"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubessh")
    docs = render()
    settings = json.loads(find(docs, "ConfigMap", "qhub-kubessh-config")["data"]["config.json"])
    key_pem = base64.b64decode(find(docs, "Secret", "qhub-kubessh")["data"]["ssh_host_ed25519_key"])
    (tmp / "config.json").write_text(json.dumps(settings))
    key_file = tmp / "ssh_host_ed25519_key"
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)

    token = os.urandom(16).hex()
    services = [{"name": "kubessh", "api_token": token, "display": False}]
    roles = [{"name": "kubessh-service", "services": ["kubessh"], "scopes": kubessh_scopes()}]
    with running_hub(tmp / "hub", services=services, roles=roles, spawn=True,
                     users={"alice": ["team"], "bob": ["team"]}) as hub:
        (hub.dir / "home" / "bob" / "secret.txt").write_text("bob's only")
        ssh_port, sftp_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "images" / "kubessh" / "rootfs" / "opt" / "qhub-ssh"),
               "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": token,
               "QHUB_SSH_PROXY_URL": hub.url, "QHUB_SSH_HOME_ROOT": str(hub.dir / "home"),
               "QHUB_SSH_HOST_KEY": str(key_file), "QHUB_SSH_BIND": "127.0.0.1",
               "QHUB_SSH_PORT": str(ssh_port), "QHUB_SSH_SFTP_PORT": str(sftp_port)}
        log = tmp / "qhub-ssh.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "qhub_ssh", "--config", str(tmp / "config.json")],
                                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: proc.poll() is None and "listening" in log.read_text(), 30, "qhub-ssh")
            yield {"hub": hub, "ssh": ssh_port, "sftp": sftp_port, "key": key_pem, "settings": settings,
                   "log": log}
        finally:
            stop(proc)


def connect(port: int, user: str, password: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=port, username=user, password=password, look_for_keys=False,
                   allow_agent=False, timeout=20, auth_timeout=20, banner_timeout=20)
    return client


def test_rendered_settings_match_the_platform(gateway):
    s = gateway["settings"]
    assert s["hubApiUrl"] == "http://qhub-hub:8081/hub/api"
    assert s["proxyUrl"] == "http://qhub-proxy-public:80"
    assert (s["sshPort"], s["sftpPort"], s["homeRoot"]) == (8022, 8023, "/mnt/home")


def test_login_runs_a_command_in_the_users_own_server(gateway):
    hub = gateway["hub"]
    assert not hub.api("GET", "/users/alice").json()["servers"], "alice's server starts stopped"
    token = hub.new_token("alice")
    client = connect(gateway["ssh"], "alice", token)
    try:
        host_key = client.get_transport().get_remote_server_key()
        rendered = serialization.load_pem_private_key(gateway["key"], password=None).public_key()
        raw = rendered.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert host_key.get_name() == "ssh-ed25519" and host_key.asbytes().endswith(raw), "chart's host key served"

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


def test_sftp_into_home_and_nowhere_else(gateway, tmp_path):
    hub = gateway["hub"]
    token = hub.new_token("alice")
    local = tmp_path / "notes.txt"
    payload = f"uploaded {uuid.uuid4()}\n"
    local.write_text(payload)
    for port in (gateway["sftp"], gateway["ssh"]):  # the SFTP-only port and SSH's sftp subsystem
        client = connect(port, "alice", token)
        try:
            sftp = client.open_sftp()
            name = f"notes-{port}.txt"
            sftp.put(str(local), name)
            assert (hub.dir / "home" / "alice" / name).read_text() == payload
            assert name in sftp.listdir(".")
            assert sftp.normalize(".") == "/", "the home directory is the SFTP root"
            for escape in ("../bob/secret.txt", "/../bob/secret.txt", "../../jupyterhub.sqlite"):
                with pytest.raises(OSError):
                    sftp.open(escape).read()
            sftp.close()
        finally:
            client.close()
    # a symlink planted in alice's home (e.g. from her terminal) does not lead into bob's
    os.symlink(hub.dir / "home" / "bob", hub.dir / "home" / "alice" / "to-bob")
    client = connect(gateway["sftp"], "alice", token)
    try:
        sftp = client.open_sftp()
        with pytest.raises(PermissionError):
            sftp.open("to-bob/secret.txt").read()
        with pytest.raises(PermissionError):
            sftp.listdir("to-bob")
    finally:
        client.close()
    # the SFTP-only port runs no commands
    client = connect(gateway["sftp"], "alice", token)
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
    assert "refused for bob" in log and alice not in log, "refusals are logged, tokens never"


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
