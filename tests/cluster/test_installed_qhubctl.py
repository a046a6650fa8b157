"""qhubctl as installed software: the sdist and wheel built from this checkout carry the chart, and a wheel installed
into a fresh virtualenv outside the checkout runs version, init, validate, render and deploy --dry-run (against the
local test cluster) from another directory, with no traceback anywhere. The oldest build requirements
pyproject.toml allows (each `>=` floor exactly) build both too.

The sdist and wheel are built once per session (the `built` fixture, tests/cluster/distkit.py), offline after the
first run.
"""

from __future__ import annotations

import email
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from distkit import clean_env, pip, wheelhouse

from qhubctl import __version__, localcluster
from qhubctl.proc import run

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART_FILES = (  # a sample of what the chart needs at deploy time: metadata, schemas, subcharts, files/, crds/
    "Chart.yaml", "values.yaml", "values.schema.json", "templates/_helpers.tpl",
    "charts/nfs/values.schema.json", "charts/jupyterhub/files/jupyterhub_config.py",
    "charts/dask-gateway/crds/daskclusters.yaml", "charts/conda-store/files/conda_store_config.py",
)
# what the sdist is built from (pyproject.toml's packages, setup.py's and MANIFEST.in's chart, the readme)
PACKAGE_SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "tools/qhubctl",
                   "charts/qhub", "charts/qhub-cluster-addons")


def test_sdist_and_wheel_carry_the_chart(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    with tarfile.open(sdist) as tar:
        in_sdist = set(tar.getnames())
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
    top = sdist.name.removesuffix(".tar.gz")
    for name in CHART_FILES:
        assert f"{top}/charts/qhub/{name}" in in_sdist, f"sdist lacks charts/qhub/{name}"
        assert f"qhubctl/charts/qhub/{name}" in in_wheel, f"wheel lacks qhubctl/charts/qhub/{name}"
    templates = {n for n in in_wheel if n.startswith("qhubctl/charts/qhub/") and "/templates/" in n}
    in_git = {p for p in (REPO / "charts" / "qhub").rglob("*") if p.is_file() and "templates" in p.parts}
    assert len(templates) == len(in_git), "the wheel's chart templates differ from the checkout's"
    assert not any("__pycache__" in n for n in in_wheel)
    addons = {n for n in in_wheel if n.startswith("qhubctl/charts/qhub-cluster-addons/")}
    in_git = {p for p in (REPO / "charts" / "qhub-cluster-addons").rglob("*") if p.is_file()}
    assert "qhubctl/charts/qhub-cluster-addons/Chart.yaml" in addons and len(addons) == len(in_git), \
        "the wheel's add-on chart differs from the checkout's"


def test_wheel_metadata_is_complete_for_pypi(built: tuple[Path, Path]) -> None:
    """What PyPI shows comes from the built METADATA: readme, license expression and file, classifiers, links,
    authors. Their sources are pyproject.toml (and Chart.yaml for the links: one home for both)."""
    sdist, wheel = built
    with zipfile.ZipFile(wheel) as whl:
        info = f"qhubctl-{__version__}.dist-info"
        meta = email.message_from_string(whl.read(f"{info}/METADATA").decode())
        packaged_license = whl.read(f"{info}/licenses/LICENSE").decode()
    assert meta["Name"] == "qhubctl" and meta["Version"] == __version__
    assert tuple(map(int, meta["Metadata-Version"].split("."))) >= (2, 4), "License-Expression needs metadata 2.4"
    assert meta["License-Expression"] == "BSD-3-Clause" and meta.get_all("License-File") == ["LICENSE"]
    assert packaged_license == (REPO / "LICENSE").read_text() and "BSD 3-Clause" in packaged_license
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (REPO / "README.md").read_text().strip(), "the readme is the long description"
    assert meta["Requires-Python"] == ">=3.11" and meta["Summary"]
    assert "QHub developers" in meta["Author-email"]
    classifiers = meta.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers and "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639: the license expression replaces them"
    chart = yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls == {"Homepage": chart["home"], "Source": chart["sources"][0]}, urls
    with tarfile.open(sdist) as tar:
        assert f"{sdist.name.removesuffix('.tar.gz')}/LICENSE" in tar.getnames()


def test_installed_wheel_works_outside_the_checkout(built: tuple[Path, Path], tmp_path: Path,
                                                    cluster: localcluster.LocalCluster) -> None:
    _, wheel = built
    venv = tmp_path / "venv"
    env = {k: v for k, v in clean_env().items() if k != "QHUB_CHART"}
    # no .venv on PATH: the installed qhubctl and the pinned tools (helm) only
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(localcluster.bin_dir()), "/usr/bin", "/bin"])
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    env["QHUB_CHART"] = ""  # proc.run adds env on top of this process's: no override leaks in
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    pip(venv, "--no-index", "--find-links", str(wheelhouse()), str(wheel), env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    qhubctl = str(venv / "bin" / "qhubctl")

    def ok(*args: str) -> str:
        result = run([qhubctl, *args], cwd=work, env=env, timeout=300, check=False)
        both = result.stdout + result.stderr
        assert "Traceback" not in both, f"qhubctl {' '.join(args)}:\n{both}"
        assert result.returncode == 0, f"qhubctl {' '.join(args)} exited {result.returncode}:\n{both}"
        return result.stdout

    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    version = ok("version")
    chart = yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())
    assert version.splitlines()[0] == f"qhubctl {__version__}", version
    assert f"chart qhub {chart['version']} (app {chart['appVersion']}): " in version, version
    assert f"packaged with qhubctl ({site / 'qhubctl' / 'charts' / 'qhub'})" in version, version
    assert ok("--version").strip() == f"qhubctl {__version__}"
    ok("init", "local", "-o", "qhub-config.yaml")
    ok("validate")
    rendered = ok("render")
    assert "jupyterhub:" in rendered and "nfs:" in rendered
    plan = ok("deploy", "--dry-run")
    assert "plan:" in plan and "with chart" in plan

    # a wrong override is a message naming it, not a traceback
    bad = run([qhubctl, "--chart", str(work / "missing.tgz"), "render"], cwd=work, env=env, timeout=120, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stdout + bad.stderr
    assert f"QHUB_CHART={work / 'missing.tgz'}" in bad.stderr


def _at_floor(requirement: str) -> str:
    """`name>=X` as `name==X`, the oldest version the declaration allows; other requirements as they are."""
    name, sep, version = requirement.partition(">=")
    return f"{name.strip()}=={version.strip()}" if sep and "," not in version else requirement


def test_the_oldest_declared_build_requirements_build_sdist_and_wheel(tmp_path: Path) -> None:
    """build-system.requires at their floors, in a clean virtualenv, build the sdist and the wheel: a floor below
    what pyproject.toml uses (the SPDX `license` string needs setuptools 77) fails here, not on a user's machine."""
    requires = [_at_floor(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]]
    assert any(r.startswith("setuptools==") for r in requires), requires
    house = localcluster.cache_dir() / "wheelhouse" / ("floor-" + hashlib.sha256(
        json.dumps([sys.version_info[:2], requires]).encode()).hexdigest()[:16])
    env = clean_env()
    tools = tmp_path / "build-venv"
    run([sys.executable, "-m", "venv", str(tools)], timeout=120)
    if not (house / ".complete").exists():  # once per requirement set, then offline
        run([str(tools / "bin" / "python"), "-m", "pip", "download", "-q", "-d", str(house), "build", *requires],
            env=env, timeout=900)
        (house / ".complete").touch()
    pip(tools, "--no-index", "--find-links", str(house), "build", *requires, env=env)
    # a copy of what the sdist is made of: a build without isolation writes build/ and *.egg-info where it builds
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.tgz")
    for part in PACKAGE_SOURCES:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, src / part, ignore=skip)
        else:
            (src / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / part, src / part)
    dist = tmp_path / "dist"
    result = run([str(tools / "bin" / "python"), "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                 env=env, timeout=900, check=False)
    assert result.returncode == 0, f"building with {requires} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert len(list(dist.glob("qhubctl-*.tar.gz"))) == 1 and len(list(dist.glob("qhubctl-*.whl"))) == 1
