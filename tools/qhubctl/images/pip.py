"""The `pip:` section of a spec: wheels installed into the image's site-packages without running the image.

pip (this machine's, from qhubctl's own environment) installs binary wheels for the image's Python version and
platform into a staging directory, which the build lays under the prefix. Entries are installed without their
dependencies: conda provides the rest, so list every pip package you need, pinned (`name==version`) for a
reproducible image. Paths in entries are relative to the spec directory.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import rattler

from qhubctl.errors import UserError
from qhubctl.images.spec import ImageSpec
from qhubctl.proc import run

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]


def python_version(records: list[rattler.RepoDataRecord]) -> str | None:
    for record in records:
        if record.name.normalized == "python":
            match = re.match(r"(\d+)\.(\d+)", str(record.version))
            if match:
                return f"{match.group(1)}.{match.group(2)}"
    return None


def requirements(spec: ImageSpec, records: list[rattler.RepoDataRecord]) -> list[str]:
    """The pip entries to install; a UserError if there are some but no Python to install them for."""
    if not spec.pip:
        return []
    if python_version(records) is None:
        raise UserError(
            f"{spec.directory}: the spec has a pip section but no python among its conda packages",
            hint="add `python` (with the version you want) to the conda dependencies",
        )
    return list(spec.pip)


def install(reqs: list[str], records: list[rattler.RepoDataRecord], staging: Path, spec: ImageSpec) -> Path:
    """Install `reqs` into `staging` laid out like the prefix (lib/pythonX.Y/site-packages, bin) and return it."""
    version = python_version(records)
    assert version is not None
    return install_into(staging, version, f"{spec.image.prefix}/bin/python", spec.directory, reqs)


# Wheel data directories (`<name>.data/data/...`) that pip --target leaves inside site-packages but that belong at
# the prefix: Jupyter's share/jupyter (lab assets, extensions, kernels) and etc/jupyter (server extension config),
# JupyterHub's share/jupyterhub (templates, static files), headers.
_DATA_DIRS = ("share", "etc", "include")


def install_into(staging: Path, version: str, interpreter: str, cwd: Path, req_args: list[str],
                 sdists: tuple[str, ...] = ()) -> Path:
    """pip-install wheels for CPython `version` into `staging` (lib/pythonX.Y/site-packages, bin, share, etc);
    console scripts get `interpreter` (the image's Python) as their `#!` line. `req_args` are pip's requirement
    arguments; `sdists` names pure-Python packages that may be built from source (they have no wheel)."""
    site = staging / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    args: list[str] = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--no-compile",
        "--disable-pip-version-check", "--no-warn-script-location", "--target", str(site),
        "--python-version", version, "--implementation", "cp",
    ]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    for name in sdists:
        args += ["--no-binary", name]
    run([*args, *req_args], cwd=cwd, timeout=900)
    _move_data_dirs(site, staging)
    # pip --target puts console scripts in site/bin, pointing at this machine's Python: move them to bin/
    # and point them at the image's.
    scripts = site / "bin"
    if scripts.is_dir():
        bin_dir = staging / "bin"
        bin_dir.mkdir(exist_ok=True)
        for script in sorted(scripts.iterdir()):
            data = script.read_bytes()
            if data.startswith(b"#!"):
                _, _, rest = data.partition(b"\n")
                data = f"#!{interpreter}\n".encode() + rest
            target = bin_dir / script.name
            target.write_bytes(data)
            target.chmod(0o755)
            script.unlink()
        scripts.rmdir()
    return staging


def _move_data_dirs(site: Path, staging: Path) -> None:
    """Merge wheel data directories out of site-packages into the prefix (see _DATA_DIRS)."""
    for name in _DATA_DIRS:
        source = site / name
        if not source.is_dir() or (source / "__init__.py").exists():  # a package of that name stays
            continue
        for path in sorted(source.rglob("*")):
            target = staging / name / path.relative_to(source)
            if path.is_dir() and not path.is_symlink():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)
        shutil.rmtree(source)
