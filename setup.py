"""Build hook: the wheel carries the Helm chart as package data (qhubctl/charts/qhub), copied from the one copy in
git, charts/qhub, at build time. Everything else about the package is in pyproject.toml. The sdist carries
charts/qhub (MANIFEST.in), so a wheel built from it has the chart too. Editable installs copy nothing: qhubctl then
finds the checkout's chart (qhubctl/chart.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CHARTS = Path(__file__).resolve().parent / "charts"
CHART = CHARTS / "qhub"
# the cluster add-on chart travels the same way (qhubctl/charts/qhub-cluster-addons)
ADDONS = CHARTS / "qhub-cluster-addons"


class BuildPyWithChart(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        if not (CHART / "Chart.yaml").is_file():
            raise SystemExit(f"qhubctl's build needs the chart at {CHART} (a checkout or an sdist of QHub)")
        for chart in (CHART, ADDONS):
            target = Path(self.build_lib) / "qhubctl" / "charts" / chart.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(chart, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tgz", ".*.swp"))


setup(cmdclass={"build_py": BuildPyWithChart})
