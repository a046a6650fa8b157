"""What every command shares: the common options, config loading, and QHubError -> message + exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from qhubctl.config import DEFAULT_CONFIG, QHubConfig, load_config
from qhubctl.errors import QHubError, RefusedError

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = typer.Option(DEFAULT_CONFIG, "-c", "--config", help="Config file.", envvar="QHUB_CONFIG")
YesOpt = typer.Option(False, "--yes", "-y", help="Answer yes to confirmations (scripts, CI).")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="kubeconfig file; default $KUBECONFIG.")


def handles_errors(fn: F) -> F:
    """Turn QHub's own errors into a red message and their exit code; never a traceback for those."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except QHubError as exc:
            err.print(f"[red]error:[/red] {exc.message}", markup=True, highlight=False)
            for line in getattr(exc, "problems", []):
                err.print(f"  - {line}", markup=False)
            if exc.hint:
                err.print(f"  [yellow]hint:[/yellow] {exc.hint}", markup=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def load(path: Path) -> QHubConfig:
    return load_config(path)


def confirm(question: str, yes: bool) -> None:
    """Ask unless --yes; without a terminal and without --yes, refuse instead of hanging."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(f"{question} - needs confirmation", hint="pass --yes when running without a terminal")
    if not typer.confirm(question, default=False):
        raise RefusedError("cancelled")


def kube_target(cfg: QHubConfig, kubeconfig: Path | None) -> tuple[str | None, str | None]:
    context = getattr(cfg.cluster, "kube_context", None)
    return (str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")), context
