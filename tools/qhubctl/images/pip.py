"""The `pip:` section of a spec: wheels installed into the image's site-packages without running the image.

pip (this machine's, from qhubctl's own environment) installs binary wheels for the image's Python version and
platform into a staging directory, which the build lays under the prefix. Entries are installed without their
dependencies: conda provides the rest, so list every pip package you need, pinned (`name==version`) for a
reproducible image. Paths in entries are relative to the spec directory.
"""

from __future__ import annotations

import re
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


def install_into(staging: Path, version: str, interpreter: str, cwd: Path, req_args: list[str]) -> Path:
    """pip-install wheels for CPython `version` into `staging` (lib/pythonX.Y/site-packages, bin); console
    scripts get `interpreter` (the image's Python) as their `#!` line. `req_args` are pip's requirement arguments."""
    site = staging / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    args: list[str] = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--no-compile",
        "--disable-pip-version-check", "--no-warn-script-location", "--target", str(site),
        "--python-version", version, "--implementation", "cp",
    ]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    run([*args, *req_args], cwd=cwd, timeout=900)
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
