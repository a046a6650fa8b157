"""`qhubctl check`'s storage part against the local cluster's API server, whose real node's local-path class is its
one default: the config `qhubctl init local` writes passes it (and the check goes on to the network part), a
config naming a class the cluster lacks fails it with exit 1, naming the field, before anything else runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import kube
from qhubctl.cli import app
from qhubctl.config import parse_config
from qhubctl.localcluster import LocalCluster
from qhubctl.scaffold import config_text
from qhubctl.storagecheck import run_check

pytestmark = pytest.mark.cluster


def local_config(**storage: str) -> dict:
    raw = yaml.safe_load(config_text("local"))
    raw.update(namespace="storage-check-absent", release_name="absent")
    raw["storage"].update(storage)
    return dict(raw)


def check(cluster: LocalCluster, raw: dict, tmp_path: Path) -> tuple[int, str]:
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["check", "-c", str(config), "--kubeconfig", str(cluster.kubeconfig)],
                                catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_the_local_clusters_default_class_passes(cluster: LocalCluster, tmp_path: Path) -> None:
    verdict = run_check(kube.api_client(cluster.kubeconfig), parse_config(local_config(), environ={}))
    assert verdict.ok
    assert verdict.lines == (
        "storage.storage_class local-path (the shared volume): found (provisioner qhub.dev/local-path)",
        "the cluster's default class (the hub database, conda-store's databases): local-path "
        "(provisioner qhub.dev/local-path)")
    # the command prints the storage part, then goes on to the network part (no release here: it stops there)
    code, out = check(cluster, local_config(), tmp_path)
    assert "storage classes: every volume claim of the deployment has its class" in out
    assert code == 1 and "release absent in storage-check-absent has no NetworkPolicy absent-singleuser" in out, out


def test_a_class_the_cluster_lacks_fails_with_exit_1(cluster: LocalCluster, tmp_path: Path) -> None:
    code, out = check(cluster, local_config(storage_class="efs-sc"), tmp_path)
    assert code == 1, out
    assert "storage.storage_class names StorageClass efs-sc, which the cluster does not have" in out
    assert "set storage.storage_class to one the cluster has (local-path, standard)" in out
    assert "NetworkPolicy" not in out, "the network part does not run"
