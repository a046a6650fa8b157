"""render [--diff]."""

from __future__ import annotations

import asyncio
import json
from enum import Enum
from pathlib import Path

import typer
import yaml

from qhubctl.commands._common import ConfigOpt, KubeconfigOpt, handles_errors, kube_target, load, out
from qhubctl.deploy import values_diff
from qhubctl.helm import Helm
from qhubctl.values import chart_values


class Format(str, Enum):
    yaml = "yaml"
    json = "json"


@handles_errors
def render(
    config: Path = ConfigOpt,
    diff: bool = typer.Option(False, "--diff", help="Show the difference to the deployed release's values."),
    output_format: Format = typer.Option(Format.yaml, "--format", help="Output format."),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Print the Helm values the config maps to (deterministic, no secrets)."""
    cfg = load(config)
    values = chart_values(cfg)
    if not diff:
        out.print(json.dumps(values, indent=2) if output_format is Format.json else yaml.safe_dump(values, sort_keys=True),
                  markup=False, end="")
        return
    path, context = kube_target(cfg, kubeconfig)
    deployed = asyncio.run(Helm(path, context).deployed(cfg.release_name, cfg.namespace))
    lines = values_diff(deployed.values if deployed else None, values)
    out.print("\n".join(lines) if lines else "no changes: the deployed values match the config", markup=False)
