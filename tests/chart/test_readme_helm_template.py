"""README's `helm template` of the defaults works as written, with no cluster to ask (issue 14: the chart renders
where users render it), and the value README names for a fixed NFS address renders the volume itself instead of the
volume Job (issue 15, item 16: the docs and the chart agree on what rendering without a cluster gives)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from qhubctl.proc import run

pytestmark = pytest.mark.chart
REPO = Path(__file__).resolve().parents[2]


def _readme_command() -> list[str]:
    found = re.findall(r"^helm template .*$", (REPO / "README.md").read_text(), re.M)
    assert len(found) == 1, "README shows one `helm template` command"
    return shlex.split(found[0])


def _no_cluster(tool_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**tool_env, "KUBECONFIG": str(tmp_path / "none"), "KUBERNETES_SERVICE_HOST": "",
            "KUBERNETES_SERVICE_PORT": ""}


def test_readme_helm_template_renders_the_defaults(tool_env: dict[str, str], tmp_path: Path) -> None:
    command = _readme_command()
    assert "--set" not in command and "-f" not in command, "the defaults, as they are"
    rendered = run(command, cwd=REPO, env=_no_cluster(tool_env, tmp_path), check=False, timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: StatefulSet" in rendered.stdout and "name: qhub-hub" in rendered.stdout
    assert "kind: Job" in rendered.stdout and "kind: PersistentVolume\n" not in rendered.stdout


def test_the_value_readme_names_fixes_the_address(tool_env: dict[str, str], tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    value = "nfs.service.clusterIP"
    assert f"set `{value}`" in readme
    command = [*_readme_command(), "--set", f"{value}=10.96.0.50"]
    rendered = run(command, cwd=REPO, env=_no_cluster(tool_env, tmp_path), check=False, timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: PersistentVolume\n" in rendered.stdout and "server: 10.96.0.50" in rendered.stdout
    assert "nfs_volume.py" not in rendered.stdout, "no volume Job"
