"""The chart's naming convention, for the umbrella and every subchart alike: one Kubernetes object per template
file, in a folder per component, the file named after the object's kind in lower case (short names pvc, pv) with
an optional -<qualifier>; named templates live in templates/_helpers.tpl (other partials start with `_` too) and
carry the chart's name as prefix (qhub.* in the umbrella, conda-store.* in conda-store...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CHART = Path(__file__).resolve().parents[2] / "charts" / "qhub"
ADDONS = CHART.parent / "qhub-cluster-addons"
CHARTS = [CHART, *sorted(p for p in (CHART / "charts").iterdir() if (p / "Chart.yaml").exists()), ADDONS]
SHORT = {"persistentvolumeclaim": "pvc", "persistentvolume": "pv"}
KIND = re.compile(r"^kind: *(\w+)", re.M)
DEFINE = re.compile(r'define "([^"]+)"')

pytestmark = pytest.mark.unit


def chart_name(chart: Path) -> str:
    return re.search(r"^name: *(\S+)", (chart / "Chart.yaml").read_text(), re.M).group(1)


def templates(chart: Path, pattern: str) -> list[Path]:
    """Files of this chart's templates/ (not of its subcharts)."""
    return sorted((chart / "templates").rglob(pattern))


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_one_object_per_file_named_after_its_kind(chart: Path) -> None:
    wrong = []
    for path in templates(chart, "*.yaml"):
        # helm test pods come whole from one helper (qhub.testProbePod)
        kinds = KIND.findall(path.read_text()) or (["Pod"] if "qhub.testProbePod" in path.read_text() else [])
        name = SHORT.get(kinds[0].lower(), kinds[0].lower()) if len(kinds) == 1 else None
        if not name or not (path.stem == name or path.stem.startswith(name + "-")):
            wrong.append(f"{path.relative_to(CHART.parent)}: {kinds}")
    assert not wrong, f"one object per file, named <kind>[-<qualifier>].yaml: {wrong}"


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_named_templates_carry_the_charts_name(chart: Path) -> None:
    assert (chart / "templates" / "_helpers.tpl").exists(), f"{chart.name}: templates/_helpers.tpl"
    prefix = chart_name(chart) + "."
    defines = [(p.name, d) for p in templates(chart, "_*.tpl") for d in DEFINE.findall(p.read_text())]
    assert defines, f"{chart.name} defines named templates"
    assert [d for d in defines if not d[1].startswith(prefix)] == [], f"prefix every define with {prefix}"
