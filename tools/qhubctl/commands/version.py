"""version: qhubctl's version and the chart's (version, app version and where it was found)."""

from __future__ import annotations

from qhubctl import __version__
from qhubctl.chart import locate
from qhubctl.commands._common import handles_errors, out


@handles_errors
def version() -> None:
    """Print qhubctl's version and the chart it deploys (version and where it comes from)."""
    out.print(f"qhubctl {__version__}", markup=False)
    chart = locate()
    out.print(f"chart {chart.path.name} {chart.version} (app {chart.app_version}): {chart.detail}", markup=False)
