"""qhubctl's chart digest (what tells `deploy` the chart changed): template edits count, what Python or an editor
leaves in the chart folder does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qhubctl.helmignore import packaged_files
from qhubctl.helm import chart_digest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def chart(tmp_path: Path) -> Path:
    copy = tmp_path / "qhub"
    shutil.copytree(REPO / "charts" / "qhub", copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def test_stray_files_do_not_change_the_digest(chart: Path) -> None:
    before = chart_digest(chart)
    cache = chart / "charts" / "dask-gateway" / "files" / "__pycache__"
    cache.mkdir()
    (cache / "dask_gateway_config.cpython-311.pyc").write_bytes(b"\x00compiled")
    (chart / "values.yaml~").write_text("editor backup")
    (chart / "templates" / ".ingress.yaml.swp").write_text("swap")
    assert chart_digest(chart) == before
    assert not [p for p in packaged_files(chart) if "__pycache__" in p.parts or p.name.endswith(("~", ".swp"))]


def test_template_edit_changes_the_digest(chart: Path) -> None:
    before = chart_digest(chart)
    ingress = chart / "templates" / "ingress.yaml"
    ingress.write_text(ingress.read_text() + "\n# edited\n")
    assert chart_digest(chart) != before


def test_negated_rule_includes_again(chart: Path) -> None:
    (chart / ".helmignore").write_text("*.tmp\n!keep.tmp\n")
    (chart / "files-a.tmp").write_text("x")
    (chart / "keep.tmp").write_text("x")
    names = {p.name for p in packaged_files(chart)}
    assert "keep.tmp" in names and "files-a.tmp" not in names
