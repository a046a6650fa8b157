"""Rendering helpers for the chart tests of the conda-store, kubessh and jitsi subcharts."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from qhubctl.errors import CommandError
from qhubctl.proc import run

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
VALUES = REPO / "ci" / "values"
BASE = ["--set", "nfs.service.clusterIP=10.96.0.41"]
POD_KINDS = {"Deployment", "StatefulSet"}


@cache
def _render(files: tuple[str, ...], values_yaml: str) -> tuple[dict[str, Any], ...]:
    cmd = ["helm", "template", "qhub", str(CHART), "--namespace", "qhub", *BASE]
    for f in files:
        cmd += ["-f", f]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        extra.write(values_yaml)
        extra.flush()
        out = run([*cmd, "-f", extra.name], timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def render(*files: Path, values: dict | None = None) -> list[dict[str, Any]]:
    return list(_render(tuple(str(f) for f in files), yaml.safe_dump(values or {})))


def render_error(values: dict) -> str:
    """The error of a render that must fail (schema or required value)."""
    try:
        render(values=values)
    except CommandError as err:
        return str(err)
    raise AssertionError(f"rendering {values} should have failed")


def objects(docs: list[dict], chart: str) -> list[dict]:
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == chart]


def get(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"{kind}/{name} not rendered")


def has(docs: list[dict], kind: str, name: str) -> bool:
    return any(d["kind"] == kind and d["metadata"]["name"] == name for d in docs)


def pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def env(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def assert_hardened(docs: list[dict], token: frozenset[str] = frozenset()) -> None:
    """Every pod of these objects: non-root, seccomp, no token (but the workloads named in `token`, which talk to
    the API server), placed; every container: drop ALL, no escalation, read-only root, requests and limits."""
    pods = [d for d in docs if d["kind"] in POD_KINDS]
    assert pods
    for d in pods:
        spec, where = pod(d), f"{d['kind']}/{d['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is (d["metadata"]["name"] in token), where
        assert "qhub.dev/node-group" in spec["nodeSelector"] or spec["nodeSelector"], where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (where, part)
