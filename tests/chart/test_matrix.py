"""Umbrella-wide chart gates over the values matrix ci/values/*-values.yaml: helm lint --strict, ct lint, every
rendered manifest valid (kubernetes-validate --strict) on the three Kubernetes versions of ci/versions.env,
Pod Security "restricted" for every pod but the NFS server, and schemas that name a mistyped key."""

from __future__ import annotations

import os
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl.errors import CommandError
from qhubctl.proc import run, tool_path

from .manifests import kube_versions, pod_problems, validation_errors

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
MATRIX = sorted((REPO / "ci" / "values").glob("*-values.yaml"))


@cache
def render(values: Path) -> tuple[dict[str, Any], ...]:
    out = run(["helm", "template", "qhub", str(CHART), "--namespace", "qhub", "-f", str(values)], timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def test_matrix_has_the_scenarios() -> None:
    names = {p.name.removesuffix("-values.yaml") for p in MATRIX}
    assert {"defaults", "non-default", "no-domain", "external-db", "existing-rwx", "gpu-off"} <= names


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.name)
def test_helm_lint_strict(values: Path) -> None:
    out = run(["helm", "lint", "--strict", str(CHART), "-f", str(values)], timeout=120)
    assert "0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.name)
def test_rendered_manifests_are_valid_on_every_pinned_kubernetes(values: Path) -> None:
    docs = render(values)
    assert docs, "nothing rendered"
    for version in kube_versions():
        errors = validation_errors(docs, version)
        assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.name)
def test_every_pod_is_restricted_and_bounded(values: Path) -> None:
    problems = pod_problems(render(values))
    assert not problems, "\n".join(problems)


def test_ct_lint_is_clean(tmp_path: Path) -> None:
    """ct lint of a copy of the chart: `helm dependency build` inside ct writes Chart.lock into the chart it lints,
    which must not change the chart other sessions deploy meanwhile (qhubctl's chart digest would see it)."""
    ct_dir = Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub")) / "ct"
    shutil.copytree(CHART, tmp_path / "charts" / "qhub")
    (tmp_path / "ci").mkdir()
    shutil.copy2(REPO / "ci" / "ct.yaml", tmp_path / "ci" / "ct.yaml")
    out = run(
        ["ct", "lint", "--config", "ci/ct.yaml", "--charts", "charts/qhub",
         "--validate-maintainers=false", "--check-version-increment=false",
         "--lint-conf", str(ct_dir / "lintconf.yaml"), "--chart-yaml-schema", str(ct_dir / "chart_schema.yaml")],
        # ct runs yamllint and yamale, installed next to this Python.
        cwd=tmp_path, timeout=300, env={"PATH": os.pathsep.join([tool_path(), str(Path(sys.executable).parent)])},
    )
    assert "All charts linted successfully" in out.stdout, out.stdout + out.stderr


def subcharts() -> list[str]:
    return [d["name"] for d in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]]


@pytest.mark.parametrize("where", ["", *subcharts()])
def test_schema_rejects_a_typo_and_names_it(where: str) -> None:
    key = f"{where}.replicaz" if where else "replicaz"
    args = ["--set", f"{key}=1"]
    if where:  # a disabled subchart's schema is not checked: switch it (and its hub service) on
        args += ["--set", f"{where}.enabled=true", "--set", f"jupyterhub.hub.services.{where}.enabled=true"]
    with pytest.raises(CommandError) as err:
        run(["helm", "template", "qhub", str(CHART), "-f", str(MATRIX[0]), *args], timeout=120)
    message = str(err.value)
    assert "replicaz" in message and "additional properties" in message.lower(), message
    if where:
        assert where in message, message
