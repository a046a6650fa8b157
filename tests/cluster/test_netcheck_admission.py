"""`qhubctl check` against the real API server: the canary pod is admitted by Pod Security `restricted` (and the
same pod without its seccomp profile is not, so the admission check is not vacuous); without a deployed release
the check stops before creating anything, naming what is missing."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl.cli import app
from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.localcluster import LocalCluster, bin_dir
from qhubctl.netcheck import canary_pod, targets
from qhubctl.podsecurity import PREFIX
from qhubctl.proc import run

pytestmark = pytest.mark.cluster
RAW = {"schema_version": SCHEMA_VERSION, "project_name": "netcheck", "cluster": {"provider": "local"},
       "auth": {"type": "dummy", "users": {"demo": {}}},
       "storage": {"type": "existing", "storage_class": "local-path"}}  # the storage part of the check passes


@pytest.fixture
def restricted_ns(cluster: LocalCluster) -> Iterator[str]:
    ns = f"netcheck-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, f"{PREFIX}/enforce=restricted")
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _admitted(cluster: LocalCluster, pod: dict, ns: str) -> tuple[bool, str]:
    result = run([str(bin_dir() / "kubectl"), "create", "--dry-run=server", "-n", ns, "-f", "-"], env=cluster.env,
                 input=json.dumps(pod), check=False, timeout=60)
    return result.ok, result.stderr.strip()


def test_canary_is_admitted_under_restricted(cluster: LocalCluster, restricted_ns: str) -> None:
    cfg = parse_config({**RAW, "namespace": restricted_ns}, environ={})
    placement = {"nodeSelector": {"qhub.dev/node-group": "general"},
                 "tolerations": [{"key": "qhub.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]}
    pod = canary_pod(cfg, "qhub-netcheck-test", "127.0.0.1:5001/qhub/jupyterhub:0.1.0", placement,
                     targets(cfg, ("10.96.0.10", 8081), ("10.96.0.11", 80)))
    ok, why = _admitted(cluster, pod, restricted_ns)
    assert ok, why
    loose = copy.deepcopy(pod)
    del loose["spec"]["securityContext"]["seccompProfile"]
    ok, why = _admitted(cluster, loose, restricted_ns)
    assert not ok and "seccompProfile" in why, why


def test_check_without_a_release_names_what_is_missing(cluster: LocalCluster, restricted_ns: str,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump({**RAW, "namespace": restricted_ns, "release_name": "absent"}))
    result = CliRunner().invoke(app, ["check", "-c", str(config), "--kubeconfig", str(cluster.kubeconfig)],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert f"release absent in {restricted_ns} has no NetworkPolicy absent-singleuser" in result.output
    assert "qhubctl deploy" in result.output and "Traceback" not in result.output
    pods = json.loads(cluster.kubectl("get", "pods", "-n", restricted_ns, "-o", "json"))["items"]
    assert pods == [], "nothing was started"
