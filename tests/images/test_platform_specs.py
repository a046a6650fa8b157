"""The platform image specs under images/: they load, their pins parse, they carry what the chart expects, and the
user image and the worker images agree on every package they share (Dask compares versions across them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from qhubctl.images.solve import parse_specs
from qhubctl.images.spec import load_spec
from qhubctl.proc import run

pytestmark = pytest.mark.unit

IMAGES = Path(__file__).resolve().parents[2] / "images"
PLATFORM = ["jupyterhub", "jupyterlab", "jupyterlab-gpu", "dask-worker", "dask-worker-gpu", "dask-gateway-server",
            "kubessh", "jitsi-token"]


def pins(name: str) -> dict[str, str]:
    spec = load_spec(IMAGES / name)
    return {m.name.normalized: dep for m, dep in zip(parse_specs(spec.dependencies), spec.dependencies, strict=True)}


@pytest.mark.parametrize("name", PLATFORM)
def test_platform_spec_loads(name: str) -> None:
    spec = load_spec(IMAGES / name)
    assert spec.channels == ["conda-forge"]
    assert spec.image.user == 1000 and spec.image.base == "glibc"
    assert spec.image.entrypoint[:3] == ["/opt/conda/bin/tini", "-g", "--"]
    assert "tini" in pins(name) and "python" in pins(name)


@pytest.mark.parametrize("name", ["jupyterlab", "jupyterlab-gpu"])
def test_lab_has_what_the_platform_needs(name: str) -> None:
    have = pins(name)
    for package in ("jupyterlab", "jupyterhub-base", "dask-gateway", "nb_conda_kernels", "conda", "jupyter-videochat"):
        assert package in have, package
    assert load_spec(IMAGES / name).image.cmd == ["jupyterhub-singleuser"]


@pytest.mark.parametrize(("lab", "worker"), [("jupyterlab", "dask-worker"), ("jupyterlab-gpu", "dask-worker-gpu"),
                                             ("jupyterlab", "dask-worker-gpu")])
def test_lab_and_worker_pin_shared_packages_identically(lab: str, worker: str) -> None:
    a, b = pins(lab), pins(worker)
    shared = set(a) & set(b)
    assert {"python", "dask", "distributed", "cloudpickle", "msgpack-python", "tornado"} <= shared
    assert {n: a[n] for n in shared} == {n: b[n] for n in shared}
    assert a["dask"].endswith("==" + a["distributed"].split("==")[1])  # dask and distributed release together


@pytest.mark.parametrize("name", ["jupyterlab-gpu", "dask-worker-gpu"])
def test_gpu_variants(name: str) -> None:
    spec = load_spec(IMAGES / name)
    assert spec.image.cuda
    assert spec.image.env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "cuda-version" in pins(name) and "cupy" in pins(name)
    cpu = pins(name.removesuffix("-gpu"))
    assert {n: d for n, d in pins(name).items() if n in cpu} == cpu  # the CPU image plus GPU packages


def test_lab_kernel_config_and_conda_store_hook(tmp_path: Path) -> None:
    rootfs = IMAGES / "jupyterlab" / "rootfs" / "opt" / "conda" / "etc"
    config = json.loads((rootfs / "jupyter" / "jupyter_server_config.d" / "qhub-kernels.json").read_text())
    assert config["ServerApp"]["kernel_spec_manager_class"] == "nb_conda_kernels.CondaKernelSpecManager"
    assert (IMAGES / "jupyterlab-gpu" / "rootfs").resolve() == (IMAGES / "jupyterlab" / "rootfs").resolve()

    # The activation hook, pointed at a fake conda-store mount, lists every namespace's envs folder.
    store = tmp_path / "conda-store"
    for ns in ("alice", "analysts"):
        (store / ns / "envs" / "py").mkdir(parents=True)
    (store / "README").write_text("not a namespace")
    hook = (rootfs / "conda" / "activate.d" / "qhub-conda-store.sh").read_text().replace("/opt/conda-store", str(store))
    script = tmp_path / "hook.sh"
    script.write_text(hook + '\nprintf "%s" "$CONDA_ENVS_PATH"\n')
    out = run([shutil.which("sh") or "/bin/sh", script], env={"CONDA_ENVS_PATH": "/pre"}).stdout
    assert out == f"/pre:{store}/alice/envs:{store}/analysts/envs"


def test_environment_files_are_plain_conda_files() -> None:
    """conda and mamba read these files too: only the keys they know."""
    for name in PLATFORM:
        data = yaml.safe_load((IMAGES / name / "environment.yaml").read_text())
        assert set(data) == {"name", "channels", "dependencies"}, name
        assert data["name"] == f"qhub-{name}"


def test_docs_and_chart_name_every_platform_image(repo: Path) -> None:
    docs = (repo / "docs" / "images.md").read_text()
    values = "".join(p.read_text() for p in (repo / "charts" / "qhub").rglob("values.yaml"))
    for name in PLATFORM:
        assert f"| `qhub/{name}:<appVersion>` | `images/{name}/` |" in docs, name
        assert f"repository: qhub/{name}" in values, name
    assert "qhub/jupyterlab-gpu" in values
