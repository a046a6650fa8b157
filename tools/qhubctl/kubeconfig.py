"""Which kubeconfig a command uses, and clear messages when it is not there (no kubernetes import: cheap)."""

from __future__ import annotations

import os
from pathlib import Path

from qhubctl.errors import UserError

KUBECONFIG_HINT = ("run `qhubctl cluster create -c FILE` (it writes <project>.kubeconfig next to the config, which "
                   "the other commands then use), or pass --kubeconfig FILE, or set KUBECONFIG")


def check_kubeconfig(path: str | os.PathLike[str], source: str = "kubeconfig") -> None:
    """UserError naming the file when a kubeconfig (or each file of a KUBECONFIG list) is missing or unreadable;
    the kubernetes client would only say "Invalid kube-config file. No configuration found."."""
    files = [f for f in str(path).split(os.pathsep) if f]
    missing = [f for f in files if not Path(f).exists()]
    if files and len(missing) == len(files):
        raise UserError(f"{source} {path}: file not found", hint=KUBECONFIG_HINT)
    for name in files:
        if Path(name).is_dir():
            raise UserError(f"{source} {name}: is a directory, not a kubeconfig file", hint=KUBECONFIG_HINT)
        if Path(name).exists() and not os.access(name, os.R_OK):
            raise UserError(f"{source} {name}: cannot read it: permission denied",
                            hint="check the file's owner and mode (`ls -l`)")
