"""Build hook: the wheel carries the Helm chart as package data (qhubctl/charts/qhub), copied from the one copy in
git, charts/qhub, at build time. Everything else about the package is in pyproject.toml. The sdist carries
charts/qhub (MANIFEST.in), so a wheel built from it has the chart too. Editable installs copy nothing: qhubctl then
finds the checkout's chart (qhubctl/chart.py). The files copied are the ones Helm would package, by the chart's
.helmignore (qhubctl/helmignore.py, loaded by its path: the build cannot import qhubctl's dependencies)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CHARTS = Path(__file__).resolve().parent / "charts"
CHART = CHARTS / "qhub"
# the cluster add-on chart travels the same way (qhubctl/charts/qhub-cluster-addons)
ADDONS = CHARTS / "qhub-cluster-addons"
HELMIGNORE = Path(__file__).resolve().parent / "tools" / "qhubctl" / "helmignore.py"


def _packaged_files(chart: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location("qhub_build_helmignore", HELMIGNORE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"qhubctl's build needs {HELMIGNORE} (a checkout or an sdist of QHub)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.packaged_files(chart))


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
            for path in _packaged_files(chart):
                (target / path.relative_to(chart)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(chart))


setup(cmdclass={"build_py": BuildPyWithChart})
