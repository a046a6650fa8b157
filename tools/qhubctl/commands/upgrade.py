"""upgrade: migrate the config file to the current schema version."""

from __future__ import annotations

from pathlib import Path

from qhubctl.commands._common import ConfigOpt, handles_errors, out
from qhubctl.config.migrate import upgrade_file
from qhubctl.config.model import SCHEMA_VERSION


@handles_errors
def upgrade(config: Path = ConfigOpt) -> None:
    """Migrate an older config step by step to the current schema_version, keeping a backup of the old file."""
    start, changes, backup = upgrade_file(config)
    if backup is None:
        out.print(f"{config} is already at schema_version {SCHEMA_VERSION}; nothing to do")
        return
    out.print(f"migrated {config} from schema_version {start} to {SCHEMA_VERSION}; backup: {backup}")
    for line in changes:
        out.print(f"  - {line}", markup=False)
    out.print("next: `qhubctl validate`, then `qhubctl deploy --dry-run` to see what changes in the cluster")
