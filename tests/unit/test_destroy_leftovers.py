"""`qhubctl cluster destroy` (local) and `cost --simulate` say once what they removed and leave nothing behind
(issue 15, item 13). kwokctl is a stand-in script here: no cluster starts, and $QHUB_CACHE is a temporary folder,
so the shared local clusters are never touched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import localcluster
from qhubctl.cli import app
from qhubctl.config import load_config
from qhubctl.cost.simulate import Load, simulate
from qhubctl.errors import QHubError

pytestmark = pytest.mark.unit

# `get kubeconfig` fails (the cluster is not running); `delete cluster` removes kwokctl's folder, as kwokctl does
FAKE_KWOKCTL = """#!/bin/sh
name=$2
case "$3 $4" in
  "delete cluster") rm -rf "$KWOK_WORKDIR/clusters/$name"; echo "$name" >> "$KWOK_WORKDIR/deleted";;
  *) exit 1;;
esac
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    for tool in localcluster.KUBE_TOOLS:
        (cache / "bin" / tool).write_text("#!/bin/sh\nexit 1\n")
    (cache / "bin" / "kwokctl").write_text(FAKE_KWOKCTL)
    for tool in (cache / "bin").iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("QHUB_CACHE", str(cache))
    monkeypatch.setenv("PATH", f"{cache / 'bin'}:/usr/bin:/bin")
    return cache


def _stopped_cluster(name: str) -> None:
    """What a stopped local cluster leaves: kwokctl's folder and $QHUB_CACHE/clusters/<name>."""
    (localcluster.kwok_dir(name) / "pki").mkdir(parents=True)
    work = localcluster.cluster_dir(name)
    work.mkdir(parents=True)
    for file in ("kubeconfig", "nodegroups.json", "autoscaler.log", "kwokctl.yaml"):
        (work / file).write_text("{}")


def test_local_destroy_says_once_what_it_removed_and_leaves_nothing(cache: Path, tmp_path: Path) -> None:
    name = "qhub-throwaway"
    _stopped_cluster(name)
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "throwaway",
                                      "cluster": {"provider": "local", "real_node": False}}))
    kubeconfig = tmp_path / "throwaway.kubeconfig"  # as `cluster create` wrote it
    kubeconfig.write_text(yaml.safe_dump({"clusters": [{"name": f"kwok-{name}", "cluster": {}}]}))
    other = tmp_path / "other.kubeconfig"
    other.write_text(kubeconfig.read_text())

    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config), "--yes"])
    assert res.exit_code == 0, res.output
    assert (cache / "kwok" / "deleted").read_text().split() == [name]
    assert not localcluster.kwok_dir(name).exists() and not localcluster.cluster_dir(name).exists()
    assert not kubeconfig.exists() and other.exists()
    text = " ".join(res.output.split())
    assert "deleted" not in text and text.count("destroyed") == 1, res.output
    assert (f"cluster {name} destroyed; removed local-cluster {name}, local-files {localcluster.cluster_dir(name)}, "
            f"kubeconfig {kubeconfig}") in text, res.output

    again = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config), "--yes"])
    assert again.exit_code == 0 and "nothing to destroy" in again.output, again.output


def test_destroy_keeps_a_kubeconfig_of_another_cluster(cache: Path, tmp_path: Path) -> None:
    """A file of the user's that happens to have the name, for another cluster, stays."""
    localcluster.cluster_dir("qhub-throwaway").mkdir(parents=True)  # leftovers only: the folder
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "throwaway",
                                      "cluster": {"provider": "local"}}))
    mine = tmp_path / "throwaway.kubeconfig"
    mine.write_text(yaml.safe_dump({"clusters": [{"name": "production", "cluster": {}}]}))
    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config), "--yes"])
    assert res.exit_code == 0, res.output
    assert "removed local-files" in res.output and "kubeconfig" not in res.output.split("removed")[-1]
    assert mine.exists() and not localcluster.cluster_dir("qhub-throwaway").exists()


def test_simulation_removes_its_cluster_even_when_it_fails(cache: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "throwaway", "cluster": {
        "provider": "local"}}))
    name = "qhub-throwaway-sim"

    def half_started(*_args: object, **_kwargs: object) -> None:
        _stopped_cluster(name)
        raise QHubError("the control plane did not come up")

    monkeypatch.setattr(localcluster, "up", half_started)
    with pytest.raises(QHubError, match="did not come up"):
        simulate(load_config(config), Load(users=1), seconds_per_hour=2, log=lambda _: None)
    assert not localcluster.cluster_dir(name).exists() and not localcluster.kwok_dir(name).exists()


def test_cluster_down_reports_what_it_removed(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _stopped_cluster("qhub-throwaway")
    assert localcluster.main(["down", "--name", "qhub-throwaway"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"cluster qhub-throwaway deleted; removed {localcluster.kwok_dir('qhub-throwaway')}, "
                           f"{localcluster.cluster_dir('qhub-throwaway')}")
    assert localcluster.main(["down", "--name", "qhub-throwaway"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_a_long_destroy_is_summarised_by_kind() -> None:
    from qhubctl.commands.cluster import _removed
    from qhubctl.providers.base import Action, Plan

    short = Plan("local", "qhub-x", [Action("delete", "local-cluster", "qhub-x")])
    assert _removed(short) == ["local-cluster qhub-x"]
    cloud = Plan("aws", "demo", [Action("delete", "nodegroup", n) for n in ("general", "user", "worker")]
                 + [Action("delete", "eks-cluster", "demo"), Action("delete", "vpc", "vpc-1")])
    assert _removed(cloud) == ["3 nodegroup", "1 eks-cluster", "1 vpc"]
