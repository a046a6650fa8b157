"""qhubctl's sdist and wheel built from this checkout, and pip installs from a local wheelhouse.

Packages come from PyPI once, then from a wheelhouse in $QHUB_CACHE keyed by the build system and dependencies in
pyproject.toml (pip download), so later runs install offline (--no-index). The `built` session fixture
(tests/cluster/conftest.py) builds once for every cluster test that installs qhubctl.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tomllib
from pathlib import Path

from qhubctl import localcluster
from qhubctl.proc import run

REPO = Path(__file__).resolve().parents[2]


def wheelhouse() -> Path:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    key = json.dumps([sys.version_info[:2], data["build-system"], data["project"]["dependencies"]], sort_keys=True)
    return localcluster.cache_dir() / "wheelhouse" / hashlib.sha256(key.encode()).hexdigest()[:16]


def clean_env() -> dict[str, str]:
    """This process's environment without pip, Python and virtualenv settings that would leak into a fresh venv.
    PYTHONPATH is blanked, not left out: proc.run adds `env` on top of this process's environment, and a checkout's
    tools/ on it makes pip find qhubctl "already satisfied" instead of installing the wheel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "PYTHONPATH": ""}


def pip(venv: Path, *args: str, env: dict[str, str]) -> None:
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args], env=env, timeout=900)


def build(dest: Path) -> tuple[Path, Path]:
    """(sdist, wheel) built by `python -m build` (the wheel from the sdist) in an isolated build environment."""
    house = wheelhouse()
    house.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    tools = dest / "build-venv"
    run([sys.executable, "-m", "venv", str(tools)], timeout=120)
    build_reqs = ["build", *tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]]
    complete = house / ".complete"
    if not complete.exists():  # once per dependency set: fetch what the build and the install need
        run([str(tools / "bin" / "python"), "-m", "pip", "download", "-q", "-d", str(house), *build_reqs],
            env=env, timeout=900)
    offline = {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house)}
    pip(tools, "build", env=offline)
    dist = dest / "dist"
    run([str(tools / "bin" / "python"), "-m", "build", "--outdir", str(dist), str(REPO)], env=offline, timeout=900)
    sdist, = dist.glob("qhubctl-*.tar.gz")
    wheel, = dist.glob("qhubctl-*.whl")
    if not complete.exists():
        run([str(tools / "bin" / "python"), "-m", "pip", "download", "-q", "-d", str(house), str(wheel)],
            env=env, timeout=900)
        complete.touch()
    return sdist, wheel
