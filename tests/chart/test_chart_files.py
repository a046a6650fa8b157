"""The files qhubctl hashes to tell a chart change (qhubctl.helmignore.packaged_files) are exactly the files Helm puts
in the packaged chart, with stray Python caches and editor files in the folder."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from qhubctl.helmignore import packaged_files
from qhubctl.proc import run, which

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]


def test_packaged_files_match_helm_package(tmp_path: Path) -> None:
    chart = tmp_path / "src" / "qhub"
    shutil.copytree(REPO / "charts" / "qhub", chart, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cache = chart / "charts" / "dask-gateway" / "files" / "__pycache__"
    cache.mkdir()
    (cache / "dask_gateway_config.cpython-311.pyc").write_bytes(b"\x00")
    (chart / "values.yaml.orig").write_text("merge leftover")
    (chart / "templates" / ".hidden.yaml").write_text("kind: Nothing")
    out = tmp_path / "out"
    run([which("helm"), "package", str(chart), "--destination", str(out)], timeout=120)
    (archive,) = out.glob("qhub-*.tgz")
    with tarfile.open(archive) as tar:
        helm_files = {m.name.removeprefix("qhub/") for m in tar.getmembers() if m.isfile()}
    ours = {p.relative_to(chart).as_posix() for p in packaged_files(chart)}
    assert ours == helm_files, f"only qhubctl: {sorted(ours - helm_files)}; only helm: {sorted(helm_files - ours)}"
