"""Each build's install step, and its conda-pack archive, in a pod of its own (docs/conda-store.md).

Installing runs code the user chose (the environment's own pip, and archives whose paths and links decide where
files land); the worker holds the database, Redis and artifact-store credentials and the service token. So the
worker keeps the steps that run no package code - the solve (lock plugin) and the downloads, each checked against
the lock's hash - and hands the rest to a build pod: the conda-store image without any Secret, token or network,
mounting only its conda-store namespace's folder read-write and the package cache read-only. The worker waits
for it, copies its log into the build's log and deletes it; a pod that fails or outlives `timeoutSeconds` fails
the build with the tail of its log.

`register(settings)` replaces conda-store's two actions that run package code (`action_install_lockfile`,
`action_generate_conda_pack`); `settings` is the chart's `buildPod` block of settings.json (the pod template,
with the image, ServiceAccount, placement and limits the chart's admission policy accepts). The pod itself runs
`python3 -m qhub_conda_store.buildpod install|pack`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
from typing import Any, Callable

import requests

from qhub_conda_store import pypi

SA_DIR = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
LOCK_ENV = "QHUB_BUILD_LOCK"
PREFIX_ENV = "QHUB_BUILD_PREFIX"
OUTPUT_ENV = "QHUB_BUILD_OUTPUT"
LOG_TAIL = 3000
COMPONENT = "conda-store-build"  # the build pods' component label (the chart's template sets it)
WORKER_LABEL = "qhub.dev/conda-store-worker"  # the worker pod that made a build pod
SHA256 = re.compile("[0-9a-f]{64}")
URL_CHARS = re.compile(r"[!-\[\]-~]+")  # printable ASCII but space and backslash


class BuildPodError(RuntimeError):
    """A build pod could not be created, failed or ran out of time."""


# -- the worker's side ---------------------------------------------------------------------------------------


class Kube:
    """The few calls the worker makes to the API server, with its own ServiceAccount's token (in-cluster)."""

    def __init__(self, namespace: str | None = None) -> None:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        self.base = f"https://{host}:{port}"
        self.namespace = namespace or (SA_DIR / "namespace").read_text().strip()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        token = (SA_DIR / "token").read_text().strip()  # re-read: the kubelet rotates it
        url = f"{self.base}/api/v1/namespaces/{self.namespace}/pods{path}"
        return requests.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                verify=str(SA_DIR / "ca.crt"), timeout=60, **kwargs)

    def create(self, pod: dict[str, Any]) -> None:
        answer = self._call("POST", "", json=pod)
        if answer.status_code >= 300:
            raise BuildPodError(f"the API server refused build pod {pod['metadata']['name']}: "
                                f"{answer.status_code} {answer.text[:1000]}")

    def phase(self, name: str) -> str:
        answer = self._call("GET", f"/{name}")
        return str(answer.json().get("status", {}).get("phase", "Unknown")) if answer.ok else "Unknown"

    def log(self, name: str) -> str:
        answer = self._call("GET", f"/{name}/log")
        return answer.text if answer.ok else f"(no log: {answer.status_code} {answer.text[:300]})"

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/{name}", params={"gracePeriodSeconds": "0"})

    def exists(self, name: str) -> bool:
        return self._call("GET", f"/{name}").status_code != 404

    def names(self, selector: str) -> dict[str, dict[str, str]]:
        """{name: labels} of the pods matching a label selector."""
        answer = self._call("GET", "", params={"labelSelector": selector})
        answer.raise_for_status()
        return {p["metadata"]["name"]: p["metadata"].get("labels", {}) for p in answer.json()["items"]}


def sweep(kube: Kube, worker: str, log: Callable[[str], None]) -> None:
    """Delete build pods left by a worker that is gone (it died mid-build; conda-store marks that build failed)."""
    for name, labels in kube.names(f"app.kubernetes.io/component={COMPONENT}").items():
        owner = labels.get(WORKER_LABEL, "")
        if owner != worker and (not owner or not kube.exists(owner)):
            log(f"deleting build pod {name} of worker {owner or '?'}, which is gone")
            kube.delete(name)


def namespace_of(prefix: pathlib.Path, store: pathlib.Path) -> str:
    """The conda-store namespace whose folder holds `prefix` (<store>/<namespace>/<build>)."""
    prefix, store = pathlib.Path(os.path.abspath(prefix)), pathlib.Path(os.path.abspath(store))
    if prefix.parent.parent != store or prefix.parent.name.startswith("."):
        raise BuildPodError(f"{prefix} is not <store>/<namespace>/<build> under {store}")
    return prefix.parent.name


def pod_manifest(settings: dict[str, Any], prefix: pathlib.Path, command: str, env: dict[str, str]) -> dict:
    """The build pod: the chart's template, named, with the prefix's namespace folder mounted read-write at the
    same path as in the worker (packages carry their prefix) and the step's command and inputs."""
    store = pathlib.Path(settings["storeDirectory"])
    namespace = namespace_of(prefix, store)
    pod = copy.deepcopy(settings["podTemplate"])
    pod["metadata"]["name"] = f"{settings['namePrefix']}-{uuid.uuid4().hex[:10]}"
    pod["metadata"].setdefault("annotations", {})["qhub.dev/conda-store-prefix"] = str(prefix)
    pod["metadata"].setdefault("labels", {})[WORKER_LABEL] = os.environ.get("HOSTNAME", "")
    container = pod["spec"]["containers"][0]
    container["args"] = [command]
    container["env"] = [*container.get("env", []), *({"name": k, "value": v} for k, v in env.items())]
    container["volumeMounts"] = [*container.get("volumeMounts", []),
                                 {"name": settings["volume"], "mountPath": str(store / namespace),
                                  "subPath": f"{settings['subPath']}/{namespace}"}]
    return pod


def run_pod(kube: Kube, pod: dict[str, Any], timeout: float, log: Callable[[str], None]) -> None:
    """Create the pod, wait for it to finish, copy its log into `log`, delete it; BuildPodError unless it
    succeeded in time."""
    name = pod["metadata"]["name"]
    kube.create(pod)
    log(f"build pod {name} created")
    try:
        deadline, phase = time.monotonic() + timeout, "Pending"
        while phase not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(1)
            phase = kube.phase(name)
        output = kube.log(name)
        for line in output.splitlines():
            log(f"[{name}] {line}")
        if phase != "Succeeded":
            why = "failed" if phase == "Failed" else f"did not finish within {timeout:.0f}s (phase {phase})"
            raise BuildPodError(f"build pod {name} {why}; the end of its log:\n{output[-LOG_TAIL:]}")
        log(f"build pod {name} succeeded")
    finally:
        kube.delete(name)


def fetch_wheels(spec: dict[str, Any], wheels: pathlib.Path, mounted: pathlib.Path) -> dict[str, Any]:
    """The lock with each pip package downloaded by the worker into `wheels` (checked against its sha256) and its
    URL pointing at the copy the build pod sees under `mounted`: the pod has no network. Every pip entry is checked
    (`wheel_source`) before anything is written or downloaded: a lockfile a user uploads skips the lock plugin."""
    local = copy.deepcopy(spec)
    pip = [(package, *wheel_source(package)) for package in local["package"] if package["manager"] == "pip"]
    for package, sha256, filename in pip:
        target = wheels / sha256 / filename
        if not target.is_file():
            download(package, target)
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual != sha256:
            target.unlink()
            raise BuildPodError(f"{filename} has sha256 {actual}, the lock says {sha256}")
        package["url"] = (mounted / sha256 / filename).as_uri()
    return local


def wheel_source(package: dict[str, Any]) -> tuple[str, str]:
    """(sha256, file name) of a locked pip package, or BuildPodError naming it. Only wheels: the pod's
    `pip install --no-deps` of a `name @ URL` line would build a source archive (pip's --only-binary does not cover
    direct references). The sha256 becomes a folder name, so it must be one; the URL must be https on a host of
    the index the lock plugin uses (pypi.FILE_HOSTS): the worker may reach port 443 anywhere, internal services
    too, and an uploaded lock would otherwise choose what it asks for."""
    name, url = package.get("name", "?"), package.get("url")
    again = "lock the environment again (or correct the uploaded lockfile)"
    sha256 = (package.get("hash") or {}).get("sha256")
    if not sha256:
        raise BuildPodError(f"pip package {name} has no sha256 in the lock; {again}")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise BuildPodError(f"pip package {name} is locked with sha256 {sha256!r}, not 64 lower-case hex "
                            f"digits; {again}")
    filename = url.split("#")[0].rsplit("/", 1)[-1] if isinstance(url, str) else ""
    if not filename.endswith(".whl") or "?" in filename:
        raise BuildPodError(f"pip package {name} is locked to {url}, not a wheel (.whl); only wheels are "
                            "installed: lock the package to a wheel or add it from a conda channel")
    if not from_index(url):
        raise BuildPodError(f"pip package {name} is locked to {url}; wheels are downloaded only over https from "
                            f"{', '.join(sorted(pypi.FILE_HOSTS))} (PyPI, the index the lock plugin uses): {again}, "
                            "or add the package from a conda channel")
    return sha256, filename


def from_index(url: str) -> bool:
    """Whether `url` is https on one of pypi.FILE_HOSTS. The host part is compared whole (no user, port or other
    host in it), and a URL with a backslash, space or control character is refused: URL parsers (urllib's here,
    urllib3's in requests) split those differently."""
    if not URL_CHARS.fullmatch(url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return False
    return parts.scheme == "https" and parts.netloc in pypi.FILE_HOSTS


def download(package: dict[str, Any], target: pathlib.Path) -> None:
    """The locked URL (checked by `wheel_source`) into `target`, through a partial file that a failed download
    does not leave behind; BuildPodError naming the package if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{uuid.uuid4().hex[:6]}.part")
    name, url = package.get("name", "?"), package["url"]
    try:
        # no redirects: only the URL checked by from_index is asked
        with requests.get(url, stream=True, timeout=300, allow_redirects=False) as answer:
            if answer.status_code != 200:
                raise BuildPodError(f"pip package {name}: {url} answered {answer.status_code} {answer.reason}; "
                                    "lock the environment again (the wheel may have been removed from the index)")
            with partial.open("wb") as f:
                for chunk in answer.iter_content(1 << 20):  # read errors arrive as requests' own exceptions
                    f.write(chunk)
        partial.replace(target)
    except requests.RequestException as err:
        raise BuildPodError(f"pip package {name}: downloading {url} failed ({err}); check that the worker "
                            "reaches the index, or lock the environment again") from err
    finally:
        partial.unlink(missing_ok=True)  # what a failed download left (after the replace there is none)


def check_prefix(prefix: pathlib.Path) -> None:
    """What the worker reads next (permissions, package list, size) must be a real folder in the namespace's
    folder, not a link the build pod planted towards another namespace."""
    for path in (prefix, prefix / "conda-meta"):
        if path.is_symlink() or not path.is_dir():
            raise BuildPodError(f"the build pod left {path} as something other than a folder")


def take_regular_file(source: pathlib.Path, target: pathlib.Path) -> None:
    """Move a file the build pod wrote to `target`, refusing links and anything but a regular file."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildPodError(f"the build pod left {source} as something other than a file")
        with os.fdopen(fd, "rb", closefd=False) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    finally:
        os.close(fd)
        source.unlink(missing_ok=True)


def register(settings: dict[str, Any]) -> None:
    """Route conda-store's install and conda-pack actions through build pods."""
    from conda_store_server._internal import action

    timeout = float(settings["timeoutSeconds"])
    pkgs = pathlib.Path(settings["pkgsDirectory"])

    @action.action
    def install_lockfile(context: Any, conda_lock_spec: dict, conda_prefix: pathlib.Path) -> None:
        lock = fetch_wheels(conda_lock_spec, pkgs / "wheels", pkgs / "wheels")
        pod = pod_manifest(settings, pathlib.Path(conda_prefix), "install",
                           {LOCK_ENV: json.dumps(lock), PREFIX_ENV: str(conda_prefix)})
        run_pod(Kube(), pod, timeout, context.log.info)
        check_prefix(pathlib.Path(conda_prefix))

    @action.action
    def generate_conda_pack(context: Any, conda_prefix: pathlib.Path, output_filename: pathlib.Path) -> None:
        check_prefix(pathlib.Path(conda_prefix))
        written = pathlib.Path(conda_prefix).parent / f".qhub-pack-{uuid.uuid4().hex[:10]}.tar.gz"
        pod = pod_manifest(settings, pathlib.Path(conda_prefix), "pack",
                           {PREFIX_ENV: str(conda_prefix), OUTPUT_ENV: str(written)})
        run_pod(Kube(), pod, timeout, context.log.info)
        take_regular_file(written, pathlib.Path(output_filename))

    action.action_install_lockfile = install_lockfile
    action.action_generate_conda_pack = generate_conda_pack
    if "conda-store-worker" in pathlib.Path(sys.argv[0]).name:  # the server loads this config too
        try:
            sweep(Kube(), os.environ.get("HOSTNAME", ""), print)
        except (OSError, KeyError, requests.RequestException) as err:
            print(f"could not look for build pods left by a gone worker: {err}", file=sys.stderr)


# -- the build pod's side ------------------------------------------------------------------------------------


def install() -> int:
    """conda-store's own install step (`python -m conda_lock install`) on the lock the worker passed in."""
    lockfile = pathlib.Path("/tmp/conda-lock.yml")
    lockfile.write_text(os.environ[LOCK_ENV])
    command = [sys.executable, "-m", "conda_lock", "install", "--validate-platform", "--log-level", "INFO",
               "--prefix", os.environ[PREFIX_ENV], str(lockfile)]
    print("running", " ".join(command[:-2]), flush=True)
    return subprocess.call(command)


def pack() -> int:
    """conda-pack's archive of the prefix, written where the worker picks it up."""
    import conda_pack

    conda_pack.pack(prefix=os.environ[PREFIX_ENV], output=os.environ[OUTPUT_ENV], ignore_missing_files=True)
    print(f"packed {os.environ[PREFIX_ENV]}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    steps = {"install": install, "pack": pack}
    if len(argv) != 1 or argv[0] not in steps:
        print(f"usage: python3 -m qhub_conda_store.buildpod {'|'.join(steps)}", file=sys.stderr)
        return 2
    return steps[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
