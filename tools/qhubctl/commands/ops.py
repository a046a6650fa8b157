"""status, support, destroy."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl import addons, kube
from qhubctl.commands._common import (
    ConfigOpt,
    KubeconfigOpt,
    YesOpt,
    confirm,
    err,
    handles_errors,
    kube_target,
    load,
    out,
)
from qhubctl.deploy import destroy as destroy_release
from qhubctl.errors import EXIT_FAILURE
from qhubctl.helm import Helm
from qhubctl.status import gather
from qhubctl.support import bundle


@handles_errors
def status(config: Path = ConfigOpt, kubeconfig: Path | None = KubeconfigOpt) -> None:
    """What runs, where, how to reach it and log in. Exits 3 when the release is missing or not ready."""
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    st = gather(cfg, Helm(path, context), kube.api_client(path, context))
    rel = st.release
    out.print(f"release {cfg.release_name} in {cfg.namespace}: "
              + (f"revision {rel.revision}, {rel.status}, chart {rel.chart_version}" if rel else "not installed"),
              markup=False)
    if rel is None:
        out.print(f"  install it with: qhubctl deploy -c {config}", markup=False)
    for w in st.workloads:
        out.print(f"  {w.kind}/{w.name}: {w.ready}/{w.desired} ready", markup=False)
    for name, selector in st.node_groups.items():
        out.print(f"  node group {name}: {selector}", markup=False)
    helm = addons.helm_for(path, context) if addons.parts(cfg) else None
    for line in addons.describe(cfg, helm):
        out.print(f"  {line}", markup=False)
    for line in st.access:
        out.print(f"  {line}", markup=False)
    for line in st.backups:
        out.print(f"  {line}", markup=False)
    if not st.healthy:
        raise typer.Exit(EXIT_FAILURE)


@handles_errors
def support(
    config: Path = ConfigOpt,
    output: Path = typer.Option(Path("qhub-support.zip"), "-o", "--output", help="Zip file to write."),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Zip pod logs, events, workload states and the redacted config for a bug report. Without a reachable cluster
    it still writes the version and the redacted config, and says what it could not reach."""
    cfg = load(config)

    def connect() -> tuple[Helm, object]:
        path, context = kube_target(cfg, kubeconfig)
        return Helm(path, context), kube.api_client(path, context)

    zipped, members, missing = bundle(cfg, connect, output)
    out.print(f"wrote {zipped} ({len(members)} files); secrets are redacted - check before sharing", markup=False)
    if missing:
        err.print(f"[yellow]warning:[/yellow] without the cluster's workloads, events, logs and release: {missing}")


@handles_errors
def destroy(
    config: Path = ConfigOpt,
    delete_data: bool = typer.Option(False, "--delete-data", help="Also delete PVCs: homes, hub DB, environments."),
    yes: bool = YesOpt,
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Uninstall the platform. Volumes are kept unless --delete-data."""
    cfg = load(config)
    what = "and DELETE ALL DATA (PVCs) " if delete_data else ""
    confirm(f"uninstall release {cfg.release_name} {what}from namespace {cfg.namespace}?", yes)
    path, context = kube_target(cfg, kubeconfig)
    result = destroy_release(cfg, Helm(path, context), kube.api_client(path, context), delete_data=delete_data)
    out.print("uninstalled" if result.uninstalled else "release was not installed")
    if result.kept_pvcs:
        out.print(f"kept volumes: {', '.join(result.kept_pvcs)} (delete with --delete-data)")
    if result.deleted_pvcs:
        out.print(f"deleted volumes: {', '.join(result.deleted_pvcs)}")
