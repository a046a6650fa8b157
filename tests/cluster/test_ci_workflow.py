"""The GitHub workflow `qhubctl init --ci github-actions` writes, run here step by step (tests/cluster/workflowrun.py)
with the local test cluster in place of a cloud: a pull request runs the plan job (validate, deploy --dry-run) and
nothing else, a push to main runs the deploy job, which installs the platform. Every `run:` step runs as written, in
GitHub's shell; `pip install "qhubctl==<version>"` installs exactly the wheel built from this checkout.

What stands in for GitHub, and nothing else (an expression or action not listed fails the run before any step):
- actions/checkout: a copy of the repository the test writes (the config and the generated workflow);
- actions/setup-python: a fresh virtualenv of this Python, first on PATH;
- azure/setup-helm: the pinned helm of $QHUB_CACHE/bin, which must be the version the step asks for;
- the package index: PIP_NO_INDEX and PIP_FIND_LINKS (the built wheel and the offline wheelhouse);
- secrets.QHUB_KUBECONFIG: the local cluster's kubeconfig (self-contained: certificates inline); the OAuth client
  secret: a made-up value;
- github.event_name and github.ref: the event being played.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from distkit import wheelhouse
from typer.testing import CliRunner
from workflowrun import Action, Job, Substitutes, WorkflowError, expressions_in, load, run_event

from qhubctl import __version__, localcluster
from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
NS = f"qhub-wf-{uuid.uuid4().hex[:6]}"
CLIENT_SECRET = "local-oauth-client-secret"
# A deployment's repository: GitHub login (so the workflow carries a secret), volumes of the simulated nodes' class
# (the default local-path class binds only on the real node), only the hub and its storage (the fastest install on
# simulated nodes, where nothing really runs).
CONFIG = f"""\
schema_version: 2
project_name: wfci
namespace: {NS}
release_name: wf
cluster:
  provider: local
auth:
  type: github
  client_id: qhub-ci
  allow_all: true
storage: {{type: nfs, size: 1Gi, disk_storage_class: standard}}
components: {{conda_store: false, jitsi: false, kubessh: false, dask_gateway: false}}
"""


def pinned(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", (REPO / "ci" / "versions.env").read_text(), re.M)
    assert found, f"{name} is not pinned in ci/versions.env"
    return found.group(1)


def checkout(repository: Path) -> Action:
    def action(with_: dict[str, str], job: Job) -> None:
        assert with_ == {}, with_
        shutil.copytree(repository, job.workspace, dirs_exist_ok=True)
    return action


def setup_python(with_: dict[str, str], job: Job) -> None:
    assert set(with_) == {"python-version"}, with_
    venv = job.temp / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    job.add_path(venv / "bin")


def setup_helm(with_: dict[str, str], job: Job) -> None:
    assert with_ == {"version": pinned("HELM_VERSION")}, with_
    bin_dir = job.temp / "helm"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(localcluster.bin_dir() / "helm")
    job.add_path(bin_dir)


def package_index(wheel: Path, dest: Path) -> Path:
    """A folder pip finds packages in: the wheel built from this checkout and qhubctl's dependencies from the
    offline wheelhouse (which may also hold a qhubctl wheel of the same version from an earlier build: left out)."""
    if dest.exists():  # made for an earlier event of the same test
        return dest
    dest.mkdir()
    for found in [wheel, *wheelhouse().glob("*")]:
        if found is wheel or not found.name.startswith(("qhubctl-", ".")):
            (dest / found.name).symlink_to(found)
    return dest


def substitutes(event: str, repository: Path, wheel: Path, cluster: LocalCluster, home: Path) -> Substitutes:
    return Substitutes(
        expressions={
            "github.event_name == 'pull_request'": str(event == "pull_request").lower(),
            "github.event_name == 'push'": str(event == "push").lower(),
            "github.ref": {"pull_request": "refs/pull/1/merge", "push": "refs/heads/main"}[event],
            "secrets.QHUB_KUBECONFIG": cluster.kubeconfig.read_text(),
            "secrets.QHUB_SECRET__AUTH__CLIENT_SECRET": CLIENT_SECRET,
        },
        actions={"actions/checkout@v4": checkout(repository), "actions/setup-python@v5": setup_python,
                 "azure/setup-helm@v4": setup_helm},
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
             "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(package_index(wheel, home.parent / "index")),
             "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


@pytest.fixture(scope="module")
def repository(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The deployment's repository: the config, and the workflow `qhubctl init --ci github-actions` adds to it."""
    repo = tmp_path_factory.mktemp("repository")
    (repo / "qhub-config.yaml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["init", "local", "-o", str(repo / "qhub-config.yaml"), "--ci", "github-actions"])
    assert result.exit_code == 0, result.output
    assert (repo / "qhub-config.yaml").read_text() == CONFIG, "init --ci keeps an existing config"
    yield repo
    CliRunner().invoke(app, ["destroy", "--yes", "--delete-data", "-c", str(repo / "qhub-config.yaml"),
                             "--kubeconfig", str(cluster.kubeconfig)],
                       env={"QHUB_SECRET__auth__client_secret": CLIENT_SECRET})
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false")


def play(event: str, repository: Path, built: tuple[Path, Path], cluster: LocalCluster, tmp: Path) -> list[Job]:
    workflow = load(repository / ".github" / "workflows" / "qhub.yaml")
    (tmp / "home").mkdir()
    return run_event(workflow, event, substitutes(event, repository, built[1], cluster, tmp / "home"), tmp / "runs")


def output(job: Job, step: str) -> str:
    return next(out for label, out in job.outputs if f"({step})" in label)


def installed_from_the_wheel(job: Job, wheel: Path) -> None:
    install = output(job, "run")  # the one unnamed step: pip install "qhubctl==<version>"
    processed = re.search(r"^Processing (\S+/qhubctl-\S+\.whl)", install, re.M)
    assert processed and Path(processed.group(1)).resolve() == wheel.resolve(), install
    assert "Successfully installed" in install and f"qhubctl-{__version__}" in install, install


def release_secrets(cluster: LocalCluster) -> list[str]:
    found = cluster.kubectl("get", "secrets", "-n", NS, "-l", "owner=helm,name=wf", "-o", "json")
    return [s["metadata"]["name"] for s in json.loads(found)["items"]]


def test_a_pull_request_runs_only_the_plan(repository: Path, built: tuple[Path, Path], cluster: LocalCluster,
                                           tmp_path: Path) -> None:
    jobs = play("pull_request", repository, built, cluster, tmp_path)
    assert [j.name for j in jobs] == ["plan"]
    plan, = jobs
    installed_from_the_wheel(plan, built[1])
    assert "qhub-config.yaml: valid (local, project wfci" in output(plan, "Validate")
    planned = output(plan, "Plan")
    assert f"plan: install release wf in namespace {NS} with chart" in planned, planned
    assert release_secrets(cluster) == [], "a plan installs nothing"


def test_a_push_to_main_deploys(repository: Path, built: tuple[Path, Path], cluster: LocalCluster,
                                tmp_path: Path) -> None:
    jobs = play("push", repository, built, cluster, tmp_path)
    assert [j.name for j in jobs] == ["deploy"]
    deploy, = jobs
    installed_from_the_wheel(deploy, built[1])
    assert "deployed revision 1" in output(deploy, "Deploy"), output(deploy, "Deploy")
    assert release_secrets(cluster) == ["sh.helm.release.v1.wf.v1"]
    hub = json.loads(cluster.kubectl("get", "deployment", "wf-hub", "-n", NS, "-o", "json"))
    assert hub["status"].get("readyReplicas") == 1
    # the OAuth client secret came from the repository secret through the workflow's env into the cluster
    stored = json.loads(cluster.kubectl("get", "secret", "wf-qhubctl-secrets", "-n", NS, "-o", "json"))["data"]
    assert base64.b64decode(stored["auth-client-secret"]).decode() == CLIENT_SECRET


def test_an_expression_or_action_without_a_local_value_stops_the_run(repository: Path, built: tuple[Path, Path],
                                                                     cluster: LocalCluster, tmp_path: Path) -> None:
    """The mapping must cover the workflow: a missing entry fails before any step runs, never skips one."""
    workflow = load(repository / ".github" / "workflows" / "qhub.yaml")
    assert "secrets.QHUB_KUBECONFIG" in expressions_in(workflow)
    subs = substitutes("pull_request", repository, built[1], cluster, tmp_path / "home")
    del subs.expressions["secrets.QHUB_KUBECONFIG"]
    with pytest.raises(WorkflowError, match=r"no local value for the expressions \['secrets.QHUB_KUBECONFIG'\]"):
        run_event(workflow, "pull_request", subs, tmp_path / "runs")
    assert not (tmp_path / "runs").exists(), "no step ran"
    subs = substitutes("pull_request", repository, built[1], cluster, tmp_path / "home")
    del subs.actions["azure/setup-helm@v4"]
    with pytest.raises(WorkflowError, match="no local equivalent of azure/setup-helm@v4"):
        run_event(workflow, "pull_request", subs, tmp_path / "runs2")
    # a failing command fails its step (bash -e) although the script goes on: the step after the set-up actions
    steps = workflow["jobs"]["plan"]["steps"]
    first_run = next(i for i, step in enumerate(steps) if "run" in step)
    steps[first_run]["run"] = "false\necho never"
    with pytest.raises(WorkflowError, match=r"exited 1:\nfalse\necho never"):
        run_event(workflow, "pull_request", substitutes("pull_request", repository, built[1], cluster,
                                                        tmp_path / "home"), tmp_path / "runs3")
