"""`qhubctl cluster create|plan|destroy|kubeconfig|eks-token|gke-token`."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import typer
import yaml

from qhubctl import addons, providers
from qhubctl.commands._common import (
    ConfigOpt,
    YesOpt,
    apply_and_recheck,
    confirm,
    err,
    handles_errors,
    load,
    out,
)
from qhubctl.config.model import QHubConfig
from qhubctl.errors import EXIT_CHANGES, QHubError
from qhubctl.netcheck import ENFORCEMENT
from qhubctl.private import write_private
from qhubctl.providers.base import Plan

app = typer.Typer(help="Create, plan and destroy the Kubernetes cluster the config describes.", no_args_is_help=True)

KubeconfigOut = typer.Option(None, "--kubeconfig", help="Where to write the kubeconfig; default <project>.kubeconfig "
                             "next to the config file.")


def _log(line: str) -> None:
    out.print(line, markup=False)


def _kubeconfig_path(config: Path, project: str, given: Path | None) -> Path:
    return given or config.resolve().parent / f"{project}.kubeconfig"


def _write_outputs(provider: providers.Provider, config: Path, given: Path | None) -> Path:
    path = _kubeconfig_path(config, provider.cfg.project_name, given)
    write_private(path, yaml.safe_dump(provider.kubeconfig(), sort_keys=False))  # 0600 from the first byte
    out.print(f"kubeconfig: {path}\n  export KUBECONFIG={path}", markup=False)
    return path


def _release(held: list[str]) -> str:
    """The add-on release and the parts it held, as destroy names it."""
    return f"add-on release {addons.NAMESPACE}/{addons.RELEASE} ({', '.join(held) or 'no parts'})"


def remove_addons(provider: providers.Provider, cfg: QHubConfig) -> list[str] | None:
    """Uninstall the add-on release before the cloud resources go (cluster-autoscaler must not resize groups being
    deleted): the parts it held, None when there was none to remove. A cluster that cannot be reached any more takes
    the release with it, so that is a note."""
    if not addons.parts(cfg):
        return None
    try:
        with _temporary_kubeconfig(provider) as path:
            held = addons.remove(addons.helm_for(str(path), None))
    except QHubError as exc:
        out.print(f"cluster add-on release {addons.RELEASE} not removed ({exc.message.splitlines()[0]}); it goes "
                  "with the cluster", markup=False)
        return None
    if held is not None:
        out.print(f"removed the cluster {_release(held)}", markup=False)
    return held


def _destroy_release_only(provider: providers.Provider, cfg: QHubConfig, yes: bool) -> None:
    """`cluster destroy` of a cluster qhubctl keeps (the user's, `destroys_cluster` false): only the add-on release
    the config opted into goes, after the same question as any destroy."""
    keeps = f"qhubctl keeps cluster {provider.cluster_name} ({provider.name}): it did not create it"
    if not addons.parts(cfg):
        out.print(f"nothing to destroy: {keeps}, and this config installs no cluster add-on release on it",
                  markup=False)
        return
    with _temporary_kubeconfig(provider) as path:
        helm = addons.helm_for(str(path), None)
        held = addons.installed(helm)
        if held is None:
            out.print(f"nothing to destroy: {keeps}, and the add-on release {addons.RELEASE} is not installed in "
                      f"{addons.NAMESPACE}", markup=False)
            return
        out.print(f"{keeps}; 1 change\n- {_release(held)}", markup=False)
        confirm(f"remove the cluster add-on release {addons.RELEASE} from {provider.cluster_name}?", yes)
        addons.remove(helm)
    out.print(f"removed the cluster {_release(held)}; cluster {provider.cluster_name} itself stays", markup=False)


@contextlib.contextmanager
def _temporary_kubeconfig(provider: providers.Provider) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qhubctl-") as tmp:
        path = Path(tmp) / "kubeconfig"
        write_private(path, yaml.safe_dump(provider.kubeconfig(), sort_keys=False))
        yield path


def _show(plan: Plan) -> None:
    out.print(plan.render(), markup=False)


@app.command("plan")
@handles_errors
def plan_cmd(config: Path = ConfigOpt) -> None:
    """Compare the cloud with the config. Exit 0: nothing to do; 2: create/destroy would change something."""
    cfg = load(config)
    provider = providers.get(cfg, log=_log)
    err.print(f"credentials: {provider.check_credentials()}", markup=False)
    plan = provider.plan()
    _show(plan)
    if plan.changed:
        raise typer.Exit(EXIT_CHANGES)


@app.command("create")
@handles_errors
def create(config: Path = ConfigOpt, yes: bool = YesOpt, kubeconfig: Path | None = KubeconfigOut) -> None:
    """Create or update the cluster so it matches the config, then write its kubeconfig. Idempotent."""
    cfg = load(config)
    provider = providers.get(cfg, log=_log)
    out.print(f"credentials: {provider.check_credentials()}", markup=False)
    plan = provider.plan()
    _show(plan)
    if plan.changed:
        confirm(f"apply {len(plan.actions)} change(s) to cluster {plan.cluster}?", yes)
        apply_and_recheck(provider, plan, provider.plan, "the cluster still differs from the config",
                          "qhubctl cluster create")
        out.print(f"cluster {plan.cluster} matches the config", markup=False)
    path = _write_outputs(provider, config, kubeconfig)
    addons.ensure_for(provider, str(path), None, _log)
    out.print(f"NetworkPolicy enforcement: {ENFORCEMENT[cfg.cluster.provider].enforcer}; `qhubctl check` tests it "
              "once QHub is deployed", markup=False)


@app.command("destroy")
@handles_errors
def destroy(config: Path = ConfigOpt, yes: bool = YesOpt) -> None:
    """Delete the cluster and everything created for it (the add-on release, node groups, network, roles, and the
    load balancers and volumes Kubernetes made). Waits until all is gone; running it again finds nothing. On an
    existing cluster, which stays, only the add-on release the config opted into goes."""
    cfg = load(config)
    provider = providers.get(cfg, log=_log)
    out.print(f"credentials: {provider.check_credentials()}", markup=False)
    if not cfg.cluster.destroys_cluster:
        _destroy_release_only(provider, cfg, yes)
        return
    plan = provider.destroy_plan()
    if not plan.changed:
        out.print(f"nothing to destroy: no resources of {plan.cluster} found", markup=False)
        return
    _show(plan)
    confirm(f"delete these {len(plan.actions)} resource(s) of {plan.cluster}?", yes)
    held = remove_addons(provider, cfg)
    provider.destroy(plan)
    left = provider.destroy_plan()
    if left.changed:
        raise QHubError("some resources are still there:\n" + left.render(),
                        hint="run `qhubctl cluster destroy` again")
    removed = ([_release(held)] if held is not None else []) + _removed(plan)
    stale = _remove_kubeconfig(config, cfg.project_name, plan.cluster)
    if stale:
        removed.append(f"kubeconfig {stale}")
    out.print(f"cluster {plan.cluster} destroyed; removed " + ", ".join(removed), markup=False)


def _removed(plan: Plan) -> list[str]:
    """What a destroy plan removed: each resource, or for a long plan (a cloud's) the count of each kind."""
    if len(plan.actions) <= 4:
        return [f"{a.kind} {a.name}" for a in plan.actions]
    kinds: dict[str, int] = {}
    for action in plan.actions:
        kinds[action.kind] = kinds.get(action.kind, 0) + 1
    return [f"{count} {kind}" for kind, count in kinds.items()]


def _remove_kubeconfig(config: Path, project: str, cluster: str) -> Path | None:
    """The kubeconfig `cluster create` wrote next to the config, once its cluster is gone (only when it is a
    kubeconfig for that cluster: a file of the user's under the same name stays)."""
    path = _kubeconfig_path(config, project, None)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    entries = data.get("clusters") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not any(
            isinstance(c, dict) and cluster in str(c.get("name", "")) for c in entries):
        return None
    path.unlink()
    return path


@app.command("kubeconfig")
@handles_errors
def kubeconfig_cmd(config: Path = ConfigOpt, kubeconfig: Path | None = KubeconfigOut) -> None:
    """Write the cluster's kubeconfig (no cloud CLI needed to use it)."""
    cfg = load(config)
    _write_outputs(providers.get(cfg, log=_log), config, kubeconfig)


@app.command("eks-token", hidden=False)
@handles_errors
def eks_token(cluster_name: str = typer.Option(..., "--cluster-name", help="EKS cluster name."),
              region: str = typer.Option(..., "--region", help="AWS region of the cluster.")) -> None:
    """Print an ExecCredential with an EKS bearer token (kubeconfig exec plugin; uses boto3's credentials)."""
    try:
        import botocore.exceptions

        from qhubctl.providers import eks_token as tok
        from qhubctl.providers.aws import explain
    except ImportError:
        raise QHubError("eks-token needs boto3", hint="pip install 'qhubctl[aws]'") from None

    try:
        typer.echo(tok.main_json(cluster_name, region))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise explain(exc) from None


@app.command("gke-token")
@handles_errors
def gke_token() -> None:
    """Print an ExecCredential with a Google access token (kubeconfig exec plugin; Application Default
    Credentials)."""
    import json

    try:
        from google.auth.exceptions import GoogleAuthError

        from qhubctl.providers.cloud_tokens import gke_credential
    except ImportError:
        raise QHubError("gke-token needs google-auth", hint="pip install 'qhubctl[gcp]'") from None

    try:
        typer.echo(json.dumps(gke_credential()))
    except GoogleAuthError as exc:  # no credentials, a refused refresh, or Google unreachable
        raise QHubError(f"cannot get a Google access token: {exc}",
                        hint="run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") \
            from None
