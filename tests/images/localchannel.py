"""A tiny conda channel written from scratch, for tests and the images benchmark.

Packages are real `.tar.bz2` conda archives (info/index.json, info/paths.json, info/files, info/has_prefix and
the payload) and the channel is indexed with py-rattler, so the solver and installer see what they would see on
conda-forge, only smaller.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

# The placeholder conda-build writes into files that embed the build prefix; installers replace it.
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


@dataclass
class Pkg:
    name: str
    version: str
    subdir: str = "linux-64"
    build_number: int = 0
    depends: list[str] = field(default_factory=list)
    # relative path -> (content, mode); text containing PLACEHOLDER is listed in info/has_prefix
    files: dict[str, tuple[str | bytes, int]] = field(default_factory=dict)

    @property
    def build(self) -> str:
        return f"h{hashlib.sha256(self.name.encode()).hexdigest()[:7]}_{self.build_number}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def write_package(channel: Path, pkg: Pkg) -> Path:
    """Write one package archive into channel/<subdir>/ and return its path."""
    subdir = channel / pkg.subdir
    subdir.mkdir(parents=True, exist_ok=True)
    index = {
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "build_number": pkg.build_number,
        "depends": pkg.depends,
        "license": "BSD-3-Clause",
        "subdir": pkg.subdir,
        "timestamp": 1_700_000_000_000,
    }
    if pkg.subdir == "noarch":
        index["noarch"] = "generic"
    else:
        index.update(arch="x86_64", platform="linux")
    paths, has_prefix = [], []
    for rel, (content, _mode) in sorted(pkg.files.items()):
        data = content.encode() if isinstance(content, str) else content
        entry = {"_path": rel, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
                 "size_in_bytes": len(data)}
        if PLACEHOLDER.encode() in data:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
            has_prefix.append(f"{PLACEHOLDER} text {rel}")
        paths.append(entry)
    out = subdir / pkg.filename
    with tarfile.open(out, "w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index, indent=2).encode())
        _add(tar, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode())
        _add(tar, "info/files", "".join(f"{p}\n" for p in sorted(pkg.files)).encode())
        if has_prefix:
            _add(tar, "info/has_prefix", "".join(f"{line}\n" for line in has_prefix).encode())
        for rel, (content, mode) in sorted(pkg.files.items()):
            _add(tar, rel, content.encode() if isinstance(content, str) else content, mode)
    return out


def index(channel: Path) -> None:
    """Write repodata.json for every subdir (noarch and linux-64 always exist, as clients expect)."""
    from rattler.index import index_fs

    for sub in ("noarch", "linux-64"):
        (channel / sub).mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


def hello_script(version: str) -> str:
    return (
        "#!/bin/sh\n"
        f'echo "qhub-hello {version} prefix={PLACEHOLDER} data=$(cat {PLACEHOLDER}/share/qhub-data/greeting.txt)"\n'
    )


def demo_packages() -> list[Pkg]:
    """Packages with files, an executable, a prefix placeholder and a dependency chain hello -> data, lib."""
    return [
        Pkg("qhub-data", "1.0", subdir="noarch",
            files={"share/qhub-data/greeting.txt": ("greetings from the local channel", 0o644)}),
        Pkg("libqhub", "1.0", files={"lib/libqhub.txt": ("lib 1.0\n" + "x" * 4096, 0o644)}),
        Pkg("libqhub", "2.0", files={"lib/libqhub.txt": ("lib 2.0\n" + "y" * 4096, 0o644)}),
        Pkg("qhub-hello", "1.0", depends=["qhub-data >=1", "libqhub >=1,<3"],
            files={"bin/qhub-hello": (hello_script("1.0"), 0o755)}),
        Pkg("qhub-hello", "2.0", depends=["qhub-data >=1", "libqhub 2.*"],
            files={"bin/qhub-hello": (hello_script("2.0"), 0o755)}),
        Pkg("qhub-extra", "0.1", subdir="noarch", files={"share/qhub-extra/README": ("extra\n", 0o644)}),
        # Stands in for Python where only its version matters (the pip section).
        Pkg("python", "3.12.1", files={"bin/python3.12": ("#!/bin/sh\necho not a real python\n", 0o755)}),
        # Unsolvable on purpose: nothing provides this dependency.
        Pkg("qhub-broken", "1.0", depends=["does-not-exist >=9"], files={"share/broken": ("", 0o644)}),
    ]


# Test glue for the node tier's conda-store journey (tests/node/test_conda_store_journey.py). A synthetic channel
# cannot carry a real interpreter, so its `python` borrows the Python of QHub's JupyterLab image, which has
# ipykernel: the environment built from these packages runs as a kernel in JupyterLab and imports its own
# packages, but it is not a conda Python and must never be published as one.
LAB_PYTHON = "/opt/venv/bin/python"  # images/jupyterlab: Debian's Python 3.11 with the image's packages
LAB_PYTHON_VERSION = "3.11"
JOURNEY_DEMO_VERSION = "0.7.1"


def glue_python(lab_python: str = LAB_PYTHON, version: str = LAB_PYTHON_VERSION) -> str:
    """`<env>/bin/python`: runs `-m MODULE` or `-c CODE` in the lab image's Python with the environment's
    site-packages APPENDED to sys.path, so the image's own packages (ipykernel) win and the environment's are
    importable. The environment is found from the path the script was started by (a kernel's argv names it), not
    from an install-time prefix: conda-store links `envs/<name>` to the build folder."""
    return f"""#!{lab_python}
# Test glue (tests/images/localchannel.py), not a Python: runs {lab_python} with this environment's packages.
import os
import runpy
import sys

env = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0])))
sys.path[0:1] = []  # this script's bin/ directory, which a real `python -m` would not put first
sys.path.append(os.path.join(env, "lib", "python{version}", "site-packages"))
args = sys.argv[1:]
if len(args) >= 2 and args[0] == "-m":
    sys.argv = [sys.argv[0], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
elif len(args) >= 2 and args[0] == "-c":
    sys.argv = ["-c", *args[2:]]
    exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
else:
    sys.exit(f"{{sys.argv[0]}} is test glue: it runs only -m MODULE and -c CODE, not {{args}}")
"""


def kernel_env_packages(lab_python: str = LAB_PYTHON, version: str = LAB_PYTHON_VERSION) -> list[Pkg]:
    """What an environment needs to be a working kernel in QHub's JupyterLab, as test glue: `python` (the glue
    above), `ipykernel` (a marker directory that qhub_kernels looks for; it has no __init__.py, so it can never
    shadow the lab image's real ipykernel, which comes first on sys.path anyway), and `qhub-journey-demo`, a
    package only this channel has (module qhub_journey_demo with __version__)."""
    site = f"lib/python{version}/site-packages"
    return [
        Pkg("python", f"{version}.9", files={"bin/python": (glue_python(lab_python, version), 0o755)}),
        Pkg("ipykernel", "6.29.5", subdir="noarch", depends=[f"python {version}.*"],
            files={f"{site}/ipykernel/QHUB-TEST-GLUE": ("marker for qhub_kernels; the lab image's ipykernel runs\n",
                                                          0o644)}),
        Pkg("qhub-journey-demo", JOURNEY_DEMO_VERSION, subdir="noarch", depends=[f"python {version}.*"],
            files={f"{site}/qhub_journey_demo/__init__.py": (f'__version__ = "{JOURNEY_DEMO_VERSION}"\n', 0o644)}),
    ]


def make_channel(channel: Path, packages: list[Pkg] | None = None) -> Path:
    for pkg in packages if packages is not None else demo_packages():
        write_package(channel, pkg)
    index(channel)
    return channel
