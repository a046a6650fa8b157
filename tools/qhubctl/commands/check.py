"""validate and schema."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from qhubctl.commands._common import ConfigOpt, handles_errors, load, out
from qhubctl.config.loader import SCHEMA_FILE
from qhubctl.schema import write_schema


@handles_errors
def validate(config: Path = ConfigOpt) -> None:
    """Check the config file offline (no cluster or cloud credentials needed)."""
    start = time.perf_counter()
    cfg = load(config)
    groups = ", ".join(cfg.node_groups)
    out.print(f"{config}: valid ({cfg.cluster.provider}, project {cfg.project_name}, node groups {groups}) "
              f"in {1000 * (time.perf_counter() - start):.0f} ms")


@handles_errors
def schema(output: Path = typer.Option(Path(SCHEMA_FILE), "-o", "--output", help="Where to write it.")) -> None:
    """Write the JSON schema of the config file (editors use it for completion and checks)."""
    path = write_schema(output)
    out.print(f"wrote {path}; config files reference it with `# yaml-language-server: $schema={path.name}`")
