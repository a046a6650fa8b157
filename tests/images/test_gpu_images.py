"""The GPU images (images/jupyterlab-gpu, images/dask-worker-gpu), built from Debian and PyPI, pushed to the test
registry and run on the test dockerd as the chart runs the others (platformkit.ANY_UID). This machine has no GPU and
no NVIDIA driver, which is what the checks rely on: CuPy imports and finds every CUDA library of the wheels without
LD_LIBRARY_PATH, NVRTC compiles a kernel (with CuPy's headers and the CUDA runtime wheel's) to PTX, and what needs
the driver fails with CUDA's and NVML's own "no driver" errors, never with a missing library.

Each image is built once per run with the user's $QHUB_CACHE: warm, its layers come from the cache.
"""

from __future__ import annotations

import json

import pytest
import requests
from platformkit import build_push_pull, library_check, run_as_any_uid

pytestmark = pytest.mark.images

GPU = {"jupyterlab-gpu": "jupyterlab", "dask-worker-gpu": "dask-worker"}  # GPU image: its CPU sibling
# The wheels' libraries CuPy loads through cuda-pathfinder (docs/images.md: the CUDA set of the GPU images).
CUDA_LIBS = ["cudart", "nvrtc", "cublas", "curand"]
# Libraries some CuPy modules link to that the images leave out on purpose (cuFFT, cuSOLVER, cuSPARSE, cuTENSOR,
# NCCL; docs/images.md says how to add them): the only ones the library check may find missing.
LEFT_OUT = {"libcufft.so.11", "libcusolver.so.11", "libcusparse.so.12", "libcutensor.so.2", "libnccl.so.2"}
# CUDA's answers when there is no driver (libcuda absent) or no device
NO_DRIVER = {35: "cudaErrorInsufficientDriver", 100: "cudaErrorNoDevice"}

PROBE = r"""
import json
import cupy
from cuda.pathfinder import load_nvidia_dynamic_lib
from cupy._core.core import assemble_cupy_compiler_options
from cupy.cuda import nvrtc, runtime
from cupy_backends.cuda.libs import cublas, curand  # noqa: F401 - import fails if their libraries are not found
import pynvml

out = {"cupy": cupy.__version__, "nvrtc": list(nvrtc.getVersion())}
out["libs"] = {n: load_nvidia_dynamic_lib(n).abs_path for n in %(libs)r}
source = '''
#include <cuda_fp16.h>
#include <cupy/complex.cuh>
extern "C" __global__ void scale(const __half* x, thrust::complex<float>* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = thrust::complex<float>(a * __half2float(x[i]), 0.0f);
}
'''
program = nvrtc.createProgram(source, "scale.cu", (), ())
try:
    nvrtc.compileProgram(program, assemble_cupy_compiler_options(("-arch=compute_75",)))
except nvrtc.NVRTCError:
    raise SystemExit(nvrtc.getProgramLog(program))
ptx = nvrtc.getPTX(program).decode()
out["ptx"] = [line.strip() for line in ptx.splitlines() if line.startswith((".target", ".visible .entry"))]
try:
    runtime.getDeviceCount()
    out["device"] = "found"
except runtime.CUDARuntimeError as exc:
    out["device"] = [exc.status, str(exc)]
try:
    pynvml.nvmlInit()
    out["nvml"] = "found"
except pynvml.NVMLError as exc:
    out["nvml"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
""" % {"libs": CUDA_LIBS}

# Every shared library of the venv loads once CuPy has loaded the CUDA libraries it finds itself (the wheels' own
# modules name them without a path): prints the sonames that could not be found.
SO_CHECK = library_check("""
import cupy
from cupy.cuda import nvrtc
from cupy_backends.cuda.libs import cublas, curand
nvrtc.getVersion()
""")
DASK = ("import sys, dask, distributed, dask_gateway, numpy; print(sys.version_info[:2], dask.__version__, "
        "distributed.__version__, dask_gateway.__version__, numpy.__version__)")


@pytest.fixture(scope="session")
def gpu_images(tmp_path_factory: pytest.TempPathFactory, registry, docker) -> dict[str, str]:  # noqa: ANN001
    """{name: pullable reference} of both GPU images, built, pushed and pulled once."""
    return build_push_pull(list(GPU), tmp_path_factory.mktemp("gpu-specs"), registry.host, docker,
                           siblings=tuple(GPU.values()))


@pytest.mark.parametrize("name", list(GPU))
def test_gpu_image_compiles_with_nvrtc_and_reports_no_driver(name: str, gpu_images: dict[str, str],
                                                             docker) -> None:  # noqa: ANN001
    out = run_as_any_uid(docker, gpu_images[name], "python", "-c", PROBE)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["cupy"].startswith("14.") and result["nvrtc"][0] == 12, result
    for lib, path in result["libs"].items():  # from the wheels, found by CuPy's loader (no LD_LIBRARY_PATH)
        assert path.startswith("/opt/venv/lib/python3.11/site-packages/nvidia/"), (lib, path)
    assert result["ptx"] == [".target sm_75", ".visible .entry scale("], result["ptx"]
    status, message = result["device"]
    assert status in NO_DRIVER and NO_DRIVER[status] in message, result["device"]
    assert result["nvml"] == ["NVMLError_LibraryNotFound", "NVML Shared Library Not Found"], result["nvml"]


@pytest.mark.parametrize("name", list(GPU))
def test_gpu_image_runs_as_any_uid_with_every_library(name: str, gpu_images: dict[str, str],
                                                      docker) -> None:  # noqa: ANN001
    out = run_as_any_uid(docker, gpu_images[name], "sh", "-c", 'id -u; python -c "$0"', SO_CHECK)
    uid, *missing = out.split()
    assert uid == "12345" and set(missing) <= LEFT_OUT, out
    config = json.loads(docker("image", "inspect", gpu_images[name]))[0]["Config"]
    assert config["User"] == "1000:1000" and "HOME=/tmp" in config["Env"]
    assert {"NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"} <= set(config["Env"])
    assert not any(e.startswith("LD_LIBRARY_PATH=") for e in config["Env"])


def test_gpu_lab_and_worker_run_the_same_dask_and_the_commands(gpu_images: dict[str, str],
                                                               docker) -> None:  # noqa: ANN001
    lab = run_as_any_uid(docker, gpu_images["jupyterlab-gpu"], "python", "-c", DASK)
    worker = run_as_any_uid(docker, gpu_images["dask-worker-gpu"], "python", "-c", DASK)
    assert lab == worker
    assert run_as_any_uid(docker, gpu_images["jupyterlab-gpu"], "jupyterhub-singleuser", "--version").strip() == (
        "6.1.1")
    for command in ("dask-scheduler", "dask-worker"):  # the sibling's rootfs/ (Dask-Gateway's default commands)
        assert "Usage:" in run_as_any_uid(docker, gpu_images["dask-worker-gpu"], command, "--help"), command


def test_both_gpu_images_carry_cudas_wheels_as_one_blob(gpu_images: dict[str, str]) -> None:
    """pip.shared_layer: CUDA's wheels, CuPy and its loader are the same layer blob in both images (as the registry
    lists them), so a node running a GPU lab and GPU workers downloads them once."""
    layers = {}
    for name, ref in gpu_images.items():
        host, path = ref.split("/", 1)
        repo, tag = path.rsplit(":", 1)
        r = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", timeout=30,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                           "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 200, (ref, r.status_code, r.text[:300])
        layers[name] = {layer["digest"]: layer["size"] for layer in r.json()["layers"]}
    shared = set(layers["jupyterlab-gpu"]) & set(layers["dask-worker-gpu"])
    assert shared, "the GPU images share no layer"
    size = max(layers["jupyterlab-gpu"][d] for d in shared)
    total = {name: sum(sizes.values()) for name, sizes in layers.items()}
    assert size > 0.5 * min(total.values()), f"the shared layer is {size / 2**20:.0f} MiB of {total}"
    print(f"\n[images] GPU images share a {size / 2**20:.0f} MiB layer (lab {total['jupyterlab-gpu'] / 2**20:.0f} MiB,"
          f" worker {total['dask-worker-gpu'] / 2**20:.0f} MiB compressed)")
