"""qhubctl deploy on the local cluster: from scratch, no-op re-deploy, targeted rollout, schema upgrade,
immutable-field refusal, destroy keeping volumes. The tests run in order and share one deployment."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qhubctl import kube
from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.cluster
runner = CliRunner()
NS = f"qhubctl-{uuid.uuid4().hex[:6]}"

CONFIG = f"""\
schema_version: 2
project_name: deploytest
namespace: {NS}
release_name: qd
cluster:
  provider: local
auth:
  type: dummy
  users: {{ann: {{groups: [team]}}}}
  groups: {{team: {{gid: 3001}}}}
  admins: [ann]
storage: {{type: nfs, size: 5Gi, disk_storage_class: standard}}
dask_gateway: {{idle_timeout_minutes: 30}}
"""
# The same deployment written in schema_version 1 (the previous format).
CONFIG_V1 = f"""\
project_name: deploytest
namespace: {NS}
release_name: qd
provider: local
local: {{}}
security:
  authentication: {{type: password}}
  users: {{ann: {{primary_group: team}}}}
  groups: {{team: {{gid: 3001}}}}
  admins: [ann]
storage: {{type: nfs, shared_filesystem: 5Gi, disk_storage_class: standard}}
dask_gateway: {{idle_timeout_minutes: 30}}
"""


@pytest.fixture(scope="module")
def env(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    path = tmp_path_factory.mktemp("deploy") / "qhub-config.yaml"
    path.write_text(CONFIG)
    api = kube.api_client(cluster.kubeconfig)
    yield {"path": path, "api": api, "kubeconfig": str(cluster.kubeconfig)}
    runner.invoke(app, ["destroy", "--yes", "--delete-data", "-c", str(path), "--kubeconfig", str(cluster.kubeconfig)])
    from kubernetes import client as k8s

    k8s.CoreV1Api(api).delete_namespace(NS)


def qhubctl(env: dict[str, object], *args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    result = runner.invoke(app, [*args, "-c", str(env["path"]), "--kubeconfig", str(env["kubeconfig"])])
    return result.exit_code, result.output, time.monotonic() - start


def hashes(env: dict[str, object]) -> dict[str, str]:
    return {f"{w.kind}/{w.name}": w.template_hash for w in kube.workloads(env["api"], NS)}


def test_deploy_from_scratch(env: dict[str, object]) -> None:
    code, out, seconds = qhubctl(env, "deploy", "--yes", "--timeout", "5m")
    assert code == 0, out
    assert "deployed revision 1" in out
    workloads = kube.workloads(env["api"], NS)
    assert workloads and all(w.done for w in workloads), workloads
    state = kube.read_secret(env["api"], NS, "qd-qhubctl-state")
    assert state and "project_name: deploytest" in state["config.yaml"]
    # the namespace qhubctl created carries Pod Security labels: this config runs the in-cluster NFS server, so it
    # enforces privileged and warns/audits at restricted (tests/cluster/test_pod_security.py checks the levels)
    from kubernetes import client as k8s

    labels = k8s.CoreV1Api(env["api"]).read_namespace(NS).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    code, out, _ = qhubctl(env, "status")
    assert code == 0, out
    print(f"deploy from scratch: {seconds:.1f}s")


def test_redeploy_is_noop(env: dict[str, object]) -> None:
    before = hashes(env)
    code, out, seconds = qhubctl(env, "deploy", "--yes")
    assert code == 0 and "no changes" in out, out
    assert hashes(env) == before
    code, out, _ = qhubctl(env, "render", "--diff")
    assert code == 0 and "no changes" in out, out
    print(f"no-op deploy: {seconds:.1f}s")


def test_change_rolls_only_what_changed(env: dict[str, object]) -> None:
    path: Path = env["path"]  # type: ignore[assignment]
    before = hashes(env)
    path.write_text(path.read_text().replace("idle_timeout_minutes: 30", "idle_timeout_minutes: 45"))
    code, out, _ = qhubctl(env, "deploy", "--dry-run", "--detailed-exitcode")
    assert code == 2 and "defaultMinutes: 45" in out, out
    code, out, _ = qhubctl(env, "deploy", "--yes", "--timeout", "5m")
    assert code == 0 and "deployed revision 2" in out, out
    after = hashes(env)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed, "the dask-gateway config change restarts the gateway"
    assert all("dask-gateway" in name for name in changed), changed
    assert not any(name.endswith("-hub") for name in changed)


def test_immutable_field_refused(env: dict[str, object]) -> None:
    path: Path = env["path"]  # type: ignore[assignment]
    good = path.read_text()
    path.write_text(good.replace("storage: {type: nfs, size: 5Gi, disk_storage_class: standard}",
                                 "storage: {type: existing, storage_class: standard}"))
    code, out, _ = qhubctl(env, "deploy", "--yes")
    path.write_text(good)
    assert code == 1, out
    assert "storage.type" in out and "'nfs' -> 'existing'" in out and "Traceback" not in out


def test_upgrade_from_previous_schema(env: dict[str, object]) -> None:
    path: Path = env["path"]  # type: ignore[assignment]
    path.write_text(CONFIG_V1.replace("idle_timeout_minutes: 30", "idle_timeout_minutes: 45"))
    result = runner.invoke(app, ["upgrade", "-c", str(path)])
    code, out = result.exit_code, result.output
    assert code == 0 and "schema_version 1 to 2" in out, out
    code, out, _ = qhubctl(env, "deploy", "--yes")
    # native auth (v1 "password") differs from the dummy auth deployed: only the hub rolls
    assert code == 0, out
    # the admin's password was generated into the hub Secret; deploy says so and where to read it, but prints it
    # only on a terminal (this output is not one, like a CI log)
    passwords = json.loads(kube.read_secret(env["api"], NS, "qd-hub")["native-admin-passwords"])
    assert list(passwords) == ["ann"] and passwords["ann"] not in out
    assert "generated the password of admin ann; not shown" in out
    assert f"kubectl --namespace {NS} get secret qd-hub -o jsonpath='{{.data.native-admin-passwords}}'" in out
    code, out, _ = qhubctl(env, "deploy", "--yes")
    assert code == 0 and "no changes" in out, out


def test_destroy_keeps_volumes(env: dict[str, object]) -> None:
    claims = kube.pvcs(env["api"], NS)
    assert claims, "the deployment has volume claims"
    code, out, _ = qhubctl(env, "destroy", "--yes")
    assert code == 0 and "uninstalled" in out, out
    assert set(kube.pvcs(env["api"], NS)) >= {c for c in claims if "shared" not in c}
    assert kube.read_secret(env["api"], NS, "qd-qhubctl-state") is None
    assert json.loads(json.dumps(kube.workloads(env["api"], NS), default=str)) == []
