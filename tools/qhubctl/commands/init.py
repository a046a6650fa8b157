"""init <provider> [-o FILE] [--guided] [--ci github-actions|gitlab-ci]."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from qhubctl.commands._common import YesOpt, handles_errors, out
from qhubctl.config import CLUSTER_BLOCKS, DEFAULT_CONFIG, PROVIDERS
from qhubctl.config.loader import SCHEMA_FILE, load_raw, parse_config
from qhubctl.errors import RefusedError
from qhubctl.scaffold import CI_FILES, config_text, github_workflow, gitlab_ci
from qhubctl.schema import write_schema


# `qhubctl init <provider>`: the choices are the config's providers.
ProviderName = Enum("ProviderName", [(name, name) for name in PROVIDERS], type=str)  # type: ignore[misc]


class CIName(str, Enum):
    github = "github-actions"
    gitlab = "gitlab-ci"


def _guided(provider: str) -> dict[str, str]:
    block = CLUSTER_BLOCKS[provider].model_fields
    answers = {"project_name": typer.prompt("Project name", default=f"qhub-{provider}")}
    if "region" in block:
        answers["region"] = typer.prompt("Region", default="")
    if "project" in block:  # a cloud project the cluster lives in (GCP)
        answers["gcp_project"] = typer.prompt("GCP project id")
    answers["domain"] = typer.prompt("Domain (empty: none)", default="")
    if answers["domain"] and CLUSTER_BLOCKS[provider].ingress_controller:  # Let's Encrypt through QHub's Traefik
        answers["email"] = typer.prompt("Contact email for Let's Encrypt (expiry notices; empty: use cert-manager)",
                                        default="")
    answers["admin"] = typer.prompt("Admin user name", default="admin")
    return {k: v for k, v in answers.items() if v}


def _env_secret_paths(raw: dict) -> list[str]:
    """Secret fields the file leaves to QHUB_SECRET__ variables (not a secretRef): CI must provide them."""
    auth = raw.get("auth") or {}
    if auth.get("type") in ("github", "oidc") and not isinstance(auth.get("client_secret"), dict):
        return ["auth.client_secret"]
    return []


@handles_errors
def init(
    provider: ProviderName = typer.Argument(..., help="Where QHub will run."),
    output: Path = typer.Option(DEFAULT_CONFIG, "-o", "--output", help="Config file to write."),
    guided: bool = typer.Option(False, "--guided", help="Ask questions instead of writing defaults."),
    ci: CIName | None = typer.Option(None, "--ci", help="Also write a CI workflow (plan on PRs, deploy on main)."),
    force: bool = YesOpt,
) -> None:
    """Write a minimal, commented, valid config (and optionally a GitOps workflow)."""
    if output.exists() and not force and not ci:
        raise RefusedError(f"{output} exists", hint="pass --yes to overwrite, or -o another file")
    if not output.exists() or force:
        text = config_text(provider.value, **(_guided(provider.value) if guided else {}))
        from ruamel.yaml import YAML

        parse_config(YAML().load(text), source=str(output), environ={})  # never write an invalid file
        output.write_text(text)
        schema_path = write_schema(output.parent / SCHEMA_FILE)
        out.print(f"wrote {output} ({provider.value}) and {schema_path}; next: `qhubctl validate -c {output}`")
    if ci:
        secrets = _env_secret_paths(load_raw(output))
        target = output.parent / CI_FILES[ci.value]
        target.parent.mkdir(parents=True, exist_ok=True)
        maker = github_workflow if ci is CIName.github else gitlab_ci
        target.write_text(maker(str(output.name), secrets))
        out.print(f"wrote {target}: validate and plan on pull requests, deploy on push to main")
