"""Provider local: `cluster create` makes the simulated cluster with the config's node groups, `deploy` installs
the chart on it, `cluster plan` is then empty, and `cluster destroy` removes it (twice is fine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import localcluster
from qhubctl.cli import app

pytestmark = pytest.mark.cluster


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_create_deploy_plan_destroy(tmp_path: Path) -> None:
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "localprov",
                                      "cluster": {"provider": "local", "real_node": False},
                                      "node_groups": {"worker": {"max_nodes": 3}}}))
    kubeconfig = tmp_path / "kubeconfig"
    try:
        created = run("cluster", "create", "-c", str(config), "--yes", "--kubeconfig", str(kubeconfig))
        assert created.exit_code == 0, created.output
        assert "+ local-cluster qhub-localprov (general 1..1, user 0..5, worker 0..3)" in created.output
        cluster = localcluster.LocalCluster("qhub-localprov", kubeconfig, localcluster.cluster_dir("qhub-localprov"))
        # only general has a minimum; the other groups start empty. (Not "exactly one node": an autoscaler of a
        # just-deleted local cluster can outlive it and reach a new cluster that got the same port.)
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        assert {n["metadata"]["labels"]["qhub.dev/node-group"] for n in nodes} == {"general"}

        assert run("cluster", "plan", "-c", str(config)).exit_code == 0
        deployed = run("deploy", "-c", str(config), "--kubeconfig", str(kubeconfig), "--yes", "--timeout", "5m")
        assert deployed.exit_code == 0, deployed.output
        assert "deployed revision 1" in deployed.output
        pods = json.loads(cluster.kubectl("get", "pods", "-n", "qhub", "-o", "json"))["items"]
        assert pods and all(p["status"]["phase"] == "Running" for p in pods if "job-name" not in p["metadata"].get(
            "labels", {}))

        config.write_text(config.read_text().replace("max_nodes: 3", "max_nodes: 4"))
        changed = run("cluster", "plan", "-c", str(config))
        assert changed.exit_code == 2 and "max_nodes: 3 -> 4" in changed.output
    finally:
        destroyed = run("cluster", "destroy", "-c", str(config), "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert not localcluster.is_running("qhub-localprov")
    assert not localcluster.cluster_dir("qhub-localprov").exists() and "deleted" not in destroyed.output
    again = run("cluster", "destroy", "-c", str(config), "--yes")
    assert again.exit_code == 0 and "nothing to destroy" in again.output
