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
from rich.markup import escape

from qhubctl.config import DEFAULT_CONFIG, QHubConfig, load_config
from qhubctl.errors import EXIT_FAILURE, EXIT_USER, QHubError, RefusedError, UserError
from qhubctl.kubeconfig import KUBECONFIG_HINT, check_kubeconfig

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# readable=False: the loader reports a missing, unreadable or empty file itself, naming it, with exit code 1
ConfigOpt = typer.Option(DEFAULT_CONFIG, "-c", "--config", help="Config file.", envvar="QHUB_CONFIG", readable=False)
YesOpt = typer.Option(False, "--yes", "-y", help="Answer yes to confirmations (scripts, CI).")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="kubeconfig file; default $KUBECONFIG.", readable=False)


def handles_errors(fn: F) -> F:
    """Turn QHub's own errors into a red message and their exit code; never a traceback for those."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except QHubError as exc:
            err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True, highlight=False)
            for line in getattr(exc, "problems", []):
                err.print(f"  - {line}", markup=False)
            if exc.hint:
                err.print(f"  [yellow]hint:[/yellow] {escape(exc.hint)}", markup=True)  # [aws] is text
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a file or directory the user named that cannot be read or written
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[red]error:[/red] {escape(where + str(exc.strerror or exc))}", markup=True, highlight=False)
            raise typer.Exit(EXIT_USER if exc.filename else EXIT_FAILURE) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# The file each loaded config came from, so kube_target finds the kubeconfig `cluster create` wrote next to it.
_SOURCES: dict[int, tuple[QHubConfig, Path]] = {}


def load(path: Path) -> QHubConfig:
    cfg = load_config(path)
    _SOURCES[id(cfg)] = (cfg, path)
    return cfg


def project_kubeconfig(config: Path, project: str) -> Path:
    """Where `qhubctl cluster create` writes the cluster's kubeconfig: <project>.kubeconfig next to the config."""
    return config.resolve().parent / f"{project}.kubeconfig"


def can_confirm(yes: bool) -> bool:
    """Whether `confirm` can get an answer: --yes, or a terminal to ask on. A step that is not the command's own
    purpose checks this first and is skipped, not refused, when it cannot."""
    return yes or sys.stdin.isatty()


def confirm(question: str, yes: bool) -> None:
    """Ask unless --yes; without a terminal and without --yes, refuse instead of hanging."""
    if yes:
        return
    if not can_confirm(yes):
        raise RefusedError(f"{question} - needs confirmation", hint="pass --yes when running without a terminal")
    if not typer.confirm(question, default=False):
        raise RefusedError("cancelled")


def apply_and_recheck(provider: Any, plan: Any, replan: Callable[[], Any], what: str, again: str) -> None:
    """Apply a provider's plan (asked for already), then plan again: anything still to do fails, naming `what`
    (e.g. "the cluster still differs from the config") and the command to run `again`."""
    provider.apply(plan)
    after = replan()
    if after.changed:
        raise QHubError(f"{what} after apply:\n" + after.render(),
                        hint=f"run `{again}` again; the cloud may still be settling")


def kube_target(cfg: QHubConfig, kubeconfig: Path | None) -> tuple[str | None, str | None]:
    """The kubeconfig and context for the config's cluster: --kubeconfig; else the <project>.kubeconfig that
    `qhubctl cluster create` wrote next to the config; else $KUBECONFIG; else ~/.kube/config. A file that is not
    there is a UserError naming it."""
    context = getattr(cfg.cluster, "kube_context", None)
    if kubeconfig:
        check_kubeconfig(kubeconfig, "--kubeconfig")
        return str(kubeconfig), context
    loaded, config = _SOURCES.get(id(cfg), (None, None))
    config = config if loaded is cfg else None
    written = project_kubeconfig(config, cfg.project_name) if config else None
    if written is not None and written.is_file():
        env = os.environ.get("KUBECONFIG")
        note = f" instead of KUBECONFIG={env}" if env and env != str(written) else ""
        err.print(f"kubeconfig: {written} (written by `qhubctl cluster create`{note}; --kubeconfig overrides)",
                  markup=False)
        return str(written), context
    env = os.environ.get("KUBECONFIG")
    if env:
        check_kubeconfig(env, "KUBECONFIG")
        return env, context
    default = Path.home() / ".kube" / "config"
    if not default.exists():
        where = f" (no {written.name} next to {config})" if written and config else ""
        raise UserError(f"no kubeconfig for this cluster{where}, KUBECONFIG is not set and {default} does not exist",
                        hint=KUBECONFIG_HINT)
    check_kubeconfig(default)
    return str(default), context
