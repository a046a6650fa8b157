"""The lab image's conda-store kernels (images/jupyterlab qhub_kernels) as a user who may not read every namespace:
a group's namespace is group-owned 2750, so a user outside the group cannot even list it, and the user's other
kernels must still be offered."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SITE = (Path(__file__).resolve().parents[2] / "images" / "jupyterlab" / "rootfs" / "opt" / "venv" / "lib"
        / "python3.11" / "site-packages")
NOBODY = 65534


def kernels_as(uid: int, gids: list[int], root: Path) -> list[str]:
    """conda-store kernel names qhub_kernels offers to a process of `uid` in `gids` (a forked child drops to that
    identity; the manager is made and used once before, so every module it needs is loaded: the interpreter's own
    files are not readable by that uid)."""
    sys.path.insert(0, str(SITE))
    try:
        import qhub_kernels
    finally:
        sys.path.remove(str(SITE))
    manager = qhub_kernels.CondaStoreKernelSpecManager(conda_store_root=str(root))
    manager.find_kernel_specs()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups(gids)
            os.setgid(uid)
            os.setuid(uid)
            names = sorted(n for n in manager.find_kernel_specs() if n.startswith("conda-store-"))
            os.write(write, json.dumps(names).encode())
            code = 0
        except BaseException:  # noqa: BLE001 - the parent shows it
            import traceback

            os.write(write, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child listing kernels failed:\n{out}"
    return list(json.loads(out))


@pytest.fixture
def share() -> Iterator[Path]:
    """A folder every uid can reach (pytest's tmp_path sits under a root-only 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="qhub-kernels-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_closed_group_namespace_hides_only_itself(share: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test lists kernels as another uid: run it as root (make test does)", pytrace=False)
    root = share / "conda-store"
    for ns, env in (("global", "base"), ("analysts", "ml"), ("ops", "tools")):
        prefix = root / ns / "envs" / env
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "python").write_text("#!/bin/false\n")  # only its existence counts for the listing
        (prefix / "lib" / "python3.11" / "site-packages" / "ipykernel").mkdir(parents=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755)
    os.chown(root / "ops", 0, 3002)
    (root / "ops").chmod(0o2750)  # the ops group's namespace, as the hub makes it; nobody is not in ops
    assert kernels_as(NOBODY, [3001], root) == ["conda-store-analysts-ml", "conda-store-global-base"]
    assert kernels_as(NOBODY, [3001, 3002], root) == ["conda-store-analysts-ml", "conda-store-global-base",
                                                      "conda-store-ops-tools"]
