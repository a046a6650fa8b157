"""The platform image specs under images/: system specs built from Debian, PyPI and npm, the GPU variants too
(their CPU sibling plus CUDA 12 wheels). They load, carry no version of their own (their tag is the chart's
appVersion), pin every Python package with hashes, carry what the chart runs, and the user image and the worker
image agree on every package they share (Dask compares versions across client, scheduler and workers)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from qhubctl.images.spec import published_tag, spec_kind
from qhubctl.images.sysspec import load_system_spec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
PLATFORM = ["jupyterhub", "jupyterlab", "dask-worker", "dask-gateway-server", "traefik", "kubessh", "jitsi-token",
            "conda-store", "nfs-server", "backup"]
# upstream programs built here from their own source, under their own version (not Python images of QHub's)
UPSTREAM_BUILT = ["traefik"]
# built here from Debian packages alone, tagged with the appVersion, with no Python of their own
DEBIAN_ONLY = ["nfs-server", "backup"]
# GPU variant: its CPU sibling (same Debian packages, same Python packages at the same versions, same rootfs files)
GPU = {"jupyterlab-gpu": "jupyterlab", "dask-worker-gpu": "dask-worker"}
# CUDA 12 from PyPI (images/jupyterlab-gpu/cuda.in and what it pulls in); `pynvml` the project is not one of them
CUDA = {"cupy-cuda12x", "cuda-pathfinder", "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvrtc-cu12", "nvidia-cublas-cu12",
        "nvidia-curand-cu12", "nvidia-ml-py"}
# run by qhubctl's one-shot Jobs from the registry and tag of the deployed hub image, not named by the chart
NOT_IN_CHART = ["backup"]
_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", re.M)


def locked(name: str) -> dict[str, str]:
    """{normalised name: version} of images/<name>/requirements.lock."""
    text = (IMAGES / name / "requirements.lock").read_text()
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2) for m in _PIN_RE.finditer(text)}


def app_version() -> str:
    return yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())["appVersion"]


@pytest.mark.parametrize("name", [n for n in PLATFORM + list(GPU) if n not in UPSTREAM_BUILT + DEBIAN_ONLY])
def test_platform_spec_is_a_system_spec_tagged_with_the_app_version(name: str) -> None:
    directory = IMAGES / name
    assert spec_kind(directory) == "system"
    assert not (directory / "environment.yaml").exists()
    spec = load_system_spec(directory)
    assert spec.version == ""  # one place for the tag: the chart's appVersion
    assert published_tag(directory, app_version=app_version()) == f"qhub/{name}:{app_version()}"
    assert spec.user != 0 and spec.home == "/tmp"  # any uid can write its HOME
    assert spec.entrypoint == ["/usr/bin/tini", "-g", "--"]
    assert {"python3", "tini", "ca-certificates", "libstdc++6"} <= set(spec.debian)
    assert spec.pip is not None and spec.pip.prefix == "/opt/venv"
    assert locked(name), "requirements.lock pins nothing"
    # the lock is the one the build recorded
    lock = json.loads((directory / "system.lock.json").read_text())
    assert lock["pip"]["python"] == "3.11"
    assert lock["debian"]["request"] == sorted(spec.debian)


def test_nfs_server_image_has_what_the_nfs_chart_runs() -> None:
    """NFS-Ganesha with its VFS backend from Debian, started with the command the StatefulSet gives it, a shell for
    its init container's chown, and /etc/mtab, where the VFS backend looks up the exported file system."""
    directory = IMAGES / "nfs-server"
    spec = load_system_spec(directory)
    assert spec.version == "" and published_tag(directory, app_version=app_version()) == (
        f"qhub/nfs-server:{app_version()}")
    assert spec.user != 0
    assert {"nfs-ganesha", "nfs-ganesha-vfs", "busybox-static"} <= set(spec.debian)
    lock = json.loads((directory / "system.lock.json").read_text())
    assert lock["debian"]["request"] == sorted(spec.debian)
    packages = {p["name"] for p in lock["debian"]["packages"]}
    assert {"nfs-ganesha", "nfs-ganesha-vfs"} <= packages
    # the Python the chart's volume Job runs its program with (files/nfs_volume.py): Ganesha's packages bring it,
    # and libpython3.11-minimal holds the ssl module it talks to the API server with
    assert {"python3", "libpython3.11-minimal", "libpython3.11-stdlib", "libssl3"} <= packages
    pod = (REPO / "charts/qhub/charts/nfs/templates/volume/_pod.tpl").read_text()
    assert 'image: {{ include "qhub.image" (dict "root" $ "image" .Values.image) }}' in pod
    assert "command: [python3, " in pod
    template = (REPO / "charts/qhub/charts/nfs/templates/server/statefulset.yaml").read_text()
    block = template[template.index("          command:\n            - ganesha.nfsd"):]
    command = re.findall(r"^            - (\S+)$", block.split("\n          ports:")[0], re.M)
    # the chart names the program on PATH; the image runs the same program with the same arguments
    assert spec.entrypoint == ["/usr/bin/ganesha.nfsd"] and command == ["ganesha.nfsd", *spec.cmd]
    assert "- sh\n            - -c\n            - chown" in template
    mtab = directory / "rootfs" / "etc" / "mtab"
    assert mtab.is_symlink() and str(mtab.readlink()) == "/proc/self/mounts"
    values = yaml.safe_load((REPO / "charts/qhub/charts/nfs/values.yaml").read_text())
    assert values["image"]["repository"] == "qhub/nfs-server" and values["image"]["tag"] == ""


def test_backup_image_has_what_the_backup_jobs_run() -> None:
    """restic, PostgreSQL's client for the conda-store database and a Python with sqlite3 for the agent program
    (qhubctl/backup/agent.py, which uses the standard library only)."""
    directory = IMAGES / "backup"
    spec = load_system_spec(directory)
    assert published_tag(directory, app_version=app_version()) == f"qhub/backup:{app_version()}"
    assert spec.user != 0 and spec.entrypoint == ["/usr/bin/python3"]
    assert {"restic", "postgresql-client-15", "python3"} <= set(spec.debian)
    lock = json.loads((directory / "system.lock.json").read_text())
    assert lock["debian"]["request"] == sorted(spec.debian)
    agent = (REPO / "tools/qhubctl/backup/agent.py").read_text()
    imports = set(re.findall(r"^(?:import|from) (\w+)", agent, re.M))
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}, imports


def test_hub_image_has_what_the_chart_runs() -> None:
    spec = load_system_spec(IMAGES / "jupyterhub")
    assert spec.workdir == "/srv/jupyterhub" and spec.cmd == ["jupyterhub"]
    assert "nodejs" in spec.debian and spec.npm is not None
    have = locked("jupyterhub")
    assert have["jupyterhub"] == "6.1.1"
    for package in ("jupyterhub-kubespawner", "oauthenticator", "jupyterhub-nativeauthenticator",
                    "jupyterhub-idle-culler", "psycopg2-binary", "pyyaml"):
        assert package in have, package
    # the authenticators the chart's hub config names come from these packages
    files = REPO / "charts/qhub/charts/jupyterhub/files"
    auth = (files / "qhub_hub_auth.py").read_text()
    modules = set(re.findall(r'"(\w+)\.[\w.]*(?:Authenticator|OAuthenticator)"', auth))
    assert modules == {"jupyterhub", "qhub_hub_native", "oauthenticator"}, modules
    assert "from nativeauthenticator import NativeAuthenticator" in (files / "qhub_hub_native.py").read_text()
    package = json.loads((IMAGES / "jupyterhub" / "npm" / "package-lock.json").read_text())
    chp = package["packages"]["node_modules/configurable-http-proxy"]["version"]
    assert chp.startswith("4."), "configurable-http-proxy 5 needs Node.js >= 20; bookworm has 18"


def test_lab_image_has_what_the_platform_needs() -> None:
    spec = load_system_spec(IMAGES / "jupyterlab")
    assert spec.cmd == ["jupyterhub-singleuser"]
    assert spec.env["SHELL"] == "/bin/bash" and {"bash", "git"} <= set(spec.debian)
    have = locked("jupyterlab")
    assert have["jupyterlab"].startswith("4.")
    for package in ("jupyterhub", "dask", "distributed", "dask-gateway", "dask-labextension", "ipykernel",
                    "numpy", "pandas", "ipywidgets", "jupyter-videochat"):
        assert package in have, package
    assert (IMAGES / "jupyterlab" / "rootfs" / "bin" / "sh").readlink() == Path("bash")


@pytest.mark.parametrize("name", ["jupyterlab", "jitsi-token"])
def test_jupyterhub_is_the_hubs_version_everywhere(name: str) -> None:
    assert locked(name)["jupyterhub"] == locked("jupyterhub")["jupyterhub"]


@pytest.mark.parametrize(("lab_name", "worker_name"), [("jupyterlab", "dask-worker"),
                                                       ("jupyterlab-gpu", "dask-worker-gpu")])
def test_lab_and_worker_lock_shared_packages_identically(lab_name: str, worker_name: str) -> None:
    lab, worker = locked(lab_name), locked(worker_name)
    shared = set(lab) & set(worker)
    assert {"dask", "distributed", "dask-gateway", "cloudpickle", "msgpack", "tornado", "toolz", "lz4", "numpy",
            "pandas", "pyarrow", "bokeh"} <= shared
    if lab_name in GPU:
        assert CUDA <= shared  # a GPU cluster's client, scheduler and workers run the same CuPy
    assert {n: lab[n] for n in shared} == {n: worker[n] for n in shared}
    assert lab["dask"] == lab["distributed"]  # dask and distributed release together
    # and the same Python: both from the same Debian release
    py = {json.loads((IMAGES / n / "system.lock.json").read_text())["pip"]["python"] for n in (lab_name,
                                                                                                worker_name)}
    assert len(py) == 1


def test_worker_provides_the_commands_dask_gateway_runs() -> None:
    bin_dir = IMAGES / "dask-worker" / "rootfs" / "usr" / "local" / "bin"
    for command in ("dask-scheduler", "dask-worker"):  # KubeClusterConfig's default scheduler_cmd / worker_cmd
        script = bin_dir / command
        assert script.stat().st_mode & 0o111, command
        assert script.read_text().startswith("#!/opt/venv/bin/python\n")


def test_gateway_server_has_the_kubernetes_backend() -> None:
    have = locked("dask-gateway-server")
    assert have["dask-gateway-server"] == locked("jupyterlab")["dask-gateway"]
    assert "kubernetes-asyncio" in have


def test_lab_site_packages_match_the_image_python() -> None:
    site = IMAGES / "jupyterlab" / "rootfs" / "opt" / "venv" / "lib"
    assert [p.name for p in site.iterdir()] == ["python3.11"]


def test_conda_store_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qhub_kernels lists every conda-store environment with Python and ipykernel as a kernel."""
    site = IMAGES / "jupyterlab" / "rootfs" / "opt" / "venv" / "lib" / "python3.11" / "site-packages"
    monkeypatch.syspath_prepend(str(site))
    pytest.importorskip("jupyter_client", reason="needs jupyter_client (in the dev environment)")
    import qhub_kernels

    for ns, env, kernel in (("alice", "py", True), ("analysts", "ml", True), ("alice", "r-only", False)):
        prefix = tmp_path / ns / "envs" / env
        (prefix / "bin").mkdir(parents=True)
        if kernel:
            (prefix / "bin" / "python").symlink_to(sys.executable)
            (prefix / "lib" / "python3.12" / "site-packages" / "ipykernel").mkdir(parents=True)
    (tmp_path / "README").write_text("not a namespace")
    # alice's server: her own namespace, and analysts' folder carries the gid of a group she is in (as the hub makes
    # it); what is not offered is tests/unit/test_lab_kernels_closed_namespaces.py's
    os.chown(tmp_path / "analysts", -1, 3001)
    monkeypatch.setattr(qhub_kernels.os, "getgroups", lambda: [os.getgid(), 3001])
    manager = qhub_kernels.CondaStoreKernelSpecManager(conda_store_root=str(tmp_path), user="alice")
    specs = manager.get_all_specs()
    assert {"conda-store-alice-py", "conda-store-analysts-ml"} <= set(specs)
    assert "conda-store-alice-r-only" not in specs
    spec = specs["conda-store-analysts-ml"]["spec"]
    assert spec["argv"][0] == str(tmp_path / "analysts/envs/ml/bin/python")
    assert spec["display_name"] == "ml (analysts)"
    assert spec["env"]["CONDA_PREFIX"] == str(tmp_path / "analysts/envs/ml")
    config = json.loads((site.parents[2] / "etc" / "jupyter" / "jupyter_server_config.json").read_text())
    assert config["ServerApp"]["kernel_spec_manager_class"] == "qhub_kernels.CondaStoreKernelSpecManager"


# --- GPU variants: the CPU sibling plus CUDA 12 from PyPI -------------------------------------------------------

@pytest.mark.parametrize(("name", "sibling"), list(GPU.items()))
def test_gpu_variant_is_its_sibling_plus_cuda(name: str, sibling: str) -> None:
    gpu, cpu = load_system_spec(IMAGES / name), load_system_spec(IMAGES / sibling)
    for attr in ("user", "username", "home", "workdir", "entrypoint", "cmd", "debian"):
        assert getattr(gpu, attr) == getattr(cpu, attr), attr
    assert gpu.env == {**cpu.env, "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
    assert [d.resolve() for d in gpu.rootfs] == [d.resolve() for d in cpu.rootfs]  # the sibling's files, not a copy
    assert gpu.pip is not None and cpu.pip is not None and gpu.pip.prefix == cpu.pip.prefix
    # the same Debian packages at the same versions (one Debian layer for both in a registry)
    gpu_lock, cpu_lock = (json.loads((IMAGES / n / "system.lock.json").read_text()) for n in (name, sibling))
    assert gpu_lock["debian"] == cpu_lock["debian"]
    # every Python package of the sibling at the same version, plus CUDA
    have, base = locked(name), locked(sibling)
    assert {n: have.get(n) for n in base} == base
    assert set(have) - set(base) == CUDA
    assert have["cupy-cuda12x"].startswith("14.") and "pynvml" not in have
    # the sibling's requirements are shared, not copied
    requirements = (IMAGES / name / "requirements.in").read_text()
    assert f"-r ../{sibling}/requirements.in\n" in requirements
    assert re.search(r"^-r (\.\./jupyterlab-gpu/)?cuda\.in$", requirements, re.M)


def test_gpu_images_take_cuda_12_from_one_list() -> None:
    cuda = (IMAGES / "jupyterlab-gpu" / "cuda.in").read_text()
    wanted = {re.split(r"[=<>\s]", line, maxsplit=1)[0] for line in cuda.splitlines() if line and line[0] != "#"}
    assert wanted == CUDA - {"cuda-pathfinder"}  # cupy-cuda12x brings its library loader
    assert "-r ../jupyterlab-gpu/cuda.in" in (IMAGES / "dask-worker-gpu" / "requirements.in").read_text()


def test_docs_and_chart_name_every_platform_image(repo: Path) -> None:
    docs = (repo / "docs" / "images.md").read_text()
    values = "".join(p.read_text() for p in (repo / "charts" / "qhub").rglob("values.yaml"))
    for name in PLATFORM + list(GPU):
        # an upstream program built here keeps its own version as tag; QHub's own images take the appVersion
        version = yaml.safe_load((repo / "images" / name / "image.yaml").read_text()).get("version")
        assert f"| `qhub/{name}:{version or '<appVersion>'}` | `images/{name}/` |" in docs, name
        assert (f"repository: qhub/{name}" in values) == (name not in NOT_IN_CHART), name
    script = (repo / "scripts" / "build_images.sh").read_text()
    assert f'PLATFORM_IMAGES="{" ".join(PLATFORM)}"' in script
    assert f'GPU_IMAGES="{" ".join(GPU)}"' in script
    assert 'words=${IMAGES:-platform gpu}' in script  # the default set: every image the chart names


def test_the_gateway_proxy_runs_the_traefik_this_repo_builds(repo: Path) -> None:
    """The dask-gateway chart names images/traefik's build: same repository, tag = the spec's version."""
    values = yaml.safe_load((repo / "charts" / "qhub" / "charts" / "dask-gateway" / "values.yaml").read_text())
    spec = load_system_spec(IMAGES / "traefik")
    assert values["proxy"]["image"]["repository"] == "qhub/traefik"
    assert values["proxy"]["image"]["tag"] == spec.version
    assert spec.user != 0 and spec.go and spec.go[0].in_module
