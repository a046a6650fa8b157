"""upgrade: migrate the config file to the current schema version; bring the cloud's managed add-ons (EKS: vpc-cni,
aws-ebs-csi-driver) to the versions EKS recommends for the cluster's Kubernetes version, and the cluster add-on
release (where qhubctl installs one) to the chart this qhubctl carries; with --homes, hand pre-uid homes to their
users."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl import addons, homes, kube, providers
from qhubctl.commands._common import (
    ConfigOpt,
    KubeconfigOpt,
    YesOpt,
    apply_and_recheck,
    can_confirm,
    confirm,
    handles_errors,
    kube_target,
    load,
    out,
)
from qhubctl.config.migrate import upgrade_file
from qhubctl.config.model import SCHEMA_VERSION, QHubConfig
from qhubctl.errors import UserError
from qhubctl.providers.base import Provider


@handles_errors
def upgrade(
    config: Path = ConfigOpt,
    migrate_homes: bool = typer.Option(
        False, "--homes",
        help="After `qhubctl deploy` of a release with per-user uids: give every home from before (owned by the "
             "shared uid 1000) to its user's uid, in a one-shot Job on the cluster.",
    ),
    timeout: int = typer.Option(1800, "--timeout", help="Seconds the --homes Job may take."),
    with_addons: bool = typer.Option(
        True, "--addons/--no-addons",
        help="Also upgrade the cluster's add-ons, when a kubeconfig for the cluster is found: EKS's managed add-ons "
             "to the versions EKS recommends for its Kubernetes version (asks first, unless --yes; without a terminal "
             "it only shows them), and the add-on release where qhubctl installs one; --no-addons migrates the file "
             "only.",
    ),
    yes: bool = YesOpt,
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Migrate an older config step by step to the current schema_version, keeping a backup of the old file; bring
    EKS's managed add-ons (vpc-cni, aws-ebs-csi-driver) to EKS's default versions for the cluster's Kubernetes
    version and the cluster add-on release (EKS: cluster-autoscaler, StorageClass, NVIDIA device plugin) to this
    qhubctl's chart; with --homes, also migrate the homes on the cluster."""
    start, changes, backup = upgrade_file(config)
    if backup is None:
        out.print(f"{config} is already at schema_version {SCHEMA_VERSION}; nothing to do")
    else:
        out.print(f"migrated {config} from schema_version {start} to {SCHEMA_VERSION}; backup: {backup}")
        for line in changes:
            out.print(f"  - {line}", markup=False)
    cfg = load(config)
    if with_addons:
        upgrade_addons(cfg, kubeconfig, yes)
    if backup is not None and not migrate_homes:
        out.print(f"next: `qhubctl validate -c {config}`, then `qhubctl deploy -c {config} --dry-run` to see what "
                  "changes in the cluster", markup=False)
    if not migrate_homes:
        return
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


def upgrade_addons(cfg: QHubConfig, kubeconfig: Path | None, yes: bool) -> None:
    """The cloud's managed add-ons at their wanted versions, then the add-on release with this qhubctl's chart and
    the config's settings (the cloud's credentials give its IAM roles). Without a kubeconfig for the cluster (none
    created yet), or without the cloud's SDK, it says so and does nothing; nothing at all where the cluster gets no
    add-on. The config migration before it stands either way."""
    provider: Provider | None = None
    try:
        provider = providers.get(cfg, log=_say)
    except UserError as exc:  # the cloud's SDK is not installed: said below, once a cluster to upgrade is known
        missing = exc
    if provider is not None and not provider.managed_addons and not addons.parts(cfg):
        return
    try:
        path, context = kube_target(cfg, kubeconfig)
    except UserError as exc:  # no cluster yet: a config migration needs none (a --kubeconfig given must work)
        if kubeconfig is not None:
            raise
        _say(f"cluster add-ons not upgraded: {exc.message}; `qhubctl cluster create` installs them")
        return
    if provider is None:
        fix = f"{missing.hint}, then " if missing.hint else ""
        _say(f"cluster add-ons not upgraded: {missing.message}; {fix}run `qhubctl upgrade` again")
        return
    if provider.managed_addons:
        upgrade_managed_addons(provider, yes)
    addons.ensure_for(provider, path, context, _say)


def upgrade_managed_addons(provider: Provider, yes: bool) -> None:
    """Apply the provider's add-on plan (versions for the Kubernetes version the cluster runs), asking first, and
    say what changed. Without a terminal and without --yes it asks nothing: it shows the changes, says how to apply
    them, and leaves the add-ons as they are (the rest of the upgrade goes on)."""
    names = ", ".join(provider.managed_addons)
    plan = provider.addon_plan()
    if not plan.changed:
        _say(f"managed add-ons ({names}): up to date for the cluster's Kubernetes version")
        for line in plan.notes:
            _say(f"note: {line}")
        return
    _say(plan.render())
    if not can_confirm(yes):
        _say(f"managed add-ons not updated (no terminal to ask on, and no --yes): run `qhubctl upgrade --yes` (or "
             f"`qhubctl cluster create`) to apply the {len(plan.actions)} change(s) above")
        return
    confirm(f"apply {len(plan.actions)} change(s) to the managed add-ons of cluster {plan.cluster}?", yes)
    apply_and_recheck(provider, plan, provider.addon_plan, "the managed add-ons still differ", "qhubctl upgrade")
    for action in plan.actions:
        _say(f"updated {action.kind} {action.name}: " + "; ".join(line.strip() for line in action.lines()[1:]))


def _say(line: str) -> None:
    out.print(line, markup=False)
