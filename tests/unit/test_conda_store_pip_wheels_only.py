"""pip sections of conda-store builds stay wheels only (images/conda-store, qhub_conda_store.lock and .buildpod).

The lock plugin runs pip in the worker, which holds conda-store's secrets: a pip entry that is not a plain
requirement by name (a direct reference, a VCS URL, a pip option) is refused, naming the entry, before anything
is written or pip runs; pip runs isolated from PIP_* variables and config files. The worker hands the build pod
wheels only, whatever the lock says. conda-store and conda-lock are not installed here: lock.py is imported with
stand-ins for the names it takes from them (none of which the code under test calls).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import types
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.unit
ROOT = pathlib.Path(__file__).resolve().parents[2] / "images" / "conda-store" / "rootfs" / "opt" / "qhub-conda-store"
sys.path.insert(0, str(ROOT))
from qhub_conda_store import buildpod  # noqa: E402

# the names lock.py imports from conda-store and conda-lock
STANDINS: dict[str, dict[str, Any]] = {
    "conda_lock": {}, "conda_lock.lockfile": {}, "conda_lock.lockfile.v1": {},
    "conda_lock.lockfile.v1.models": {"HashModel": types.SimpleNamespace, "LockedDependency": types.SimpleNamespace,
                                      "Lockfile": types.SimpleNamespace, "LockMeta": types.SimpleNamespace},
    "conda_lock.models": {}, "conda_lock.models.channel": {"Channel": types.SimpleNamespace},
    "conda_store_server": {}, "conda_store_server._internal": {},
    "conda_store_server._internal.conda_utils": {"conda_platform": lambda: "linux-64"},
    "conda_store_server.plugins": {"BUILTIN_PLUGINS": []},
    "conda_store_server.plugins.hookspec": {"hookimpl": lambda f: f},
    "conda_store_server.plugins.types": {"lock": types.SimpleNamespace(LockPlugin=object),
                                         "types": types.SimpleNamespace(TypeLockPlugin=types.SimpleNamespace)},
}

REFUSED = [
    ("evil @ https://example.org/evil-1.0.tar.gz", "direct reference"),
    ("evil @ file:///tmp/evil-1.0.tar.gz", "direct reference"),
    ("evil@file:///tmp/evil-1.0-py3-none-any.whl", "direct reference"),
    ("git+https://github.com/example/evil.git", "a URL"),
    ("evil @ git+https://github.com/example/evil.git", "direct reference"),
    ("--index-url https://evil.example/simple", "pip option"),
    ("--index-url=https://evil.example/simple", "pip option"),
    ("--extra-index-url https://evil.example/simple", "pip option"),
    ("--trusted-host evil.example", "pip option"),
    ("-e .", "pip option"),
    ("-r requirements.txt", "pip option"),
    ("-c constraints.txt", "pip option"),
    ("--find-links https://evil.example/wheels", "pip option"),
    ("requests --index-url https://evil.example/simple", "pip option"),
    ("requests; python_version > '3' --hash=sha256:00", "pip option"),
    ("requests\n--index-url https://evil.example/simple", "pip option"),
    ("./evil", "not a requirement by name"),
    ("", "not a requirement by name"),
]
ACCEPTED = ["requests>=2", "numpy[extra]==1.0; python_version>'3'", "rich", "Django>=4,<6", "zope.interface~=6.0"]


@pytest.fixture(scope="module")
def lock() -> Iterator[types.ModuleType]:
    """qhub_conda_store.lock, with stand-ins for conda-store and conda-lock when they are not installed."""
    with pytest.MonkeyPatch.context() as mp:
        try:
            importlib.import_module("conda_store_server.plugins.types")
            importlib.import_module("conda_lock.lockfile.v1.models")
        except ImportError:
            for name, attributes in STANDINS.items():
                module = types.ModuleType(name)
                module.__dict__.update(attributes, __path__=[])
                mp.setitem(sys.modules, name, module)
        spec = importlib.util.spec_from_file_location("qhub_conda_store_lock", ROOT / "qhub_conda_store" / "lock.py")
        assert spec and spec.loader
        lock_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lock_module)
        yield lock_module


@pytest.fixture()
def no_pip(lock: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the lock plugin writes a temporary folder or runs anything."""
    def forbidden(*args: Any, **kwargs: Any) -> None:
        pytest.fail(f"ran or wrote before refusing: {args}")

    monkeypatch.setattr(lock.subprocess, "run", forbidden)
    monkeypatch.setattr(lock.tempfile, "TemporaryDirectory", forbidden)


@pytest.mark.parametrize(("line", "what"), REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_a_pip_entry_not_by_name_is_refused_before_pip_runs(lock: types.ModuleType, no_pip: None, line: str,
                                                            what: str) -> None:
    with pytest.raises(lock.PipRequirementRefused) as refused:
        lock.pip_locked(["rich", line], "3.12", "linux-64")
    message = str(refused.value)
    assert message.startswith(f"pip: {line!r} is ") and what in message
    assert "wheels only" in message and "publish a wheel to the index or add the package from a conda" in message
    assert "rich" not in message.replace(line, ""), "only the refused entry is named"


def test_every_refused_entry_is_named_in_one_message(lock: types.ModuleType, no_pip: None) -> None:
    lines = ["evil @ https://example.org/evil.tar.gz", "requests", "--index-url https://evil.example/simple"]
    with pytest.raises(lock.PipRequirementRefused) as refused:
        lock.pip_report(lines, "3.12")
    assert str(refused.value).splitlines() == [lock.pip_refusal(lines[0]), lock.pip_refusal(lines[2])]


def test_a_refused_entry_fails_the_build_before_the_solve(lock: types.ModuleType, no_pip: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "solve_conda", lambda *a: pytest.fail("solved a spec with a refused pip entry"))
    settings = types.SimpleNamespace(conda_default_channels=["conda-forge"], conda_channel_alias="https://c/")
    context = types.SimpleNamespace(conda_store=types.SimpleNamespace(get_settings=lambda: settings),
                                    log=types.SimpleNamespace(info=print))
    spec = types.SimpleNamespace(channels=["conda-forge"],
                                 dependencies=["python=3.12", types.SimpleNamespace(pip=["rich", "-e ."])])
    with pytest.raises(lock.PipRequirementRefused, match=r"pip: '-e \.' is a pip option"):
        lock.RattlerLock().lock_environment(context, spec, platforms=("linux-64",))


@pytest.mark.parametrize("line", ACCEPTED)
def test_requirements_by_name_pass(lock: types.ModuleType, line: str) -> None:
    assert lock.pip_refusal(line) is None
    assert lock.checked_requirements([line]) == [str(lock.Requirement(line))]


def test_pip_runs_isolated_with_the_requirements_as_arguments(lock: types.ModuleType,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No requirements file (options, ${VAR}s and includes in it), no PIP_* variables or config files, wheels only,
    in an empty folder."""
    monkeypatch.setenv("PIP_INDEX_URL", "https://evil.example/simple")
    monkeypatch.setenv("pip_extra_index_url", "https://evil.example/simple")
    seen: dict[str, Any] = {}

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        seen.update(args=args, **kwargs)
        seen["files"] = sorted(os.listdir(kwargs["cwd"]))
        report = pathlib.Path(args[args.index("--report") + 1])
        report.write_text(json.dumps({"install": []}))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(lock.subprocess, "run", fake_run)
    assert lock.pip_report(["requests>=2", "numpy[extra]==1.0; python_version>'3'"], "3.12") == {"install": []}
    args, env = seen["args"], seen["env"]
    assert args[:5] == [sys.executable, "-m", "pip", "install", "--isolated"]
    assert args[args.index("--only-binary") + 1] == ":all:" and "-r" not in args
    assert args[args.index("--") + 1:] == ["requests>=2", 'numpy[extra]==1.0; python_version > "3"']
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not [k for k in env if k.upper().startswith("PIP_") and k != "PIP_CONFIG_FILE"]
    assert seen["files"] == [], "pip starts in an empty folder"


def test_a_local_sdist_by_file_url_is_never_built(lock: types.ModuleType, tmp_path: pathlib.Path) -> None:
    """With the real pip: a source archive with an in-tree build backend that needs nothing from an index and
    leaves a marker when imported. Given to pip as `evil @ file://...`, pip 23 and 26 import it despite
    `--only-binary :all:` (pip issue #12807); the lock plugin must refuse it first."""
    marker = tmp_path / "built"
    source = tmp_path / "evil-1.0"
    source.mkdir()
    (source / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                           'backend-path = ["."]\n')
    (source / "backend.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    archive = tmp_path / "evil-1.0.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(tmp_path), "evil-1.0"], check=True)
    for line in (f"evil @ {archive.as_uri()}", f"evil@{archive.as_uri()}", archive.as_uri(), str(archive),
                 f"-e {source}"):
        with pytest.raises(lock.PipRequirementRefused, match="wheels only"):
            lock.pip_locked([line], "3.11", "linux-64")
    assert not marker.exists()


def test_the_worker_hands_the_build_pod_wheels_only(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock (e.g. one a user uploaded, which skips the lock plugin) naming a source archive is refused before any
    download: the build pod's `pip install --no-deps` would build it."""
    monkeypatch.setattr(buildpod.requests, "get", lambda *a, **k: pytest.fail("downloaded a non-wheel"))
    for url in ("https://files/evil-1.0.tar.gz", "https://files/evil-1.0.zip#sha256=00",
                "https://files/evil-1.0.tar.gz?x=.whl", "git+https://github.com/example/evil.git"):
        spec = {"package": [{"name": "evil", "manager": "pip", "url": url, "hash": {"sha256": "0" * 64}}]}
        with pytest.raises(buildpod.BuildPodError, match="not a wheel"):
            buildpod.fetch_wheels(spec, tmp_path, tmp_path)
    assert not list(tmp_path.iterdir())
