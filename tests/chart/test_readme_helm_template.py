"""README's `helm template` of the defaults works as written, and without the value it names the chart stops with a
message naming that value (issue 15, item 16: the docs and the chart agree on what rendering without a cluster
needs)."""

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


def test_readme_helm_template_renders_the_defaults(tool_env: dict[str, str]) -> None:
    command = _readme_command()
    rendered = run(command, cwd=REPO, env=tool_env, check=False, timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: StatefulSet" in rendered.stdout and "name: qhub-hub" in rendered.stdout


def test_helm_template_without_the_value_names_it(tool_env: dict[str, str]) -> None:
    command = _readme_command()
    i = command.index("--set")
    value = command[i + 1].split("=", 1)[0]
    failed = run(command[:i] + command[i + 2:], cwd=REPO, env=tool_env, check=False, timeout=300)
    assert failed.returncode != 0 and value in failed.stderr, failed.stderr
