"""The release workflow (.github/workflows/release.yaml): a valid GitHub Actions workflow (the schema
check-jsonschema vendors), triggered by version tags, whose build steps are make targets of this Makefile - the
ones the tests and the demo run - and whose registry comes from the repository's settings, never from the file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl.proc import run

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yaml"
CHECK_JSONSCHEMA = REPO / ".venv" / "bin" / "check-jsonschema"


def workflow() -> dict[Any, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on"
    data = yaml.safe_load(WORKFLOW.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}


def steps() -> list[dict[str, Any]]:
    return [s for job in workflow()["jobs"].values() for s in job["steps"]]


def validate(path: Path) -> tuple[bool, str]:
    if not CHECK_JSONSCHEMA.exists():
        pytest.fail(f"{CHECK_JSONSCHEMA} not found: install the test extras (make setup)", pytrace=False)
    result = run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)], check=False,
                 timeout=120)
    return result.ok, result.stdout + result.stderr


def make_targets() -> set[str]:
    """Every rule target of the Makefile (`name: prerequisites`, not `NAME := value`)."""
    return set(re.findall(r"^([A-Za-z][A-Za-z0-9_.-]*):(?!=)", (REPO / "Makefile").read_text(), re.M))


def make_calls() -> list[list[str]]:
    """The targets of every `make ...` command in the workflow's run steps (variable assignments left out)."""
    calls = []
    for step in steps():
        script = str(step.get("run", "")).replace("\\\n", " ")
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for word in [*lexer, ";"]:
                if word in (";", "&&", "||", "|", "&"):  # one command ends here
                    if command[:1] == ["make"]:
                        calls.append([w for w in command[1:] if "=" not in w and not w.startswith("-")])
                    command = []
                else:
                    command.append(word)
    return calls


def test_the_workflow_is_valid_against_githubs_workflow_schema(tmp_path: Path) -> None:
    ok, out = validate(WORKFLOW)
    assert ok, out
    # the check can fail: a job without runs-on is refused
    broken = workflow()
    del broken["jobs"]["release"]["runs-on"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    ok, out = validate(tmp_path / "broken.yaml")
    assert not ok and "runs-on" in out, out


def test_it_runs_on_version_tags_only() -> None:
    assert workflow()["on"] == {"push": {"tags": ["v*"]}}
    assert workflow()["permissions"] == {"contents": "read"}


def test_its_build_steps_are_make_targets_of_the_makefile() -> None:
    calls = make_calls()
    targets = [t for call in calls for t in call]
    assert all(len(call) == 1 for call in calls), calls
    assert set(targets) <= make_targets(), set(targets) - make_targets()
    # checked first, then the images and the chart, in that order
    assert targets == ["release-check", "setup", "images", "package", "chart-push"], targets
    # the version pushed is the tag's: TAG reaches every make call through the job's environment
    assert any('echo "TAG=${GITHUB_REF_NAME#v}" >> "$GITHUB_ENV"' in str(s.get("run", "")) for s in steps())


def test_the_registry_and_its_login_come_from_the_repository_settings() -> None:
    env = workflow()["jobs"]["release"]["env"]
    assert env == {
        "REGISTRY": "${{ vars.QHUB_REGISTRY }}",
        "QHUB_REGISTRY_USERNAME": "${{ vars.QHUB_REGISTRY_USERNAME }}",
        "QHUB_REGISTRY_PASSWORD": "${{ secrets.QHUB_REGISTRY_PASSWORD }}",
    }
    # no registry host anywhere in the file: a host name is a dotted name followed by a port or a path
    hosts = re.findall(r"(?<![\w./-])(?:[a-z0-9-]+\.)+[a-z]{2,}(?::\d+)?/", WORKFLOW.read_text(), re.I)
    assert hosts == [], hosts


def test_the_release_builds_with_the_go_the_image_locks_record() -> None:
    """The workflow installs ci/versions.env's GO_VERSION, and every Go binary locked under images/ was built with
    it, so the release's Go binaries are the ones the tests ran."""
    pinned = re.search(r"^GO_VERSION=(\S+)$", (REPO / "ci" / "versions.env").read_text(), re.M)
    assert pinned, "ci/versions.env has no GO_VERSION"
    setup_go = next(s for s in steps() if str(s.get("uses", "")).startswith("actions/setup-go@"))
    assert setup_go["with"]["go-version"] == "${{ steps.go.outputs.version }}"
    assert any(s.get("id") == "go" and "GO_VERSION" in s["run"] for s in steps())
    recorded = {go["go"] for lock in (REPO / "images").glob("*/system.lock.json")
                for go in (yaml.safe_load(lock.read_text()).get("go") or {}).values()}
    assert recorded == {f"go{pinned.group(1)}"}, recorded
