"""The one module that talks to Helm, through pyhelm3 (Helm 4). pyhelm3 errors become QHub's HelmError."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyhelm3
import yaml
from pyhelm3 import errors as herr
from pyhelm3.models import Chart

from qhubctl.chart import chart_dir as located_chart
from qhubctl.helmignore import packaged_files
from qhubctl.errors import ClusterError, HelmError
from qhubctl.proc import which

T = TypeVar("T")


@dataclass(frozen=True)
class Deployed:
    """What the cluster runs now: release status, chart version and the values it was installed with."""

    revision: int
    status: str
    chart_version: str
    values: dict[str, Any]


def chart_digest(chart_dir: Path | None = None) -> str:
    """sha256 over the files Helm would package (paths and contents), so template edits count as changes and a stray
    __pycache__ or editor backup does not."""
    chart_dir = chart_dir or located_chart()
    digest = hashlib.sha256()
    for path in packaged_files(chart_dir):
        digest.update(str(path.relative_to(chart_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Helm:
    """Helm bound to one kubeconfig/context."""

    def __init__(self, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
                 chart_dir: Path | None = None) -> None:
        self.chart_dir = chart_dir = chart_dir or located_chart()
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
        # pyhelm3's two public layers share one Command: the Client parses Helm's answers into models, the Command
        # runs helm and returns its JSON as it is.
        self.command = pyhelm3.Command(
            executable=which("helm"), kubeconfig=Path(kubeconfig) if kubeconfig else None, kubecontext=context,
        )
        self.client = pyhelm3.Client(self.command)
        meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
        # Built from Chart.yaml directly: saves a `helm show chart` process per command.
        self.chart = Chart(self.command, ref=chart_dir, metadata=meta)

    @property
    def chart_version(self) -> str:
        return str(self.chart.metadata.version)

    async def render(self, release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Manifests of the chart with `values` (`helm template`, CRDs included)."""
        docs = await _call(self.client.template_resources(
            self.chart, release, values, namespace=namespace, include_crds=True))
        return [d for d in docs if d]

    async def deployed(self, release: str, namespace: str) -> Deployed | None:
        try:
            with _expected_failure("status"):  # no release yet is the normal first-deploy answer, not an alarm
                rev = await _call(self.client.get_current_revision(release, namespace=namespace))
        except HelmError as exc:
            if isinstance(exc.__cause__, herr.ReleaseNotFoundError):
                return None
            raise
        meta, values = await asyncio.gather(_call(rev.chart_metadata()), _call(rev.values()))  # two helm processes
        return Deployed(rev.revision, str(getattr(rev.status, "value", rev.status)), str(meta.version), values or {})

    async def upgrade(self, release: str, namespace: str, values: dict[str, Any], *, timeout: str = "10m",
                      dry_run: bool = False, description: str = "qhubctl deploy") -> int:
        """`helm upgrade --install --wait` (CRDs are skipped: qhubctl applies them server-side first)."""
        # pyhelm3's command layer: the client layer would parse every object of the returned manifest into models
        # (half a second on a big chart) only for qhubctl to read the revision number.
        release_json = await _call(self.command.install_or_upgrade(
            release, self.chart.ref, values, namespace=namespace, create_namespace=True, wait=not dry_run,
            timeout=timeout, skip_crds=True, dry_run=dry_run, description=description))
        return int(release_json["version"])

    async def uninstall(self, release: str, namespace: str, *, timeout: str = "5m") -> None:
        await _call(self.client.uninstall_release(release, namespace=namespace, wait=True, timeout=timeout))


class _DropFailed(logging.Filter):
    """Drops pyhelm3's "command failed: helm <verb> ..." warning for one verb whose failure qhubctl expects and
    handles itself (a failure it does not expect still becomes a HelmError with helm's stderr)."""

    def __init__(self, verb: str) -> None:
        super().__init__()
        self.verb = verb

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("command failed:") and f" {self.verb} " in text)


@contextlib.contextmanager
def _expected_failure(verb: str) -> Iterator[None]:
    logger = logging.getLogger("pyhelm3.command")
    quiet = _DropFailed(verb)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except herr.ConnectionError as exc:
        raise ClusterError(f"cannot reach the cluster: {_stderr(exc)}",
                           hint="check KUBECONFIG / the kube context and that the API server is up") from exc
    except herr.FailedToRenderChartError as exc:
        raise HelmError(f"the chart did not render: {_stderr(exc)}",
                        hint="`qhubctl render` shows the values; the message names the template") from exc
    except herr.ResourceAlreadyExistsError as exc:
        raise HelmError(f"an object the chart owns already exists: {_stderr(exc)}",
                        hint="delete it or adopt it, or deploy into another namespace") from exc
    except herr.Error as exc:
        raise HelmError(f"helm failed: {_stderr(exc)}") from exc


def _stderr(exc: herr.Error) -> str:
    text = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc)
    return "\n".join(text.strip().splitlines()[-15:])
