"""Where qhubctl's Helm chart comes from. The only module that knows; everything else asks `chart_dir()`.

In this order:
1. an explicit override: `QHUB_CHART` (or `qhubctl --chart`), a chart directory or a `helm package` archive (.tgz,
   unpacked once into $QHUB_CACHE/charts/<digest>/);
2. the chart packaged inside the installed qhubctl (`qhubctl/charts/qhub` in the wheel, copied there at build time
   by setup.py from the one copy in git, charts/qhub);
3. the source tree, when qhubctl runs from a checkout (`tools/qhubctl` next to `charts/qhub`).
None found is a ChartNotFoundError naming every place looked at, never a traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from qhubctl.errors import UserError

ENV = "QHUB_CHART"
CHART_NAME = "qhub"
_HERE = Path(__file__).resolve().parent
PACKAGED = _HERE / "charts" / CHART_NAME
CHECKOUT = _HERE.parents[1] / "charts" / CHART_NAME


class ChartNotFoundError(UserError):
    """No usable QHub chart: the override is wrong, or this qhubctl was installed without its chart."""


@dataclass(frozen=True)
class ChartSource:
    path: Path  # the chart directory (holds Chart.yaml)
    origin: str  # "override", "package" or "checkout"
    detail: str  # where it came from, for `qhubctl version`
    version: str
    app_version: str


def _read(path: Path, origin: str, detail: str) -> ChartSource:
    try:
        meta = yaml.safe_load((path / "Chart.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ChartNotFoundError(f"{detail}: cannot read Chart.yaml: {exc}",
                                 hint=f"point {ENV} at a directory holding the qhub chart's Chart.yaml") from None
    if not isinstance(meta, dict) or meta.get("name") != CHART_NAME:
        name = meta.get("name") if isinstance(meta, dict) else None
        raise ChartNotFoundError(f"{detail}: Chart.yaml names chart {name!r}, not {CHART_NAME!r}",
                                 hint=f"point {ENV} at the qhub chart")
    return ChartSource(path, origin, detail, str(meta.get("version", "")), str(meta.get("appVersion", "")))


def _cache_dir() -> Path:
    return Path(os.environ.get("QHUB_CACHE") or Path.home() / ".cache" / "qhub") / "charts"


def _unpack(archive: Path) -> Path:
    """The chart directory of a `helm package` archive, unpacked once per archive content."""
    try:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
        target = _cache_dir() / digest
        if not (target / CHART_NAME / "Chart.yaml").is_file():
            tmp = target.with_name(f"{digest}.{os.getpid()}.tmp")
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            if not (tmp / CHART_NAME / "Chart.yaml").is_file():
                raise ChartNotFoundError(f"{ENV}={archive}: the archive holds no {CHART_NAME}/Chart.yaml",
                                         hint="make it with `make package` (helm package charts/qhub)")
            shutil.rmtree(target, ignore_errors=True)  # a half-written unpack of an earlier run
            tmp.replace(target)
        return target / CHART_NAME
    except (OSError, tarfile.TarError) as exc:
        raise ChartNotFoundError(f"{ENV}={archive}: cannot unpack the chart archive: {exc}",
                                 hint="point it at a chart directory or a `helm package` .tgz") from None


@lru_cache(maxsize=8)
def _locate(override: str) -> ChartSource:
    if override:
        path = Path(override).expanduser()
        detail = f"{ENV}={override}"
        if path.is_dir():
            return _read(path.resolve(), "override", detail)
        if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
            unpacked = _unpack(path)
            return _read(unpacked, "override", f"{detail} (unpacked in {unpacked})")
        raise ChartNotFoundError(f"{detail}: no chart directory or .tgz archive there",
                                 hint=f"set {ENV} to the qhub chart's directory or a `helm package` archive, "
                                      "or unset it to use the chart that came with qhubctl")
    if (PACKAGED / "Chart.yaml").is_file():
        return _read(PACKAGED, "package", f"packaged with qhubctl ({PACKAGED})")
    if (CHECKOUT / "Chart.yaml").is_file():
        return _read(CHECKOUT, "checkout", f"source checkout ({CHECKOUT})")
    raise ChartNotFoundError(
        f"no QHub chart found: {ENV} is unset, this qhubctl carries no chart ({PACKAGED}) and it does not run from "
        f"a checkout ({CHECKOUT})",
        hint=f"reinstall qhubctl from a wheel or sdist built by `pip wheel`/`python -m build` (they carry the chart), "
             f"or set {ENV} to the qhub chart's directory or a `helm package` archive")


def locate(override: str | None = None) -> ChartSource:
    """The chart qhubctl deploys: `override`, else $QHUB_CHART, else the packaged chart, else the checkout's."""
    return _locate(override if override is not None else os.environ.get(ENV, ""))


def chart_dir() -> Path:
    return locate().path


# The cluster add-on chart (cluster-autoscaler, default StorageClass, NVIDIA device plugin; qhubctl.addons): packaged
# with qhubctl like the qhub chart, else the checkout's. It follows qhubctl's version; QHUB_CHART does not move it.
ADDONS_NAME = "qhub-cluster-addons"


def addons_chart_dir() -> Path:
    places = (_HERE / "charts" / ADDONS_NAME, _HERE.parents[1] / "charts" / ADDONS_NAME)
    for path in places:
        if (path / "Chart.yaml").is_file():
            return path
    raise ChartNotFoundError(f"no {ADDONS_NAME} chart found in {' or '.join(str(p) for p in places)}",
                             hint="reinstall qhubctl from a wheel or sdist (they carry the chart), or run it from a "
                                  "checkout of QHub")


