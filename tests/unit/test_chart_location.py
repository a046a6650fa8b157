"""qhubctl.chart: where the chart comes from (override directory or archive, packaged, checkout) and the message
when there is none."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qhubctl import chart
from qhubctl.cli import app

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(chart.ENV, raising=False)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path / "cache"))
    chart._locate.cache_clear()


def test_checkout_chart_when_nothing_else() -> None:
    found = chart.locate()
    assert found.origin == "checkout" and found.path == REPO / "charts" / "qhub"
    assert found.version and found.detail.startswith("source checkout")


def test_override_directory_and_archive(tmp_path: Path) -> None:
    copy = tmp_path / "mine" / "qhub"
    shutil.copytree(REPO / "charts" / "qhub", copy)
    assert chart.locate(str(copy)).path == copy
    archive = tmp_path / "qhub-0.1.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(copy, arcname="qhub")
    found = chart.locate(str(archive))
    assert found.origin == "override" and (found.path / "charts" / "nfs" / "values.yaml").is_file()
    assert found.path.is_relative_to(tmp_path / "cache" / "charts")
    assert chart.locate(str(archive)).path == found.path  # unpacked once


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "absent", "no chart directory or .tgz archive there"),
    (lambda d: REPO / "charts" / "qhub" / "charts" / "nfs", "names chart 'nfs', not 'qhub'"),
])
def test_bad_override_is_a_message(tmp_path: Path, make: object, words: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(chart.ChartNotFoundError, match="QHUB_CHART") as err:
        chart.locate(str(path))
    assert words in str(err.value)


def test_no_chart_anywhere_names_every_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(chart, "PACKAGED", tmp_path / "site" / "qhubctl" / "charts" / "qhub")
    monkeypatch.setattr(chart, "CHECKOUT", tmp_path / "lib" / "charts" / "qhub")
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 1, result.output
    text = result.output
    assert "qhubctl 0." in text and "QHUB_CHART is unset" in text
    assert str(tmp_path / "site" / "qhubctl" / "charts" / "qhub") in text
    assert str(tmp_path / "lib" / "charts" / "qhub") in text and "Traceback" not in text
