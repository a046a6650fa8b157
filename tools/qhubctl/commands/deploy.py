"""deploy [--dry-run]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from qhubctl import dnsrecord, kube
from qhubctl import daskclusters
from qhubctl.backup import schedule
from qhubctl.commands._common import ConfigOpt, KubeconfigOpt, YesOpt, confirm, handles_errors, kube_target, load, out
from qhubctl.config.loader import read_text
from qhubctl.config.model import QHubConfig
from qhubctl.deploy import admin_password_command, apply, make_plan
from qhubctl.errors import EXIT_CHANGES
from qhubctl.helm import Helm


def _table(workloads: list[kube.Workload]) -> Table:
    table = Table("workload", "ready", "state", title="rollout", title_justify="left")
    for w in workloads:
        state = "[green]ready[/green]" if w.done else "[yellow]rolling out[/yellow]"
        table.add_row(f"{w.kind}/{w.name}", f"{w.ready}/{w.desired}", state)
    return table


@handles_errors
def deploy(
    config: Path = ConfigOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (values diff) and change nothing."),
    show_diff: bool = typer.Option(False, "--diff", help="Show the whole values diff also on a first install (which "
                                   "is otherwise summarised: every value is new)."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="With --dry-run: exit 2 on changes."),
    timeout: str = typer.Option("10m", "--timeout", help="How long to wait for workloads to become ready."),
    yes: bool = YesOpt,
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Apply the config: CRDs, then helm upgrade --install --wait; a no-op when nothing changed."""
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    helm = Helm(path, context)
    api = kube.api_client(path, context)
    plan = make_plan(cfg, helm, api)
    if not plan.changed:
        out.print(f"no changes: release {plan.release} (revision {plan.deployed.revision}) matches the config "
                  f"and chart {plan.chart_version}")
        if not dry_run:
            _dask_clusters(api, cfg)
            _scheduled_backups(api, cfg, config)
            _dns(api, cfg)
        return
    action = "install" if plan.install else "upgrade"
    out.print(f"plan: {action} release {plan.release} in namespace {plan.namespace} with chart {plan.chart_version}")
    if plan.install and not show_diff:
        out.print(install_summary(plan.values, config), markup=False)
    else:
        out.print("\n".join(plan.diff) or "(values unchanged; the chart changed)", markup=False)
    if dry_run:
        if detailed_exitcode:
            raise typer.Exit(EXIT_CHANGES)
        return
    if not plan.install:
        confirm(f"apply these changes to {plan.release}?", yes)
    if out.is_terminal:
        with Live(_table([]), console=out, refresh_per_second=2) as live:
            result = apply(cfg, helm, api, plan, timeout=timeout, progress=lambda ws: live.update(_table(ws)))
    else:
        result = apply(cfg, helm, api, plan, timeout=timeout)
    rolled = ", ".join(result.rolled) or "none"
    out.print(f"deployed revision {result.revision} in {result.seconds:.1f}s; rolled: {rolled}")
    show_new_logins(result.new_logins, cfg, terminal=out.is_terminal)
    if result.stopped_clusters:
        _say(f"stopped {len(result.stopped_clusters)} Dask cluster(s) of the release namespace, which the gateway no "
             f"longer watches (clusters now run in {daskclusters.namespace(cfg)}; their users start new ones): "
             + ", ".join(result.stopped_clusters))
    _dask_clusters(api, cfg)
    _scheduled_backups(api, cfg, config)
    _dns(api, cfg)


def _dns(api: Any, cfg: QHubConfig) -> None:
    """The DNS record the domain needs (where it must point, or why that is not known yet)."""
    for line in dnsrecord.lines(cfg, api):
        _say(line)


def _dask_clusters(api: Any, cfg: QHubConfig) -> None:
    """The shared volume in the Dask clusters' namespace (storage.type existing), once the release's is bound."""
    for line in daskclusters.sync(api, cfg):
        _say(line)


def _scheduled_backups(api: Any, cfg: QHubConfig, config: Path) -> None:
    """The backup CronJobs follow the config's `backup:` section once the release is deployed (they run its
    image); they are not part of the Helm release, so an unchanged release still gets them in step."""
    for line in schedule.sync(api, cfg, read_text(config), say=_say):
        _say(line)


def _say(line: str) -> None:
    out.print(line, markup=False)


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    return 1


def install_summary(values: dict[str, Any], config: Path) -> str:
    """A first install's values in one line per part (every value is new, so the diff would list them all)."""
    parts = ", ".join(f"{key} {_leaves(v)}" for key, v in sorted(values.items()))
    return (f"values: {_leaves(values)} settings, all new ({parts}); "
            f"`qhubctl deploy -c {config} --dry-run --diff` or `qhubctl render -c {config}` shows them")


def show_new_logins(logins: dict[str, str], cfg: QHubConfig, *, terminal: bool) -> None:
    """The admin passwords this deploy generated: on a terminal once, in full; elsewhere (CI logs) only where they
    are. qhubctl writes them nowhere; the hub Secret keeps them."""
    if not logins:
        return
    names = ", ".join(sorted(logins))
    if terminal:
        out.print(f"admin login at the hub (shown once, keep it safe): {names}", markup=False)
        for name, password in sorted(logins.items()):
            out.print(f"  user {name}  password {password}", markup=False)
    else:
        out.print(f"generated the password of admin {names}; not shown, as this output is not a terminal (CI logs "
                  "are kept)", markup=False)
    out.print(f"read it again with: {admin_password_command(cfg)}", markup=False)
