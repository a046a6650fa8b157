"""Command-line entry point. This module only registers commands; the work lives in the library modules."""

from __future__ import annotations

import typer

from qhubctl import __version__

app = typer.Typer(
    name="qhubctl",
    help="Deploy and operate QHub, a shared data-science platform on Kubernetes, from one config file.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qhubctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """QHub's lifecycle tool."""


def main() -> None:
    app()
