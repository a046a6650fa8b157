"""The docs' runnable blocks run as written against the local test cluster (issue 15: docs as tests).

A block marked `<!-- docs-test: FLOW -->` (tests/docsmd.py) is read from the markdown and run literally: every
block of a flow, in page order, as one bash script under `set -euo pipefail`, in a fresh directory, with only
PATH (a `qhubctl` of the code under test, then the pinned tools), HOME (in that directory), KUBECONFIG (the test
cluster) and QHUB_CACHE (where the pinned tools live). No substitutions: what runs is what the reader reads.
Flows that deploy hold a lock of their own, so two sessions on one machine take turns, and whatever a flow made
on the cluster is removed afterwards even when it failed half-way."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import docsmd
from qhubctl import localcluster
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.cluster
# What each flow leaves on the cluster if it stops half-way: namespaces, each with the config that deploys there.
LEFTOVERS: dict[str, dict[str, str]] = {
    "aws-config": {},
    "existing-try": {"try-qhub": "try-qhub.yaml", "try-qhub-nfs": ""},
}
FLOW_SECONDS = 240


def test_every_flow_says_what_it_leaves() -> None:
    assert set(LEFTOVERS) == set(docsmd.FLOWS)


def script(flow: str) -> str:
    """The flow's blocks as one bash script, each under a comment naming where it comes from."""
    parts = ["set -euo pipefail"]
    for block in docsmd.flows()[flow]:
        parts += [f"# --- {block.where}", block.text]
    return "\n".join(parts)


def _qhubctl(bin_dir: Path) -> None:
    """`qhubctl` as the installed command would be, running this interpreter on the qhubctl under test."""
    import qhubctl

    package_root = Path(qhubctl.__file__).resolve().parents[1]
    bin_dir.mkdir()
    wrapper = bin_dir / "qhubctl"
    wrapper.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(package_root)!r})\n"
                       "from qhubctl.cli import main\nsys.argv[0] = 'qhubctl'\nsys.exit(main())\n")
    wrapper.chmod(0o755)


def _env(work: Path, cluster: LocalCluster) -> dict[str, str]:
    path = [str(work / "bin"), str(localcluster.bin_dir()), "/usr/local/bin", "/usr/bin", "/bin"]
    return {"PATH": os.pathsep.join(path), "HOME": str(work / "home"), "KUBECONFIG": str(cluster.kubeconfig),
            "QHUB_CACHE": str(localcluster.cache_dir()), "LANG": "C.UTF-8"}


@contextmanager
def _turn(cluster: LocalCluster, flow: str) -> Iterator[None]:
    """One session at a time runs a flow that deploys (the namespaces are the docs', not unique per run)."""
    lock_path = localcluster.cluster_dir(cluster.name).with_name(f"{cluster.name}.docs-{flow}.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _namespaces(cluster: LocalCluster) -> set[str]:
    return set(cluster.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").split())


def _clean(flow: str, work: Path, env: dict[str, str], cluster: LocalCluster) -> None:
    """Remove what the flow made: its release (with its volumes), then its namespaces, and wait until they are gone."""
    leftovers = LEFTOVERS[flow]
    present = _namespaces(cluster) & set(leftovers)
    for config in {leftovers[ns] for ns in present if leftovers[ns] and (work / leftovers[ns]).exists()}:
        subprocess.run(["qhubctl", "destroy", "-c", config, "--yes", "--delete-data"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=180, check=False)
    for ns in present:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
    deadline = time.monotonic() + 120
    while _namespaces(cluster) & set(leftovers) and time.monotonic() < deadline:
        time.sleep(1)


@pytest.mark.parametrize("flow", sorted(docsmd.FLOWS))
def test_flow_runs_as_written(flow: str, cluster: LocalCluster, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "home").mkdir()
    _qhubctl(work / "bin")
    env = _env(work, cluster)
    text = script(flow)
    (work / "flow.sh").write_text(text)
    with _turn(cluster, flow):
        stale = _namespaces(cluster) & set(LEFTOVERS[flow])
        assert not stale, f"namespaces {sorted(stale)} exist before the flow {flow!r} runs: left by another run " \
                          f"(kubectl delete namespace {' '.join(sorted(stale))})"
        start = time.monotonic()
        try:
            done = subprocess.run(["bash", str(work / "flow.sh")], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=FLOW_SECONDS, check=False)
        finally:
            left = _namespaces(cluster) & set(LEFTOVERS[flow])
            _clean(flow, work, env, cluster)
        seconds = time.monotonic() - start
    print(f"docs flow {flow}: {seconds:.1f}s\n{done.stdout}")
    assert done.returncode == 0, f"the docs' flow {flow!r} failed (exit {done.returncode}); its script:\n{text}\n" \
                                 f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert not left, f"the flow {flow!r} ends with the namespaces {sorted(left)} still there: the docs' last " \
                     "commands remove them"
