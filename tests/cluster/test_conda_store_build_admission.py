"""conda-store's build pods against the real API server: the chart's ValidatingAdmissionPolicy admits, from the
worker's ServiceAccount (impersonated with `kubectl --as`), the build pod the worker really makes
(qhub_conda_store.buildpod.pod_manifest over the rendered settings.json), and refuses every pod that strays from
it - a Secret volume, secret env, another image, hostPath, another ServiceAccount, a subPath outside conda-store/
- with the policy's own message; the worker may delete build pods only. A refusal by RBAC or another admission
plugin would not carry the policy's message, so none of these passes by accident."""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from qhubctl.localcluster import LocalCluster, bin_dir

pytestmark = pytest.mark.cluster
REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "conda-store" / "rootfs" / "opt" / "qhub-conda-store"))
from qhub_conda_store import buildpod  # noqa: E402

RELEASE = "qhub"
WORKER = f"{RELEASE}-conda-store-worker"
# the objects the worker's rights and their bounds are made of
OBJECTS = {("ServiceAccount", WORKER), ("Role", WORKER), ("RoleBinding", WORKER),
           ("ServiceAccount", f"{RELEASE}-conda-store-build")}
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir() / "kubectl"), *args], env=cluster.env, input=stdin, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def release(cluster: LocalCluster) -> Iterator[dict[str, Any]]:
    """The chart rendered into a namespace of its own; the worker's and build pods' accounts, the worker's Role
    and the admission policy applied; the rendered settings.json returned."""
    ns = f"csbuild-{uuid.uuid4().hex[:6]}"
    out = subprocess.run([str(bin_dir() / "helm"), "template", RELEASE, str(REPO / "charts" / "qhub"), "-n", ns],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    chosen = [d for d in docs if (d["kind"], d["metadata"]["name"]) in OBJECTS or d["kind"] in POLICY_KINDS]
    assert {(d["kind"], d["metadata"]["name"]) for d in chosen} >= OBJECTS
    assert sorted(d["kind"] for d in chosen if d["kind"] in POLICY_KINDS) == sorted(POLICY_KINDS)
    config = next(d for d in docs
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-conda-store-config")
    assert _kubectl(cluster, "create", "namespace", ns).returncode == 0
    try:
        done = _kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(chosen))
        assert done.returncode == 0, done.stderr
        yield {"ns": ns, "settings": json.loads(config["data"]["settings.json"])["buildPod"]}
    finally:
        for d in chosen:
            if d["kind"] in POLICY_KINDS:
                _kubectl(cluster, "delete", d["kind"], d["metadata"]["name"], "--wait=false")
        _kubectl(cluster, "delete", "namespace", ns, "--wait=false")


def _real_pod(release: dict[str, Any]) -> dict[str, Any]:
    """The pod the worker creates for a build in namespace `alice`."""
    prefix = pathlib.Path(release["settings"]["storeDirectory"]) / "alice" / "0123abcd-20260101-000000-1-env"
    return buildpod.pod_manifest(release["settings"], prefix, "install",
                                 {buildpod.LOCK_ENV: "{}", buildpod.PREFIX_ENV: str(prefix)})


def _as_worker(cluster: LocalCluster, release: dict[str, Any], pod: dict[str, Any]) -> tuple[bool, str]:
    done = _kubectl(cluster, "create", "--dry-run=server", "-n", release["ns"], "-f", "-",
                    f"--as=system:serviceaccount:{release['ns']}:{WORKER}", stdin=json.dumps(pod))
    return done.returncode == 0, done.stderr.strip()


def _policy_active(cluster: LocalCluster, release: dict[str, Any]) -> None:
    """The API server compiles a new policy and its binding in the background: wait until it refuses a pod."""
    stray = _real_pod(release)
    stray["metadata"]["labels"]["app.kubernetes.io/component"] = "other"
    deadline = time.monotonic() + 60
    while True:
        ok, why = _as_worker(cluster, release, stray)
        if not ok and "ValidatingAdmissionPolicy" in why:
            return
        assert time.monotonic() < deadline, f"the policy never refused an unlabelled pod: {ok} {why}"
        time.sleep(1)


def test_the_worker_creates_its_real_build_pod(cluster: LocalCluster, release: dict[str, Any]) -> None:
    _policy_active(cluster, release)
    pod = _real_pod(release)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"].endswith("conda-store-build")
    mounts = spec["containers"][0]["volumeMounts"]
    assert {(m["subPath"], m.get("readOnly", False)) for m in mounts if m["name"] == "store"} == {
        ("conda-store/.pkgs", True), ("conda-store/alice", False)}, mounts
    ok, why = _as_worker(cluster, release, pod)
    assert ok, why


def _secret_volume(pod: dict[str, Any]) -> None:
    pod["spec"]["volumes"].append({"name": "s", "secret": {"secretName": f"{RELEASE}-conda-store"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "s", "mountPath": "/s"})


def _secret_env(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["env"].append(
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": f"{RELEASE}-hub", "key": "token-conda-store"}}})


def _secret_env_from(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": f"{RELEASE}-conda-store"}}]


def _other_image(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["image"] = "busybox:1.36"


def _host_path(pod: dict[str, Any]) -> None:
    pod["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "h", "mountPath": "/host"})


def _other_account(pod: dict[str, Any]) -> None:
    pod["spec"]["serviceAccountName"] = WORKER


def _token_mounted(pod: dict[str, Any]) -> None:
    pod["spec"]["automountServiceAccountToken"] = True


def _home_subpath(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["volumeMounts"][-1]["subPath"] = "home/alice"


def _whole_store(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["volumeMounts"][-1]["subPath"] = "conda-store"


def _artifacts_writable(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["volumeMounts"][-1]["subPath"] = "conda-store/.artifacts"


def _two_namespaces(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "store", "mountPath": "/opt/conda-store/bob", "subPath": "conda-store/bob"})


def _root(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"] = {"runAsNonRoot": False, "runAsUser": 0}


def _host_port(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 8080}]


def _second_container(pod: dict[str, Any]) -> None:
    pod["spec"]["initContainers"] = [copy.deepcopy(pod["spec"]["containers"][0]) | {"name": "init"}]


# how a pod strays -> a word of the policy's message that must name the reason
STRAYS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "secret volume": (_secret_volume, "no secret, projected"),
    "secret env": (_secret_env, "plain values only"),
    "secret envFrom": (_secret_env_from, "plain values only"),
    "another image": (_other_image, "runs the conda-store image"),
    "hostPath": (_host_path, "no secret, projected, configMap or hostPath"),
    "another ServiceAccount": (_other_account, "automountServiceAccountToken false"),
    "token mounted": (_token_mounted, "automountServiceAccountToken false"),
    "home folder": (_home_subpath, "one conda-store namespace folder"),
    "whole store": (_whole_store, "one conda-store namespace folder"),
    "artifacts writable": (_artifacts_writable, "one conda-store namespace folder"),
    "two namespaces": (_two_namespaces, "one conda-store namespace folder at most"),
    "root": (_root, "non-root"),
    "init container": (_second_container, "exactly one container"),
    "host port": (_host_port, "no port on the node"),
}


@pytest.mark.parametrize("stray", sorted(STRAYS))
def test_the_policy_refuses_a_pod_that_strays(cluster: LocalCluster, release: dict[str, Any], stray: str) -> None:
    _policy_active(cluster, release)
    change, reason = STRAYS[stray]
    pod = _real_pod(release)
    change(pod)
    ok, why = _as_worker(cluster, release, pod)
    assert not ok, f"{stray}: admitted"
    assert "ValidatingAdmissionPolicy" in why and reason in why, f"{stray}: {why}"


def test_the_worker_deletes_build_pods_only(cluster: LocalCluster, release: dict[str, Any]) -> None:
    _policy_active(cluster, release)
    ns = release["ns"]
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "not-a-build", "labels": {"app": "x"}},
             "spec": {"nodeSelector": {"qhub.dev/none": "none"},
                      "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    done = _kubectl(cluster, "create", "-n", ns, "-f", "-", stdin=json.dumps(other))
    assert done.returncode == 0, done.stderr
    done = _kubectl(cluster, "delete", "pod", "not-a-build", "-n", ns, "--dry-run=server",
                    f"--as=system:serviceaccount:{ns}:{WORKER}")
    assert done.returncode != 0 and "delete its build pods only" in done.stderr, done.stderr
    # the same pod, as the cluster's admin: the policy binds the worker only
    done = _kubectl(cluster, "delete", "pod", "not-a-build", "-n", ns, "--dry-run=server")
    assert done.returncode == 0, done.stderr
