"""The lab image's conda-store kernels (images/jupyterlab qhub_kernels) as a user who may not read every namespace:
a group's namespace is group-owned 2750, so a user outside the group cannot even list it, and the user's other
kernels must still be offered; another user's own namespace can be read but is not offered (issue 12: users see
the global, their own and their groups' environments as kernels)."""

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


def kernels_as(uid: int, gids: list[int], root: Path, user: str = "") -> list[str]:
    """conda-store kernel names qhub_kernels offers to a process of `uid` in `gids` (a forked child drops to that
    identity; the manager is made and used once before, so every module it needs is loaded: the interpreter's own
    files are not readable by that uid)."""
    sys.path.insert(0, str(SITE))
    try:
        import qhub_kernels
    finally:
        sys.path.remove(str(SITE))
    manager = qhub_kernels.CondaStoreKernelSpecManager(conda_store_root=str(root), user=user)
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


def test_only_global_own_and_group_namespaces_are_offered(share: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test lists kernels as another uid: run it as root (make test does)", pytrace=False)
    root = share / "conda-store"
    for ns, env in (("global", "base"), ("analysts", "ml"), ("ops", "tools"), ("alice", "mine"), ("bob", "his")):
        prefix = root / ns / "envs" / env
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "python").write_text("#!/bin/false\n")  # only its existence counts for the listing
        (prefix / "lib" / "python3.11" / "site-packages" / "ipykernel").mkdir(parents=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755)
    for group, gid in (("analysts", 3001), ("ops", 3002)):  # the groups' namespaces, as the hub makes them
        os.chown(root / group, 0, gid)
        (root / group).chmod(0o2750)
    # users' own namespaces (alice, bob) are the worker's folders, readable by all: only the owner is offered hers
    assert kernels_as(NOBODY, [3001], root, "alice") == ["conda-store-alice-mine", "conda-store-analysts-ml",
                                                         "conda-store-global-base"]
    assert kernels_as(NOBODY, [3001, 3002], root, "alice") == ["conda-store-alice-mine", "conda-store-analysts-ml",
                                                               "conda-store-global-base", "conda-store-ops-tools"]
    assert kernels_as(NOBODY, [], root, "bob") == ["conda-store-bob-his", "conda-store-global-base"]
