"""backup / restore: the platform's users, groups, tokens, uids, conda-store environments and files, to and from a
local directory or an S3 bucket (docs/backup.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl import kube
from qhubctl.backup import run
from qhubctl.backup.restore import restore as restore_platform
from qhubctl.backup.destination import parse
from qhubctl.commands._common import ConfigOpt, KubeconfigOpt, YesOpt, confirm, handles_errors, kube_target, load, out
from qhubctl.errors import UserError

KeyFileOpt = typer.Option(None, "--key-file", readable=False,
                          help="File with the archive's key; default $QHUB_CACHE/backup-keys/<project>.key (written "
                               "by the first backup).")
TimeoutOpt = typer.Option(3600, "--timeout", help="Seconds each Job may take.")
StagingOpt = typer.Option(run.STAGING_SIZE, "--staging-size",
                          help="Size of the volume each Job stages a local directory's repository in.")


def _say(line: str) -> None:
    out.print(line, markup=False)


def _config_text(config: Path) -> str:
    try:
        return config.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {config}: {exc}") from None


@handles_errors
def backup(
    config: Path = ConfigOpt,
    output: str = typer.Option(..., "-o", "--output", help="A local directory or s3://bucket/prefix "
                               "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL from the environment)."),
    key_file: Path | None = KeyFileOpt,
    timeout: int = TimeoutOpt,
    staging_size: str = StagingOpt,
    keep: int | None = typer.Option(None, "--keep", min=1, help="Then keep only the newest N snapshots of each "
                                    "part and delete the data only older ones use (s3:// destinations)."),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Back up the hub's database (users, groups, tokens), conda-store's database, the users' uids, the config,
    the chart values and every home and group folder; later runs store only what changed."""
    dest = parse(output)
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    api = kube.api_client(path, context)
    with out.status(f"backing up {cfg.project_name} to {dest.describe()}") as status:
        outcome = run.backup(api, cfg, dest, config_text=_config_text(config), key_path=run.key_file(cfg, key_file),
                             say=_say, progress=lambda text: status.update(text), timeout=timeout,
                             staging_size=staging_size, keep=keep)
    for name, report in outcome.reports.items():
        pruned = f"; {report['forgot']} older snapshots forgotten, {report['kept']} kept" if keep else ""
        out.print(f"  {name}: snapshot {report['snapshot'][:8]}, {report['files']} files, "
                  f"{report['bytes'] / 1e6:.1f} MB read, {report['addedBytes'] / 1e6:.1f} MB new "
                  f"({report['unchangedFiles']} files unchanged){pruned}", markup=False)
    moved = sum(outcome.transferred.values())
    where = f", {moved / 1e6:.1f} MB copied to {dest.describe()}" if dest.local else ""
    out.print(f"backup {outcome.run} done in {outcome.seconds:.1f}s{where}", markup=False)


@handles_errors
def restore(
    source: str = typer.Argument(..., help="The local directory or s3://bucket/prefix a backup wrote."),
    config: Path = ConfigOpt,
    run_id: str = typer.Option("", "--run", help="The backup run to restore (e.g. 20261130T120000Z); default: "
                               "the latest."),
    force: bool = typer.Option(False, "--force", help="Restore even if homes or group folders are not empty "
                               "(files in the archive are overwritten; others stay)."),
    key_file: Path | None = KeyFileOpt,
    timeout: int = TimeoutOpt,
    staging_size: str = StagingOpt,
    yes: bool = YesOpt,
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Restore a backup onto this platform (deploy it first): stops the hub and conda-store, reads back the whole
    archive, restores files, databases and uids, and starts them again."""
    src = parse(source)
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    api = kube.api_client(path, context)
    confirm(f"restore {src.describe()} onto {cfg.project_name} (namespace {cfg.namespace}); the hub is stopped "
            "meanwhile?", yes)
    with out.status(f"restoring {cfg.project_name} from {src.describe()}") as status:
        outcome = restore_platform(api, cfg, src, key_path=run.key_file(cfg, key_file), force=force, run=run_id,
                              say=_say, progress=lambda text: status.update(text), timeout=timeout,
                              staging_size=staging_size)
    meta = outcome.reports.get("meta", {})
    for item in meta.get("restored", []):
        out.print(f"  restored the {item}", markup=False)
    saved = (meta.get("texts") or {}).get("qhub-config.yaml")
    if saved and saved != _config_text(config):
        copy = config.with_name(f"{config.stem}.backup-{outcome.run}{config.suffix}")
        copy.write_text(saved)
        out.print(f"  the archive's config file differs from {config}: it is in {copy} (groups and profiles come "
                  "from the config; deploy it to get the platform as it was)", markup=False)
    files = outcome.reports.get("files", {})
    if files.get("overwrote"):
        out.print(f"  overwrote what the archive holds in {', '.join(files['overwrote'])}", markup=False)
    out.print(f"restore of backup {outcome.run} done in {outcome.seconds:.1f}s", markup=False)
