"""The umbrella chart's whole Helm lifecycle on the local cluster: install, test, upgrade, rollback, uninstall."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
LOCAL_VALUES = REPO / "ci" / "local-cluster-values.yaml"


def helm(cluster: LocalCluster, *args: str, timeout: float = 600) -> str:
    return run(["helm", *args], env=cluster.env, timeout=timeout).stdout


def secret_data(cluster: LocalCluster, ns: str, name: str) -> dict[str, str]:
    return json.loads(cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json"))["data"]


def test_install_test_upgrade_rollback_uninstall(cluster: LocalCluster) -> None:
    ns = f"qhub-life-{uuid.uuid4().hex[:6]}"
    release = "qhub"
    chart = str(REPO / "charts" / "qhub")
    base = ["--namespace", ns, "-f", str(LOCAL_VALUES)]

    helm(cluster, "install", release, chart, *base, "--create-namespace", "--wait", "--timeout", "5m")
    status = json.loads(helm(cluster, "status", release, "-n", ns, "-o", "json"))
    assert status["info"]["status"] == "deployed" and status["version"] == 1

    deployments = json.loads(cluster.kubectl("get", "deploy", "-n", ns, "-o", "json"))["items"]
    assert deployments, "the chart installs workloads"
    for d in deployments:
        assert d["status"].get("readyReplicas", 0) == d["spec"]["replicas"], d["metadata"]["name"]
    claims = json.loads(cluster.kubectl("get", "pvc", "-n", ns, "-o", "json"))["items"]
    assert claims and all(c["status"]["phase"] == "Bound" for c in claims)

    tested = helm(cluster, "test", release, "-n", ns, "--timeout", "3m")
    assert "Phase:" in tested and "Failed" not in tested

    hub_secret = secret_data(cluster, ns, f"{release}-hub")
    cookie = base64.b64decode(hub_secret["cookie-secret"]).decode()
    assert len(bytes.fromhex(cookie)) == 32, "JupyterHub wants 32 bytes, hex-encoded"
    helm(cluster, "upgrade", release, chart, *base, "--set", "jupyterhub.cull.timeout=7200",
         "--wait", "--timeout", "5m")
    assert json.loads(helm(cluster, "status", release, "-n", ns, "-o", "json"))["version"] == 2
    after_upgrade = secret_data(cluster, ns, f"{release}-hub")
    for key in ("proxy-token", "cookie-secret", "token-dask-gateway"):
        assert after_upgrade[key] == hub_secret[key], f"generated {key} changed on upgrade"
    claims_after = {c["metadata"]["uid"] for c in json.loads(
        cluster.kubectl("get", "pvc", "-n", ns, "-o", "json"))["items"]}
    assert {c["metadata"]["uid"] for c in claims} <= claims_after, "upgrade kept every volume claim"

    helm(cluster, "rollback", release, "1", "-n", ns, "--wait", "--timeout", "5m")
    history = json.loads(helm(cluster, "history", release, "-n", ns, "-o", "json"))
    assert [h["revision"] for h in history] == [1, 2, 3] and history[-1]["status"] == "deployed"
    assert secret_data(cluster, ns, f"{release}-hub")["cookie-secret"] == hub_secret["cookie-secret"]

    helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
    left = run(["helm", "status", release, "-n", ns], env=cluster.env, check=False)
    assert left.returncode != 0
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
