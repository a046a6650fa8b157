"""The platform images built from their specs (images/<name>), pushed to Debian's docker-registry on loopback and
run on Debian's dockerd the way the chart runs them: as an arbitrary uid (12345, in no /etc/passwd), read-only
root filesystem, every capability dropped, no network.

The images are built once per session, with the user's $QHUB_CACHE (a warm rebuild takes seconds; a cold one
downloads Debian, PyPI and npm packages). The spec directories are copied first: a build must not touch the
repository (platformkit.py). The GPU variants have their own module (test_gpu_images.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from platformkit import ANY_UID, build_push_pull, library_check, run_as_any_uid

pytestmark = pytest.mark.images

PLATFORM = ["jupyterhub", "jupyterlab", "dask-worker", "dask-gateway-server", "kubessh", "jitsi-token"]
SO_CHECK = library_check()  # every shared library of the venv loads


@pytest.fixture(scope="session")
def platform_images(tmp_path_factory: pytest.TempPathFactory, registry, docker) -> dict[str, str]:  # noqa: ANN001
    """{name: pullable reference} of every platform image, built, pushed and pulled once."""
    return build_push_pull(PLATFORM, tmp_path_factory.mktemp("platform-specs"), registry.host, docker)


@pytest.mark.parametrize("name", PLATFORM)
def test_runs_as_any_uid_with_every_library(name: str, platform_images: dict[str, str],
                                            docker) -> None:  # noqa: ANN001
    out = run_as_any_uid(docker, platform_images[name], "sh", "-c", 'id -u; python -c "$0"', SO_CHECK)
    assert out.split() == ["12345"], f"uid, then the libraries not found: {out}"
    config = json.loads(docker("image", "inspect", platform_images[name]))[0]["Config"]
    assert config["User"] == "1000:1000" and "HOME=/tmp" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.version"] == "0.0.0-test"


@pytest.mark.parametrize("name", PLATFORM)
def test_trusts_the_certificate_authorities_of_ca_certificates(name: str, platform_images: dict[str, str],
                                                                docker) -> None:  # noqa: ANN001
    """OpenSSL's default store holds the CAs: an OAuth login to GitHub, a conda channel or an S3 endpoint over HTTPS
    verifies (the bundle is what ca-certificates' install script would write, which unpacking alone does not)."""
    out = run_as_any_uid(docker, platform_images[name], "python", "-c",
                         "import ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'])")
    assert int(out.strip()) > 100, out


def test_hub_and_proxy_serve_as_any_uid(platform_images: dict[str, str], docker,  # noqa: ANN001
                                        tmp_path: Path) -> None:
    """The hub starts its proxy (configurable-http-proxy on PATH), serves its API, login page and static files."""
    ref = platform_images["jupyterhub"]
    assert run_as_any_uid(docker, ref, "jupyterhub", "--version").strip() == "6.1.1"
    assert run_as_any_uid(docker, ref, "configurable-http-proxy", "--version").strip().startswith("4.")
    run_as_any_uid(docker, ref, "python", "-c", "import kubespawner, oauthenticator.github, oauthenticator.generic, "
                   "nativeauthenticator, jupyterhub_idle_culler, psycopg2, yaml, "
                   "jupyterhub.authenticators.shared")
    data = tmp_path / "srv"  # the hub's working directory is a volume in the chart, writable by its uid
    data.mkdir()
    os.chmod(data, 0o1777)
    script = (
        "jupyterhub --JupyterHub.authenticator_class=dummy --JupyterHub.spawner_class=simple --ip=127.0.0.1 "
        "--port=8000 >/tmp/hub.log 2>&1 & "
        "for i in $(seq 120); do wget -qO- http://127.0.0.1:8000/hub/api && break; sleep 0.5; done; echo; "
        "wget -qO- http://127.0.0.1:8000/hub/login | grep -c '<title>JupyterHub'; "
        "wget -qO- http://127.0.0.1:8000/hub/static/css/style.min.css | grep -c Bootstrap"
    )
    out = run_as_any_uid(docker, ref, "sh", "-c", script, mounts=(f"{data}:/srv/jupyterhub",))
    lines = out.split("\n")
    assert json.loads(lines[0]) == {"version": "6.1.1"}, out
    assert lines[1] == "1" and int(lines[2]) >= 1, out


def test_lab_serves_with_extensions_and_conda_store_kernels(platform_images: dict[str, str], docker,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    ref = platform_images["jupyterlab"]
    store = tmp_path / "conda-store"  # a conda-store environment with Python and ipykernel, as mounted
    env = store / "alice" / "envs" / "py"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to("/opt/venv/bin/python")
    (env / "lib" / "python3.11" / "site-packages" / "ipykernel").mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o1777)
    probe = (
        "import json, urllib.request\n"
        "def get(p):\n"
        "    r = urllib.request.Request('http://127.0.0.1:8888' + p, headers={'Authorization': 'token t'})\n"
        "    return urllib.request.urlopen(r).read()\n"
        "print(json.dumps({'kernels': sorted(json.loads(get('/api/kernelspecs'))['kernelspecs']),\n"
        "    'lab': b'JupyterLab' in get('/lab'),\n"
        "    'extensions': sorted(e['name'] for e in json.loads(get('/lab/api/extensions')))}))\n"
    )
    (tmp_path / "probe.py").write_text(probe)
    os.chmod(tmp_path, 0o755)  # mounted at /check for uid 12345
    script = (
        "python -c 'import dask, distributed, dask_gateway, numpy, pandas, pyarrow, ipykernel'; "
        "jupyterhub-singleuser --version; git --version >/dev/null; "
        "jupyter lab --no-browser --ip 127.0.0.1 --port 8888 --IdentityProvider.token=t >/tmp/lab.log 2>&1 & "
        "for i in $(seq 240); do "
        "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api')\" 2>/dev/null "
        "&& break; sleep 0.5; done; python /check/probe.py || cat /tmp/lab.log"
    )
    # JUPYTERHUB_USER as the spawner sets it: qhub_kernels offers the user's own namespace (and global, groups')
    out = docker("run", "--rm", *ANY_UID, "-e", "HOME=/home/alice", "-e", "JUPYTERHUB_USER=alice",
                 "-v", f"{home}:/home/alice",
                 "-v", f"{store}:/opt/conda-store:ro", "-v", f"{tmp_path}:/check:ro", ref, "sh", "-c", script,
                 timeout=300)
    lines = out.strip().splitlines()
    assert lines[0] == "6.1.1", out
    result = json.loads(lines[-1])
    assert result["lab"] and result["kernels"] == ["conda-store-alice-py", "python3"], out
    assert {"dask-labextension", "jupyter-widgets-jupyterlab-manager", "jupyterlab-videochat"} <= set(
        result["extensions"]), out


def test_lab_and_worker_run_the_same_dask(platform_images: dict[str, str], docker) -> None:  # noqa: ANN001
    code = "import sys, dask, distributed, dask_gateway; print(sys.version_info[:2], dask.__version__, " \
           "distributed.__version__, dask_gateway.__version__)"
    lab = run_as_any_uid(docker, platform_images["jupyterlab"], "python", "-c", code)
    worker = run_as_any_uid(docker, platform_images["dask-worker"], "python", "-c", code)
    assert lab == worker


def test_worker_has_the_commands_dask_gateway_runs(platform_images: dict[str, str], docker) -> None:  # noqa: ANN001
    ref = platform_images["dask-worker"]
    for command in ("dask-scheduler", "dask-worker"):
        assert "Usage:" in run_as_any_uid(docker, ref, command, "--help"), command


def test_gateway_server_and_controller(platform_images: dict[str, str], docker) -> None:  # noqa: ANN001
    ref = platform_images["dask-gateway-server"]
    version = run_as_any_uid(docker, ref, "dask-gateway-server", "--version").strip()
    assert version and version[0].isdigit()
    assert "kube-controller" in run_as_any_uid(docker, ref, "dask-gateway-server", "--help")
    run_as_any_uid(docker, ref, "python", "-c", "import dask_gateway_server.backends.kubernetes.controller")


def test_kubessh_and_jitsi_token_import(platform_images: dict[str, str], docker) -> None:  # noqa: ANN001
    assert "usage: qhub-ssh" in run_as_any_uid(docker, platform_images["kubessh"], "python", "-m", "qhub_ssh",
                                               "--help")
    run_as_any_uid(docker, platform_images["jitsi-token"], "python", "-c",
                   "import qhub_jitsi_token.app, jwt, jupyterhub.services.auth")
