"""validate, schema and check."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from qhubctl import kube, netcheck, storagecheck
from qhubctl.commands._common import ConfigOpt, KubeconfigOpt, handles_errors, kube_target, load, out
from qhubctl.config.loader import SCHEMA_FILE
from qhubctl.schema import write_schema


@handles_errors
def validate(config: Path = ConfigOpt) -> None:
    """Check the config file offline (no cluster or cloud credentials needed)."""
    start = time.perf_counter()
    cfg = load(config)
    groups = ", ".join(cfg.node_groups)
    out.print(f"{config}: valid ({cfg.cluster.provider}, project {cfg.project_name}, node groups {groups}) "
              f"in {1000 * (time.perf_counter() - start):.0f} ms")


@handles_errors
def schema(output: Path = typer.Option(Path(SCHEMA_FILE), "-o", "--output", help="Where to write it.")) -> None:
    """Write the JSON schema of the config file (editors use it for completion and checks)."""
    path = write_schema(output)
    out.print(f"wrote {path}; config files reference it with `# yaml-language-server: $schema={path.name}`")


@handles_errors
def check(
    config: Path = ConfigOpt,
    kubeconfig: Path | None = KubeconfigOpt,
    timeout: float = typer.Option(300, "--timeout", help="Seconds to wait for the canary pod to finish."),
) -> None:
    """Check the cluster under the deployment. Storage: every StorageClass its volume claims use exists, and
    exactly one default class when the config names none. NetworkPolicies: a canary pod in the release
    namespace, selected like a user server, must reach DNS and the proxy but not the hub's internal port, the
    in-cluster NFS server or the cloud metadata address. Exits 1 when a class is missing or policies are not enforced, 3 when the check could
    not decide."""
    cfg = load(config)
    path, context = kube_target(cfg, kubeconfig)
    api = kube.api_client(path, context)
    storage = storagecheck.run_check(api, cfg)
    for line in storage.lines:
        out.print(f"  {line}", markup=False)
    out.print(storage.summary, markup=False)
    report = netcheck.run_check(api, cfg, timeout=timeout, say=lambda line: out.print(line, markup=False))
    for line in report.verdict.lines:
        out.print(f"  {line}", markup=False)
    out.print(f"{report.verdict.summary} (canary {report.pod} on node {report.node}, {report.seconds:.0f}s)",
              markup=False)
