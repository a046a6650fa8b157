"""Helpers shared by the platform image tests: build specs under images/ (copied first: a build must not touch the
repository), push them to the test registry, pull them into the test dockerd, and run them the way the chart does:
as an arbitrary uid (12345, in no /etc/passwd), read-only root filesystem, every capability dropped, no network."""

from __future__ import annotations

import shutil
from pathlib import Path

from qhubctl.images.spec import published_tag
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
ANY_UID = ["--user", "12345:12345", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--network", "none"]


def library_check(preamble: str = "") -> str:
    """A Python script (run by the image's Python) that loads every shared library in the venv after `preamble` and
    prints the sonames that could not be found, space-separated (nothing when all load): manylinux wheels need
    their system libraries (libstdc++ ...) in the image."""
    return preamble + """
import ctypes, pathlib, sys
missing = set()
for p in sorted(pathlib.Path(sys.prefix).rglob("*.so*")):
    if p.is_file() and ".so" in p.name:
        try:
            ctypes.CDLL(str(p))
        except OSError as e:
            if "cannot open shared object" in str(e):
                missing.add(str(e).split(":")[0])
print(" ".join(sorted(missing)))
"""


def build_push_pull(names: list[str], copies: Path, registry: str, docker, *,  # noqa: ANN001
                    siblings: tuple[str, ...] = ()) -> dict[str, str]:
    """{name: pullable reference} of images/<name>, each built, pushed and pulled once. `siblings` are spec
    directories the specs read files from (`rootfs: [../jupyterlab/rootfs]`): copied beside them, not built."""
    from qhubctl.commands.images import app

    for name in (*names, *siblings):
        shutil.copytree(REPO / "images" / name, copies / name, symlinks=True)
    refs = {}
    runner = CliRunner()
    for name in names:
        spec = copies / name
        tag = published_tag(spec, app_version="0.0.0-test")
        result = runner.invoke(app, ["build", str(spec), "--tag", tag, "--push", registry])
        assert result.exit_code == 0, result.output
        refs[name] = result.output.strip().splitlines()[-1].rsplit("@", 1)[0]
        docker("pull", refs[name], timeout=900)
    return refs


def run_as_any_uid(docker, ref: str, *args: str, mounts: tuple[str, ...] = ()) -> str:  # noqa: ANN001
    extra = [x for m in mounts for x in ("-v", m)]
    return docker("run", "--rm", *ANY_UID, *extra, ref, *args, timeout=300)
