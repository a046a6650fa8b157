"""Umbrella-wide chart gates over the values matrix ci/values/*-values.yaml: helm lint --strict, ct lint, every
rendered manifest valid (kubernetes-validate --strict) on the three Kubernetes versions of ci/versions.env,
Pod Security "restricted" for every pod but the NFS server, and schemas that name a mistyped key."""

from __future__ import annotations

import os
import shlex
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from qhubctl.errors import CommandError
from qhubctl.proc import run, tool_path

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
MATRIX = sorted((REPO / "ci" / "values").glob("*-values.yaml"))
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
# The one pod allowed outside Pod Security "restricted" (documented in charts/nfs/values.yaml).
PRIVILEGED_OK = {("StatefulSet", "nfs")}


def kube_versions() -> list[str]:
    for line in (REPO / "ci" / "versions.env").read_text().splitlines():
        if line.startswith("VALIDATE_KUBE_VERSIONS="):
            return shlex.split(line.split("=", 1)[1])[0].split()
    raise AssertionError("VALIDATE_KUBE_VERSIONS is not set in ci/versions.env")


@cache
def render(values: Path) -> tuple[dict[str, Any], ...]:
    out = run(["helm", "template", "qhub", str(CHART), "--namespace", "qhub", "-f", str(values)], timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


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
        errors = []
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.message}")
        assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.name)
def test_every_pod_is_restricted_and_bounded(values: Path) -> None:
    problems = []
    for doc in render(values):
        if doc["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(doc)
        who = f"{doc['kind']}/{doc['metadata']['name']}"
        containers = spec.get("initContainers", []) + spec["containers"]
        for c in containers:
            res = c.get("resources", {})
            if not (res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
                    and res.get("limits", {}).get("cpu") and res.get("limits", {}).get("memory")):
                problems.append(f"{who}/{c['name']}: requests and limits of cpu and memory")
        if (doc["kind"], doc["metadata"]["labels"].get("app.kubernetes.io/name")) in PRIVILEGED_OK:
            continue
        psc = spec.get("securityContext", {})
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{who}: host namespaces")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{who}: seccompProfile RuntimeDefault")
        for c in containers:
            sc = c.get("securityContext", {})
            if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")) or sc.get("runAsUser") == 0:
                problems.append(f"{who}/{c['name']}: runAsNonRoot")
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                problems.append(f"{who}/{c['name']}: allowPrivilegeEscalation false")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                problems.append(f"{who}/{c['name']}: drop ALL capabilities")
    assert not problems, "\n".join(problems)


def test_ct_lint_is_clean(tmp_path: Path) -> None:
    ct_dir = Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub")) / "ct"
    lock = CHART / "Chart.lock"
    had_lock = lock.exists()
    try:
        out = run(
            ["ct", "lint", "--config", str(REPO / "ci" / "ct.yaml"), "--charts", "charts/qhub",
             "--validate-maintainers=false", "--check-version-increment=false",
             "--lint-conf", str(ct_dir / "lintconf.yaml"), "--chart-yaml-schema", str(ct_dir / "chart_schema.yaml")],
            # ct runs yamllint and yamale, installed next to this Python.
            cwd=REPO, timeout=300, env={"PATH": os.pathsep.join([tool_path(), str(Path(sys.executable).parent)])},
        )
    finally:
        if not had_lock:
            lock.unlink(missing_ok=True)  # `helm dependency build` inside ct writes it; the chart keeps none
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
