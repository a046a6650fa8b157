"""The `pip:` section of a spec: wheels installed into the image's site-packages without running the image.

pip (this machine's, from qhubctl's own environment) installs binary wheels for the image's Python version and
platform into a staging directory, which the build lays under the prefix. Entries are installed without their
dependencies: conda provides the rest, so list every pip package you need, pinned (`name==version`) for a
reproducible image. Paths in entries are relative to the spec directory.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import sys
from pathlib import Path, PurePosixPath

import rattler

from qhubctl.errors import UserError
from qhubctl.images.spec import ImageSpec
from qhubctl.proc import run

# Wheel platforms pip may install, most preferred first. pip takes `--platform` tags literally (a manylinux_2_28
# target does not admit a manylinux_2_27 wheel), so the glibc versions between 2.17 and 2.28 (the locks' target, and
# at most the images' glibc) are listed too, after the first four: a package with a wheel under one of those keeps
# it, so only wheels built for nothing older (NVIDIA's CUDA 12.9 libraries: manylinux_2_27) come from them.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64",
             *(f"manylinux_2_{minor}_x86_64" for minor in range(27, 17, -1))]


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
        moved: dict[str, bytes] = {}
        for script in sorted(scripts.iterdir()):
            data = script.read_bytes()
            if data.startswith(b"#!"):
                _, _, rest = data.partition(b"\n")
                data = f"#!{interpreter}\n".encode() + rest
            target = bin_dir / script.name
            target.write_bytes(data)
            target.chmod(0o755)
            script.unlink()
            moved[script.name] = data
        scripts.rmdir()
        _record_moved_scripts(site, bin_dir, moved)
    return staging


def _record_moved_scripts(site: Path, bin_dir: Path, moved: dict[str, bytes]) -> None:
    """Each wheel's RECORD lists its console scripts with the hash of the file pip wrote, whose #! line named the
    builder's own Python: a layer would then depend on where qhubctl runs. Point those rows at the moved script,
    with its hash and size."""
    where = os.path.relpath(bin_dir, site)
    for record in sorted(site.glob("*.dist-info/RECORD")):
        rows = list(csv.reader(record.read_text().splitlines()))
        changed = False
        for row in rows:
            path = PurePosixPath(row[0]) if row else PurePosixPath()
            name = path.name
            # only paths outside site-packages (pip writes "../../bin/<script>"), not a package's own bin/ folder
            if len(row) == 3 and path.parts[:1] == ("..",) and path.parent.name == "bin" and name in moved:
                digest = base64.urlsafe_b64encode(hashlib.sha256(moved[name]).digest()).rstrip(b"=").decode()
                row[:] = [f"{where}/{name}", f"sha256={digest}", str(len(moved[name]))]
                changed = True
        if changed:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            record.write_text(out.getvalue())


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
