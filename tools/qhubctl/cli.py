"""Command-line entry point. This module only registers commands; the work lives in the library modules.

Adding a command or a command group: write qhubctl/commands/<verb>.py (a function, or a typer `app` for a group
such as `cluster create|plan|destroy`), add the module to the one `from qhubctl.commands import ...` line and
register it below with ONE line:

    app.command("<verb>")(<verb>.<function>)      # a command
    app.add_typer(<verb>.app, name="<verb>")      # a command group

The libraries (qhubctl.providers, qhubctl.images, qhubctl.cost, ...) know nothing of the command line. Load the
config with qhubctl.commands._common.load, decorate commands with handles_errors, raise QHubError subclasses
(qhubctl.errors) for anything the user should read, and run tools through qhubctl.proc.run.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperOption

from qhubctl import __version__
from qhubctl.chart import ENV as CHART_ENV
from qhubctl.commands import backup, check, cluster, cost, deploy, images, init, ops, render, upgrade, version

app = typer.Typer(
    name="qhubctl",
    help="Deploy and operate QHub, a shared data-science platform on Kubernetes, from one config file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_typed = TyperOption.display_type_rich


def _flag_without_type(self: TyperOption, ctx: object) -> str | None:
    """Typer shows every flag with a `<bool>` value column (`--help <bool>`) though flags take no value: show none."""
    return None if self.is_flag and self.metavar is None else _typed(self, ctx)  # type: ignore[arg-type]


TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qhubctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    chart: str = typer.Option("", "--chart", envvar=CHART_ENV, show_default=False,
                              help="The chart to deploy: a directory or a `helm package` .tgz. Default: the chart "
                                   "installed with qhubctl (or the checkout's charts/qhub)."),
) -> None:
    """QHub's lifecycle tool."""
    if chart:
        os.environ[CHART_ENV] = chart  # qhubctl.chart reads it; so do the tools qhubctl starts


app.command("init")(init.init)
app.command("validate")(check.validate)
app.command("schema")(check.schema)
app.command("check")(check.check)
app.command("render")(render.render)
app.command("version")(version.version)
app.command("deploy")(deploy.deploy)
app.command("status")(ops.status)
app.command("support")(ops.support)
app.command("upgrade")(upgrade.upgrade)
app.command("destroy")(ops.destroy)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)

app.add_typer(images.app, name="images")
app.add_typer(cluster.app, name="cluster")
app.command("cost", short_help="Monthly baseline cost of the config, and the cost of a simulated load.")(cost.cost)


def main() -> None:
    app()
