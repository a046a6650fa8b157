"""The first hour with qhubctl on a real cluster (issue 15): after `cluster create` wrote <project>.kubeconfig next
to the config, the other commands find the cluster by themselves; no false alarm from `helm status` on the normal
path; status tells the truth (no URLs without a release; NodePort and port-forward as the Services really are)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from qhubctl import kube
from qhubctl.config import load_config
from qhubctl.localcluster import LocalCluster
from qhubctl.status import access

pytestmark = pytest.mark.cluster
NS = f"firsthour-{uuid.uuid4().hex[:6]}"
PROJECT = "firsthour"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "qhub-config.yaml"
    path.write_text(f"schema_version: 2\nproject_name: {PROJECT}\nnamespace: {NS}\nrelease_name: fh\n"
                    "cluster:\n  provider: local\nauth:\n  type: native\n  admins: [ann]\n"
                    "  users: {ann: {groups: [team]}}\n  groups: {team: {gid: 3001}}\n")
    return path


def _qhubctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (so pyhelm3's logging reaches stderr as for a user), without
    KUBECONFIG: the only way to the cluster is the <project>.kubeconfig next to the config."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path / "home")  # no ~/.kube/config either
    code = "import sys; from qhubctl.cli import main; sys.argv[0] = 'qhubctl'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)


def test_commands_use_the_project_kubeconfig_without_false_alarms(cluster: LocalCluster, tmp_path: Path) -> None:
    config = _config(tmp_path)
    shutil.copy(cluster.kubeconfig, tmp_path / f"{PROJECT}.kubeconfig")  # what `cluster create` writes there
    c = ["-c", str(config)]

    st = _qhubctl(tmp_path, "status", *c)
    assert st.returncode == 3, st.stdout + st.stderr  # reached the cluster: the release is not installed
    assert f"release fh in {NS}: not installed" in st.stdout and f"qhubctl deploy -c {config}" in st.stdout
    assert "http" not in st.stdout and "ssh -p" not in st.stdout, st.stdout  # no URLs that would not answer
    assert f"kubeconfig: {tmp_path / (PROJECT + '.kubeconfig')}" in st.stderr
    assert "command failed" not in st.stderr, st.stderr

    plan = _qhubctl(tmp_path, "deploy", "--dry-run", *c)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "plan: install release fh" in plan.stdout and "all new" in plan.stdout
    assert len(plan.stdout.splitlines()) < 10, plan.stdout  # summarised, not a 150-line diff
    assert "command failed" not in plan.stderr, plan.stderr
    full = _qhubctl(tmp_path, "deploy", "--dry-run", "--diff", *c)
    assert full.returncode == 0 and len(full.stdout.splitlines()) > 50 and "+jupyterhub:" in full.stdout

    for _ in range(2):  # destroying what is not there, twice: a plain answer
        gone = _qhubctl(tmp_path, "destroy", "--yes", *c)
        assert gone.returncode == 0 and "release was not installed" in gone.stdout, gone.stdout + gone.stderr
        assert "command failed" not in gone.stderr, gone.stderr

    zipped = tmp_path / "support.zip"
    sup = _qhubctl(tmp_path, "support", *c, "-o", str(zipped))
    assert sup.returncode == 0 and "command failed" not in sup.stderr, sup.stdout + sup.stderr
    with zipfile.ZipFile(zipped) as zf:
        assert "workloads.json" in zf.namelist() and "unreachable.txt" not in zf.namelist()


def _service(name: str, kind: str, ports: list[tuple[str, int]]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"type": kind, "selector": {"app": "none"},
                     "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports]}}


def test_status_reaches_services_as_they_are(cluster: LocalCluster, tmp_path: Path) -> None:
    """The access lines come from the Services on the API server: a NodePort proxy and SSH gateway give
    127.0.0.1:<nodePort> on the local provider; a ClusterIP proxy gives the port-forward command first."""
    cfg = load_config(_config(tmp_path), environ={})
    api = kube.api_client(cluster.kubeconfig)
    kube.ensure_namespace(api, NS)
    try:
        ssh = kube._rest(api, "POST", f"/api/v1/namespaces/{NS}/services",
                         body=_service("fh-kubessh", "NodePort", [("ssh", 8022), ("sftp", 8023)]))
        hub = kube._rest(api, "POST", f"/api/v1/namespaces/{NS}/services",
                         body=_service("fh-proxy-public", "NodePort", [("http", 80)]))
        ssh_port = next(p["nodePort"] for p in ssh["spec"]["ports"] if p["port"] == 8022)
        hub_port = hub["spec"]["ports"][0]["nodePort"]
        lines = access(cfg, api)
        assert f"jupyterhub: http://127.0.0.1:{hub_port}/hub/" in lines, lines
        assert any(line.startswith(f"ssh: ssh -p {ssh_port} <user>@127.0.0.1") for line in lines), lines
        assert any("log in: admins (ann)" in line and "native-admin-passwords" in line for line in lines), lines

        kube._rest(api, "DELETE", f"/api/v1/namespaces/{NS}/services/fh-proxy-public")
        kube._rest(api, "POST", f"/api/v1/namespaces/{NS}/services",
                   body=_service("fh-proxy-public", "ClusterIP", [("http", 80)]))
        lines = access(cfg, api)
        forward = f"kubectl --namespace {NS} port-forward service/fh-proxy-public 8080:80"
        assert "jupyterhub: http://localhost:8080/hub/" in lines and any(forward in line for line in lines), lines
    finally:
        kube._rest(api, "DELETE", f"/api/v1/namespaces/{NS}")
