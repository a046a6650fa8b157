"""The qhubctl commands that need no cluster: exit codes, messages without tracebacks, generated files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl.cli import app
from qhubctl.config import PROVIDERS, load_config

pytestmark = pytest.mark.unit
runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_init_writes_valid_commented_config(tmp_path: Path, provider: str) -> None:
    out = tmp_path / "qhub-config.yaml"
    result = runner.invoke(app, ["init", provider, "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=qhub-config.schema.json")
    assert (tmp_path / "qhub-config.schema.json").exists()
    assert load_config(out, environ={}).cluster.provider == provider
    assert runner.invoke(app, ["validate", "-c", str(out)]).exit_code == 0


def test_init_refuses_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    out.write_text("keep me")
    result = runner.invoke(app, ["init", "aws", "-o", str(out)])
    assert result.exit_code == 1 and out.read_text() == "keep me"


def test_init_guided(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    answers = "science\nus-west-2\nqhub.example.org\nops@science.dev\nana\n"
    result = runner.invoke(app, ["init", "aws", "--guided", "-o", str(out)], input=answers)
    assert result.exit_code == 0, result.output
    cfg = load_config(out, environ={})
    assert (cfg.project_name, cfg.cluster.region, cfg.domain, cfg.auth.admins) == (
        "science", "us-west-2", "qhub.example.org", ["ana"])
    assert (cfg.tls.type, cfg.tls.email) == ("letsencrypt", "ops@science.dev"), "Let's Encrypt through QHub's Traefik"


def test_validate_error_exit_code_and_message() -> None:
    result = runner.invoke(app, ["validate", "-c", str(CONFIGS / "aws.error.auth-plain-secret.yaml")])
    assert result.exit_code == 1
    assert "auth.client_secret" in result.output and "QHUB_SECRET__auth__client_secret" in result.output
    assert "Traceback" not in result.output


def test_validate_old_schema_points_to_upgrade() -> None:
    result = runner.invoke(app, ["validate", "-c", str(CONFIGS / "aws.error.old-schema.yaml")])
    assert result.exit_code == 1 and "qhubctl upgrade" in result.output


def test_schema_validates_ok_configs(tmp_path: Path) -> None:
    import jsonschema

    path = tmp_path / "s.json"
    assert runner.invoke(app, ["schema", "-o", str(path)]).exit_code == 0
    schema = json.loads(path.read_text())
    for cfg in sorted(CONFIGS.glob("*.ok.*.yaml")):
        jsonschema.validate(yaml.safe_load(cfg.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load((CONFIGS / "aws.error.unknown-key.yaml").read_text()), schema)


def test_render_is_secret_free_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QHUB_SECRET__auth__client_secret", "never-print-me")
    cfg = CONFIGS / "aws.ok.full.yaml"
    result = runner.invoke(app, ["render", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    values = yaml.safe_load(result.output)
    assert values["global"]["nodeGroups"]["gpu"]["nodeSelector"] == {"qhub.dev/node-group": "gpu"}
    assert "never-print-me" not in result.output


@pytest.mark.parametrize("ci", ["github-actions", "gitlab-ci"])
def test_ci_workflows(tmp_path: Path, ci: str) -> None:
    out = tmp_path / "qhub-config.yaml"
    out.write_text((CONFIGS / "gcp.ok.oidc.yaml").read_text().replace(
        "  client_secret: {secretRef: {name: oidc, key: secret}}\n", ""))
    result = runner.invoke(app, ["init", "gcp", "-o", str(out), "--ci", ci])
    assert result.exit_code == 0, result.output
    if ci == "github-actions":
        wf = tmp_path / ".github" / "workflows" / "qhub.yaml"
        doc = yaml.safe_load(wf.read_text())
        assert "QHUB_SECRET__auth__client_secret" in doc["jobs"]["deploy"]["env"]
        assert doc["jobs"]["plan"]["if"] == "github.event_name == 'pull_request'"
        check = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                                "vendor.github-workflows", str(wf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    else:
        doc = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
        assert doc["deploy"]["rules"][0]["if"] == '$CI_COMMIT_BRANCH == "main"'
        assert "--dry-run" in doc["plan"]["script"][0]


def test_upgrade_command(tmp_path: Path) -> None:
    path = tmp_path / "qhub-config.yaml"
    path.write_text("project_name: olddemo\nprovider: local\nlocal: {}\n")
    result = runner.invoke(app, ["upgrade", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "backup" in result.output and (tmp_path / "qhub-config.yaml.v1.backup").exists()
    assert load_config(path, environ={}).cluster.provider == "local"


def test_destroy_without_terminal_needs_yes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["destroy", "-c", str(CONFIGS / "local.ok.minimal.yaml")])
    assert result.exit_code == 1 and "--yes" in result.output
