"""`qhubctl check`'s storage decision: every class the deployment's claims name must exist; claims that name none
need exactly one default class (none, or two, fail); the failure names the config field or the provider's default
class and how to get it; a class marked default by the beta annotation counts, one marked "false" does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qhubctl.config import PROVIDERS, SCHEMA_VERSION, parse_config
from qhubctl.config.model import CLUSTER_BLOCKS
from qhubctl.storagecheck import Need, StorageClass, StorageClassError, decide, needs, run_check, storage_class

pytestmark = pytest.mark.unit
GP3 = StorageClass("gp3", "ebs.csi.aws.com", True)
GP2 = StorageClass("gp2", "kubernetes.io/aws-ebs", False)
EFS = StorageClass("efs-sc", "efs.csi.aws.com", False)


def cfg(storage: dict[str, Any], provider: str = "aws") -> Any:
    cluster = {"provider": provider, **({"project": "p-1"} if provider == "gcp" else {})}
    return parse_config({"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": cluster,
                         "storage": storage}, environ={})


def test_nfs_without_a_class_needs_the_default() -> None:
    assert needs(cfg({"type": "nfs"})) == [
        Need("storage.disk_storage_class", "", "the hub database, conda-store's databases and the NFS server's disk")]
    assert needs(cfg({"type": "nfs", "disk_storage_class": "fast"}))[0].name == "fast"


def test_existing_storage_needs_its_class_and_the_default() -> None:
    found = needs(cfg({"type": "existing", "storage_class": "efs-sc"}))
    assert [(n.field, n.name) for n in found] == [("storage.storage_class", "efs-sc"), ("", "")]


def test_one_default_and_every_named_class_pass() -> None:
    verdict = decide(needs(cfg({"type": "existing", "storage_class": "efs-sc"})), [GP2, GP3, EFS], "aws")
    assert verdict.ok, verdict
    assert verdict.lines == ("storage.storage_class efs-sc (the shared volume): found (provisioner efs.csi.aws.com)",
                             "the cluster's default class (the hub database, conda-store's databases): gp3 "
                             "(provisioner ebs.csi.aws.com)")


def test_no_default_fails_naming_the_providers_class_and_fix() -> None:
    verdict = decide(needs(cfg({"type": "nfs"})), [GP2], "aws")
    assert not verdict.ok
    assert verdict.summary == "volume claims would never bind: the cluster has no default StorageClass"
    assert "storage.disk_storage_class not set): none" in verdict.lines[0]
    assert verdict.fix.startswith("provider aws (gp3, the encrypted EBS class of the qhub-cluster-addons release")
    assert "`qhubctl cluster create` installs the EBS CSI driver and the gp3 class" in verdict.fix


def test_two_defaults_fail() -> None:
    verdict = decide(needs(cfg({"type": "nfs"})), [GP3, StorageClass("gp2", "kubernetes.io/aws-ebs", True)], "aws")
    assert not verdict.ok
    assert "the cluster has 2 default StorageClasses (gp2, gp3); exactly one must be marked default" in verdict.summary
    assert "storageclass gp2 storageclass.kubernetes.io/is-default-class-" in verdict.fix


def test_a_named_class_the_cluster_lacks_fails_naming_the_field() -> None:
    verdict = decide(needs(cfg({"type": "nfs", "disk_storage_class": "fast"})), [GP3, GP2], "aws")
    assert not verdict.ok
    assert "storage.disk_storage_class names StorageClass fast, which the cluster does not have" in verdict.summary
    assert verdict.fix == "create StorageClass fast or set storage.disk_storage_class to one the cluster has (gp2, gp3)"
    # a named class needs no default: the cluster's default is not consulted
    assert decide(needs(cfg({"type": "nfs", "disk_storage_class": "gp2"})), [GP2], "aws").ok


def test_every_provider_names_its_default_class_and_fix() -> None:
    for name in PROVIDERS:
        block = CLUSTER_BLOCKS[name]
        assert block.default_storage_class and block.default_storage_class_fix, name
        verdict = decide([Need("", "", "claims")], [], name)
        assert verdict.fix == f"provider {name} ({block.default_storage_class}): {block.default_storage_class_fix}"


@pytest.mark.parametrize(("annotations", "default"), [
    ({"storageclass.kubernetes.io/is-default-class": "true"}, True),
    ({"storageclass.beta.kubernetes.io/is-default-class": "true"}, True),
    ({"storageclass.kubernetes.io/is-default-class": "false"}, False),
    ({}, False),
])
def test_the_default_annotation(annotations: dict[str, str], default: bool) -> None:
    obj = {"metadata": {"name": "x", "annotations": annotations}, "provisioner": "p"}
    assert storage_class(obj) == StorageClass("x", "p", default)


def test_run_check_raises_a_user_error_with_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [{"metadata": {"name": "gp2"}, "provisioner": "kubernetes.io/aws-ebs"}]
    monkeypatch.setattr("qhubctl.kube._items", lambda api, path, **q: listed)
    with pytest.raises(StorageClassError) as caught:
        run_check(object(), cfg({"type": "nfs"}))
    assert caught.value.exit_code == 1
    assert caught.value.problems == ["the cluster's default class (the hub database, conda-store's databases and the "
                                     "NFS server's disk, storage.disk_storage_class not set): none"]
    assert caught.value.hint.endswith("(docs/providers.md, Cluster add-ons)")


def test_check_stops_at_storage_with_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The command: a missing class is exit 1 with the field and fix, and the network check does not start."""
    from qhubctl.cli import app

    config = tmp_path / "qhub-config.yaml"
    config.write_text(f"schema_version: {SCHEMA_VERSION}\nproject_name: demo\ncluster: {{provider: existing}}\n"
                      "storage: {type: existing, storage_class: efs-sc}\n")
    monkeypatch.setattr("qhubctl.commands.check.kube_target", lambda cfg, kubeconfig: ("kubeconfig", None))
    monkeypatch.setattr("qhubctl.kube.api_client", lambda path, context: object())
    monkeypatch.setattr("qhubctl.kube._items", lambda api, path, **q: [
        {"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "p"}])
    monkeypatch.setattr("qhubctl.netcheck.run_check", lambda *a, **k: pytest.fail("the network check ran"))
    result = CliRunner().invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 1, result.output
    assert "storage.storage_class names StorageClass efs-sc, which the cluster does not have" in result.output
    assert "create StorageClass efs-sc or set storage.storage_class to one the cluster has (standard)" in result.output
    assert "Traceback" not in result.output


def test_docs_name_each_providers_default_class() -> None:
    """docs/providers.md's storage table has one row per provider naming the class the provider's facts name."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    section = docs.split("### Storage classes: checked by `qhubctl check`")[1].split("\n#")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    for name in PROVIDERS:
        first = CLUSTER_BLOCKS[name].default_storage_class.split(",")[0].split(" ")[0]
        cell = rows[name].split("|")[2]
        assert (f"`{first}`" if name != "existing" else "the cluster's own") in cell, (name, cell)
