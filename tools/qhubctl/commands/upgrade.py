"""upgrade: migrate the config file to the current schema version; with --homes, hand pre-uid homes to their users."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl import homes, kube
from qhubctl.commands._common import (
    ConfigOpt,
    KubeconfigOpt,
    YesOpt,
    confirm,
    handles_errors,
    kube_target,
    load,
    out,
)
from qhubctl.config.migrate import upgrade_file
from qhubctl.config.model import SCHEMA_VERSION


@handles_errors
def upgrade(
    config: Path = ConfigOpt,
    migrate_homes: bool = typer.Option(
        False, "--homes",
        help="After `qhubctl deploy` of a release with per-user uids: give every home from before (owned by the "
             "shared uid 1000) to its user's uid, in a one-shot Job on the cluster.",
    ),
    timeout: int = typer.Option(1800, "--timeout", help="Seconds the --homes Job may take."),
    yes: bool = YesOpt,
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Migrate an older config step by step to the current schema_version, keeping a backup of the old file; with
    --homes, also migrate the homes on the cluster."""
    start, changes, backup = upgrade_file(config)
    if backup is None:
        out.print(f"{config} is already at schema_version {SCHEMA_VERSION}; nothing to do")
    else:
        out.print(f"migrated {config} from schema_version {start} to {SCHEMA_VERSION}; backup: {backup}")
        for line in changes:
            out.print(f"  - {line}", markup=False)
        if not migrate_homes:
            out.print(f"next: `qhubctl validate -c {config}`, then `qhubctl deploy -c {config} --dry-run` to see what "
                      "changes in the cluster", markup=False)
            return
    if not migrate_homes:
        return
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    api = kube.api_client(path, context)
    running = homes.legacy_servers(api, cfg.namespace)
    if running:
        out.print("these servers still run as the shared uid 1000 and lose access to their home once it is handed "
                  f"over (their users restart them): {', '.join(running)}", markup=False)
        confirm("hand the homes over now?", yes)
    outcome = homes.migrate(api, cfg, timeout=timeout, say=lambda line: out.print(line, markup=False))
    for line in homes.summary(outcome.report):
        out.print(f"  - {line}", markup=False)
    out.print(f"homes migrated in {outcome.seconds:.1f}s")
