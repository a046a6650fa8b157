"""qhub_conda_store.buildpod (images/conda-store), the worker's half of build pods, without an API server: the pod
it makes from the chart's template, how it follows and removes it, and what it refuses to trust of what the pod
left behind (links out of the namespace folder, wheels whose hash does not match the lock)."""

from __future__ import annotations

import copy
import hashlib
import pathlib
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.unit
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "images" / "conda-store" / "rootfs" / "opt"
                       / "qhub-conda-store"))
from qhub_conda_store import buildpod  # noqa: E402

TEMPLATE = {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app.kubernetes.io/component": "b"}},
            "spec": {"containers": [{"name": "build", "env": [{"name": "HOME", "value": "/tmp"}],
                                     "volumeMounts": [{"name": "store", "mountPath": "/opt/conda-store/.pkgs",
                                                       "subPath": "conda-store/.pkgs", "readOnly": True}]}]}}
SETTINGS = {"storeDirectory": "/opt/conda-store", "volume": "store", "subPath": "conda-store",
            "namePrefix": "qhub-conda-store-build", "podTemplate": TEMPLATE}


def test_the_pod_writes_only_its_namespace_folder_at_the_workers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "worker-1")
    before = copy.deepcopy(TEMPLATE)
    prefix = pathlib.Path("/opt/conda-store/analysts/abc-1-env")
    pod = buildpod.pod_manifest(SETTINGS, prefix, "install", {buildpod.PREFIX_ENV: str(prefix)})
    assert TEMPLATE == before, "the template is not changed"
    assert pod["metadata"]["name"].startswith("qhub-conda-store-build-")
    assert pod["metadata"]["annotations"] == {"qhub.dev/conda-store-prefix": str(prefix)}
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/component": "b", buildpod.WORKER_LABEL: "worker-1"}
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["install"]
    assert container["env"][-1] == {"name": buildpod.PREFIX_ENV, "value": str(prefix)}
    assert container["volumeMounts"][-1] == {"name": "store", "mountPath": "/opt/conda-store/analysts",
                                             "subPath": "conda-store/analysts"}
    other = buildpod.pod_manifest(SETTINGS, prefix, "install", {})
    assert other["metadata"]["name"] != pod["metadata"]["name"]


@pytest.mark.parametrize("prefix", ["/opt/conda-store/.pkgs/x", "/opt/conda-store/a/b/c", "/elsewhere/a/b",
                                    "/opt/conda-store/x"])
def test_a_prefix_outside_a_namespace_folder_is_refused(prefix: str) -> None:
    with pytest.raises(buildpod.BuildPodError, match="is not <store>/<namespace>/<build>"):
        buildpod.namespace_of(pathlib.Path(prefix), pathlib.Path("/opt/conda-store"))


class FakeKube:
    def __init__(self, phases: list[str], log: str) -> None:
        self.phases, self.text, self.calls = phases, log, []  # type: ignore[var-annotated]

    def create(self, pod: dict[str, Any]) -> None:
        self.calls.append(("create", pod["metadata"]["name"]))

    def phase(self, name: str) -> str:
        return self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]

    def log(self, name: str) -> str:
        return self.text

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))


def _pod() -> dict[str, Any]:
    return {"metadata": {"name": "p1"}}


def test_a_pod_that_succeeds_has_its_log_copied_and_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildpod.time, "sleep", lambda _: None)
    kube, lines = FakeKube(["Pending", "Running", "Succeeded"], "linked 3 packages\n"), []
    buildpod.run_pod(kube, _pod(), 60, lines.append)  # type: ignore[arg-type]
    assert "[p1] linked 3 packages" in lines and lines[-1] == "build pod p1 succeeded"
    assert kube.calls == [("create", "p1"), ("delete", "p1")]


def test_a_failed_pod_fails_the_build_with_its_log_tail_and_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildpod.time, "sleep", lambda _: None)
    kube = FakeKube(["Running", "Failed"], "x" * 5000 + "\nconda create: a.conda has sha256 1, the lockfile says 2")
    with pytest.raises(buildpod.BuildPodError, match="build pod p1 failed") as err:
        buildpod.run_pod(kube, _pod(), 60, lambda _: None)  # type: ignore[arg-type]
    assert str(err.value).endswith("the lockfile says 2") and len(str(err.value)) < 3200
    assert kube.calls[-1] == ("delete", "p1")


def test_a_pod_that_runs_too_long_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr(buildpod.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(buildpod.time, "sleep", lambda _: None)
    kube = FakeKube(["Running"], "")
    with pytest.raises(buildpod.BuildPodError, match="did not finish within 60s"):
        buildpod.run_pod(kube, _pod(), 60, lambda _: None)  # type: ignore[arg-type]
    assert kube.calls[-1] == ("delete", "p1")


def _lock(sha256: str) -> dict[str, Any]:
    return {"package": [{"name": "python", "manager": "conda", "url": "https://c/python.conda"},
                        {"name": "rich", "manager": "pip",
                         "url": "https://files.pythonhosted.org/packages/ab/cd/rich-13-py3-none-any.whl",
                         "hash": {"sha256": sha256}}]}


def test_wheels_are_checked_and_handed_to_the_pod_as_local_files(tmp_path: pathlib.Path) -> None:
    content = b"wheel bytes"
    sha = hashlib.sha256(content).hexdigest()
    (tmp_path / sha).mkdir()
    (tmp_path / sha / "rich-13-py3-none-any.whl").write_bytes(content)  # downloaded before: no network here
    lock = _lock(sha)
    local = buildpod.fetch_wheels(lock, tmp_path, pathlib.Path("/opt/conda-store/.pkgs/wheels"))
    assert local["package"][1]["url"] == f"file:///opt/conda-store/.pkgs/wheels/{sha}/rich-13-py3-none-any.whl"
    assert local["package"][0] == lock["package"][0] and lock["package"][1]["url"].startswith("https://")


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused_and_dropped(tmp_path: pathlib.Path) -> None:
    sha = hashlib.sha256(b"expected").hexdigest()
    (tmp_path / sha).mkdir()
    wheel = tmp_path / sha / "rich-13-py3-none-any.whl"
    wheel.write_bytes(b"tampered")
    with pytest.raises(buildpod.BuildPodError, match="the lock says"):
        buildpod.fetch_wheels(_lock(sha), tmp_path, tmp_path)
    assert not wheel.exists()


def test_what_the_pod_left_is_trusted_only_as_real_folders_and_files(tmp_path: pathlib.Path) -> None:
    elsewhere = tmp_path / "other-namespace" / "env"
    (elsewhere / "conda-meta").mkdir(parents=True)
    (tmp_path / "secret").write_text("not for this namespace")
    ns = tmp_path / "alice"
    ns.mkdir()
    (ns / "build").symlink_to(elsewhere)
    with pytest.raises(buildpod.BuildPodError, match="other than a folder"):
        buildpod.check_prefix(ns / "build")
    buildpod.check_prefix(elsewhere)
    (ns / "pack.tar.gz").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError):  # O_NOFOLLOW: a link is not opened at all
        buildpod.take_regular_file(ns / "pack.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (ns / "real.tar.gz").write_bytes(b"archive")
    buildpod.take_regular_file(ns / "real.tar.gz", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"archive" and not (ns / "real.tar.gz").exists()


def test_build_pods_of_a_gone_worker_are_swept_and_live_workers_pods_kept() -> None:
    kube = FakeKube(["Running"], "")
    pods = {"b-mine": "w-me", "b-live": "w-live", "b-gone": "w-gone", "b-unlabelled": ""}
    labelled = {n: ({buildpod.WORKER_LABEL: w} if w else {}) for n, w in pods.items()}
    kube.names = lambda selector: labelled  # type: ignore[method-assign]
    kube.exists = lambda name: name in ("w-me", "w-live")  # type: ignore[method-assign]
    said: list[str] = []
    buildpod.sweep(kube, "w-me", said.append)  # type: ignore[arg-type]
    assert sorted(n for verb, n in kube.calls if verb == "delete") == ["b-gone", "b-unlabelled"]
    assert len(said) == 2
