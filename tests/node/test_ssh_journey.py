"""SSH and SFTP the way a user meets them, on the real node: QHub deployed by `qhubctl deploy` from the config
`qhubctl init local` writes (kubessh on, exposed on NodePorts), images built here from the tree (the gateway from
images/kubessh as it is now). A user logs in to the hub, starts her server and creates a token through the hub API;
then OpenSSH's own `ssh` and `sftp`, on this machine, reach the gateway container on the NodePorts that
`kubectl get svc` shows (what README.md tells a user of the local cluster), run a command inside her server and
upload a file that her server's Jupyter contents API then serves. Wrong, narrow and other users' tokens are
refused, failed logins lock a name out, the gateway's own hub token never reaches her server, and the host key
survives a `helm upgrade` that restarts the gateway.

A failing test leaves the namespace's pods, events and logs under build/test-artifacts/node/ and prints where.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import qhubkit
import requests
import yaml
from jupyterkit import user_token
from qhubkit import REPO, Platform

from nodekit import wait_for
from qhubctl import realnode
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import Result, run

pytestmark = pytest.mark.node

NS = "qhub-ssh"
RELEASE = "qssh"
IMAGES = ("jupyterhub", "jupyterlab", "kubessh")
SSH_TOOLS = ("ssh", "sftp", "ssh-keyscan")

# What a user can put in her own ~/.jupyter to log every request her server receives, headers included.
HEADER_LOGGER = """import json, os
def _log_headers(handler):
    with open(os.path.join(os.environ["HOME"], "requests-seen.jsonl"), "a") as f:
        f.write(json.dumps({"path": handler.request.path,
                            "authorization": handler.request.headers.get("Authorization", "")}) + "\\n")
c.ServerApp.tornado_settings = {"log_function": _log_headers}
"""


@dataclass
class SshJourney:
    """The deployed platform as a user on this machine sees it, with the gateway's ports."""

    qhub: Platform
    user: str
    token: str  # the user's own token, created through the hub API with her login session
    admin: str
    admin_token: str
    ssh_port: int  # NodePort of the Service's port 8022
    sftp_port: int  # NodePort of the Service's port 8023
    work: Path
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def cluster(self) -> LocalCluster:
        return self.qhub.cluster

    @property
    def url(self) -> str:  # http://127.0.0.1:<proxy NodePort>/
        return self.qhub.url

    def contents(self, path: str, token: str | None = None) -> requests.Response:
        """The Jupyter contents API of the user's server, through the hub's proxy, with her token."""
        return requests.get(f"{self.url}user/{self.user}/api/contents/{path}", params={"content": "1"},
                            headers={"Authorization": f"token {token or self.token}"}, timeout=60)

    def hub_api(self, method: str, path: str, token: str, **kw: Any) -> requests.Response:
        return self.qhub.hub_api(method, path, token, **kw)


class OpenSSH:
    """OpenSSH's client programs, with a token as password through SSH_ASKPASS (no terminal, no sshpass)."""

    def __init__(self, work: Path) -> None:
        missing = [tool for tool in SSH_TOOLS if not shutil.which(tool)]
        assert not missing, f"{', '.join(missing)} not found: install Debian's openssh-client (ci/apt-packages.txt)"
        self.work = work
        self.known_hosts = work / "known_hosts"
        self._n = 0

    def _askpass(self, token: str) -> dict[str, str]:
        self._n += 1
        secret = self.work / f"token-{self._n}"
        secret.write_text(token)
        secret.chmod(0o600)
        script = self.work / f"askpass-{self._n}"
        script.write_text(f"#!/bin/sh\ncat '{secret}'\n")
        script.chmod(0o700)
        return {"SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}

    def options(self, strict: bool = False) -> list[str]:
        # BatchMode=no comes first: sftp -b adds BatchMode=yes after it, and ssh keeps an option's first value
        return ["-F", "/dev/null", "-o", "BatchMode=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"StrictHostKeyChecking={'yes' if strict else 'accept-new'}",
                "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"]

    def ssh(self, port: int, user: str, token: str, command: str, strict: bool = False,
            timeout: float = 360) -> Result:
        return run(["ssh", *self.options(strict), "-p", str(port), f"{user}@127.0.0.1", command],
                   env=self._askpass(token), input="", check=False, timeout=timeout)

    def sftp(self, port: int, user: str, token: str, batch: str, timeout: float = 360) -> Result:
        batch_file = self.work / f"batch-{self._n + 1}"
        batch_file.write_text(batch)
        return run(["sftp", *self.options(), "-P", str(port), "-b", str(batch_file), f"{user}@127.0.0.1"],
                   env=self._askpass(token), input="", check=False, timeout=timeout)


def _node_ports(cluster: LocalCluster) -> dict[int, int]:
    """Service port -> NodePort of the gateway's Service, as `kubectl -n <ns> get svc <release>-kubessh` shows."""
    svc = json.loads(cluster.kubectl("get", "svc", f"{RELEASE}-kubessh", "-n", NS, "-o", "json"))
    assert svc["spec"]["type"] == "NodePort", "qhubctl exposes SSH on NodePorts on the local cluster"
    return {p["port"]: p["nodePort"] for p in svc["spec"]["ports"]}


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshJourney]:
    work = tmp_path_factory.mktemp("ssh-journey")
    OpenSSH(work)  # fails now, naming the package, if the clients are missing
    # the gateway image is built from the tree as it is
    with qhubkit.deployed(cluster, work, NS, RELEASE, qhubkit.local_config(NS, RELEASE), IMAGES,
                          timeout="6m") as qhub:
        user, admin = qhub.access["username"], qhub.access["admin_username"]
        qhub.start_server(user, timeout=420)
        ports = _node_ports(cluster)
        match = re.fullmatch(r"ssh -p (\d+) (\S+)@127\.0\.0\.1", qhub.access["ssh"])
        assert match and int(match.group(1)) == ports[8022] and match.group(2) == user, qhub.access["ssh"]
        yield SshJourney(qhub=qhub, user=user, token=qhub.token(user), admin=admin, admin_token=qhub.token(admin),
                         ssh_port=ports[8022], sftp_port=ports[8023], work=work)


@pytest.fixture
def openssh(platform: SshJourney, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenSSH]:
    """The clients, sharing one known_hosts; on failure the namespace's pods, events and logs are saved."""
    client = OpenSSH(tmp_path)
    shared = platform.work / "known_hosts"
    if shared.exists():
        shutil.copy(shared, client.known_hosts)
    failed_before = request.session.testsfailed
    yield client
    if client.known_hosts.exists():
        shutil.copy(client.known_hosts, shared)
    if request.session.testsfailed > failed_before:
        print(f"\n[node] what the pods of {NS} did: {platform.qhub.report(request.node.name)}")


def _gateway_logs(cluster: LocalCluster) -> str:
    return cluster.kubectl("logs", "-n", NS, "-l", "app.kubernetes.io/component=kubessh", "--tail=-1",
                           "--prefix")


def test_ssh_runs_a_command_inside_the_users_server(platform: SshJourney, openssh: OpenSSH) -> None:
    times = []
    for i in range(3):
        started = time.monotonic()
        command = f"echo run-{i} $JUPYTERHUB_USER $(cat /etc/hostname) $PWD $(id -u); echo to-stderr >&2; exit 7"
        done = openssh.ssh(platform.ssh_port, platform.user, platform.token, command)
        times.append(time.monotonic() - started)
        assert done.returncode == 7, f"exit status: {done.returncode}\n{done.stdout}\n{done.stderr}"
        pod = json.loads(platform.cluster.kubectl("get", "pod", f"jupyter-{platform.user}", "-n", NS, "-o", "json"))
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
        uid = main.get("securityContext", {}).get("runAsUser") or pod["spec"]["securityContext"]["runAsUser"]
        assert done.stdout == f"run-{i} {platform.user} jupyter-{platform.user} /home/{platform.user} {uid}\n", \
            done.stdout
        assert "to-stderr" in done.stderr
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME, "the command ran in the user's pod on the real node"
    gateway = json.loads(platform.cluster.kubectl("get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=kubessh",
                                                  "-o", "json"))["items"]
    assert gateway and all(p["spec"]["nodeName"] == realnode.NODE_NAME for p in gateway)
    built = f"{realnode.REGISTRY}/qhub/kubessh@{platform.qhub.digests['kubessh']}"
    assert {s["imageID"] for p in gateway for s in p["status"]["containerStatuses"]} == {built}, \
        "the gateway image built from this tree"
    platform.figures["ssh login to command output (warm server), median s"] = statistics.median(times)
    print(f"[node] ssh login to command output: {', '.join(f'{t:.2f}s' for t in times)}")


def test_sftp_upload_shows_in_the_users_server(platform: SshJourney, openssh: OpenSSH) -> None:
    blob = os.urandom(4 * 1024 * 1024)
    (platform.work / "data.bin").write_bytes(blob)
    (platform.work / "notes.txt").write_text("uploaded over sftp\n")
    started = time.monotonic()
    done = openssh.sftp(platform.sftp_port, platform.user, platform.token,
                        f"mkdir uploads\nput {platform.work / 'notes.txt'} uploads/notes.txt\n"
                        f"put {platform.work / 'data.bin'} uploads/data.bin\n")
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    notes = platform.contents("uploads/notes.txt")
    assert notes.status_code == 200 and notes.json()["content"] == "uploaded over sftp\n", notes.text[:300]
    data = platform.contents("uploads/data.bin")
    assert data.status_code == 200 and data.json()["format"] == "base64"
    assert hashlib.sha256(base64.b64decode(data.json()["content"])).digest() == hashlib.sha256(blob).digest()
    listing = platform.contents("uploads").json()["content"]
    assert {f["name"] for f in listing} == {"notes.txt", "data.bin"}, "the lab's file browser lists them"
    owner = openssh.ssh(platform.ssh_port, platform.user, platform.token, "stat -c %u uploads/data.bin; id -u")
    assert owner.returncode == 0 and len(set(owner.stdout.split())) == 1, f"the upload is the user's: {owner.stdout}"
    others = openssh.sftp(platform.sftp_port, platform.user, platform.token, "ls -1 /home\n")
    assert others.returncode == 0 and f"/home/{platform.user}" in others.stdout, others.stdout + others.stderr
    assert f"/home/{platform.admin}" not in others.stdout, "SFTP sees only what the user's own server mounts"
    platform.figures["sftp upload of 4 MiB + a small file (login included), s"] = seconds
    print(f"[node] sftp upload of 4 MiB: {seconds:.2f}s ({4 / seconds:.1f} MiB/s, login included)")


def test_wrong_narrow_and_other_users_tokens_are_refused(platform: SshJourney, openssh: OpenSSH) -> None:
    narrow = user_token(platform.qhub.login(platform.user), platform.url, platform.user, note="ssh",
                        scopes=["read:users:name!user"])
    for user, token, why in [
        (platform.user, "not-a-token", "a wrong token"),
        (platform.user, platform.admin_token, "another user's (an admin's) token"),
        (platform.admin, platform.token, "the user's token for another account"),
        (platform.user, narrow, "a token without access to her server"),
    ]:
        done = openssh.ssh(platform.ssh_port, user, token, "echo should-not-run")
        assert done.returncode == 255 and "Permission denied" in done.stderr, (why, done.stdout, done.stderr)
        assert "should-not-run" not in done.stdout
    done = openssh.sftp(platform.sftp_port, platform.user, platform.admin_token, "ls\n")
    assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr
    logs = _gateway_logs(platform.cluster)
    assert f'login refused for "{platform.admin}"' in logs and platform.admin_token not in logs


def _host_keys(keyscan: str) -> list[str]:
    """The keys in ssh-keyscan's output, without the host column."""
    return sorted(line.split(None, 1)[1] for line in keyscan.splitlines() if "ssh-ed25519" in line)


def test_the_gateway_token_never_reaches_the_users_server(platform: SshJourney, openssh: OpenSSH) -> None:
    """The user logs every request her own server receives (a jupyter_server_config.py in her home, uploaded over
    SFTP), her server restarts, and SSH starts it again and runs commands in it: she sees her own token only."""
    config = platform.work / "jupyter_server_config.py"
    config.write_text(HEADER_LOGGER)
    done = openssh.sftp(platform.sftp_port, platform.user, platform.token,
                        f"-mkdir .jupyter\nput {config} .jupyter/jupyter_server_config.py\n")
    assert done.returncode == 0, done.stderr
    stop = platform.hub_api("DELETE", f"/users/{platform.user}/server", platform.token)
    assert stop.status_code in (202, 204), stop.text
    wait_for("the server to stop", lambda: not platform.hub_api(
        "GET", f"/users/{platform.user}", platform.token).json()["servers"], timeout=180, interval=2)
    started = time.monotonic()
    done = openssh.ssh(platform.ssh_port, platform.user, platform.token, "echo started-by-ssh")
    cold = time.monotonic() - started
    assert done.returncode == 0 and done.stdout == "started-by-ssh\n", done.stdout + done.stderr
    platform.figures["ssh login to command output, server stopped (started by the login), s"] = cold
    assert openssh.ssh(platform.ssh_port, platform.user, platform.token, "true").returncode == 0
    seen_file = platform.contents("requests-seen.jsonl")
    assert seen_file.status_code == 200, "her server logged the requests it received"
    seen = [json.loads(line) for line in seen_file.json()["content"].splitlines()]
    terminals = [r for r in seen if "/api/terminals" in r["path"]]
    assert len(terminals) >= 2, seen
    hub_secret = json.loads(platform.cluster.kubectl("get", "secret", f"{RELEASE}-hub", "-n", NS, "-o", "json"))
    gateway_token = base64.b64decode(hub_secret["data"]["token-kubessh"]).decode()
    assert gateway_token and not [r for r in seen if gateway_token in r["authorization"]], \
        "the gateway's hub token reached the user's server"
    assert {r["authorization"] for r in terminals} == {f"token {platform.token}"}
    print(f"[node] ssh login to command output with the server stopped: {cold:.1f}s")
    done = openssh.sftp(platform.sftp_port, platform.user, platform.token, "rm .jupyter/jupyter_server_config.py\n")
    assert done.returncode == 0, done.stderr


def test_failed_logins_lock_a_name_out(platform: SshJourney, openssh: OpenSSH) -> None:
    values = yaml.safe_load((REPO / "charts" / "qhub" / "charts" / "kubessh" / "values.yaml").read_text())
    per_user = values["failedLogins"]["perUser"]
    whoami = platform.hub_api("GET", "/user", platform.admin_token)
    assert whoami.status_code == 200 and whoami.json()["name"] == platform.admin, "the admin's token is valid"
    for i in range(per_user):
        assert openssh.ssh(platform.ssh_port, platform.admin, f"wrong-{i}", "true").returncode == 255
    lockout = f'login refused for "{platform.admin}" from '
    before = [line for line in _gateway_logs(platform.cluster).splitlines()
              if lockout in line and "too many failed logins" in line]
    locked = openssh.ssh(platform.ssh_port, platform.admin, platform.admin_token, "echo in")
    assert locked.returncode == 255 and locked.stdout == "", "the right token is refused while the name is locked"
    after = [line for line in _gateway_logs(platform.cluster).splitlines()
             if lockout in line and "too many failed logins" in line]
    assert len(after) == len(before) + 1, "the right token was refused by the lock, without asking the hub"
    done = openssh.ssh(platform.ssh_port, platform.user, platform.token, "echo other-names-unaffected")
    assert done.stdout == "other-names-unaffected\n", done.stderr


def test_host_key_survives_an_upgrade_that_restarts_the_gateway(platform: SshJourney, openssh: OpenSSH) -> None:
    before = run(["ssh-keyscan", "-t", "ed25519", "-p", str(platform.ssh_port), "127.0.0.1"], check=False,
                 timeout=60).stdout
    assert "ssh-ed25519" in before
    secret = json.loads(platform.cluster.kubectl("get", "secret", f"{RELEASE}-kubessh-host-key", "-n", NS,
                                                 "-o", "json"))
    assert "ssh_host_ed25519_key" in secret.get("data", {}), "the gateway stored its key in the Secret"
    pods = {p["metadata"]["uid"] for p in json.loads(platform.cluster.kubectl(
        "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=kubessh", "-o", "json"))["items"]}
    qhubkit.helm(platform.cluster, "upgrade", RELEASE, str(REPO / "charts" / "qhub"), "-n", NS, "--reuse-values",
                 "--set", "kubessh.loginTimeout=61", "--wait", "--timeout", "5m", timeout=360)
    platform.cluster.kubectl("rollout", "status", f"deployment/{RELEASE}-kubessh", "-n", NS, "--timeout=180s",
                             timeout=200)
    names = [p["metadata"]["name"] for p in json.loads(platform.cluster.kubectl(
        "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=kubessh", "-o", "json"))["items"]
        if p["metadata"]["uid"] in pods]
    if names:
        platform.cluster.kubectl("wait", "--for=delete", *(f"pod/{n}" for n in names), "-n", NS, "--timeout=120s",
                                 timeout=150)
    after_pods = {p["metadata"]["uid"] for p in json.loads(platform.cluster.kubectl(
        "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=kubessh", "-o", "json"))["items"]}
    assert not pods & after_pods, "the upgrade replaced the gateway pod"
    done = openssh.ssh(platform.ssh_port, platform.user, platform.token, "echo same-key", strict=True)
    assert done.returncode == 0 and done.stdout == "same-key\n", done.stderr
    after = run(["ssh-keyscan", "-t", "ed25519", "-p", str(platform.ssh_port), "127.0.0.1"], check=False,
                timeout=60).stdout
    assert _host_keys(after) == _host_keys(before)
    print("[node] figures: " + json.dumps({k: round(v, 2) for k, v in platform.figures.items()}))
