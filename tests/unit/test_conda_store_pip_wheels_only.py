"""pip sections of conda-store builds stay wheels only (images/conda-store, qhub_conda_store.lock and .buildpod).

The lock plugin runs pip in the worker, which holds conda-store's secrets: a pip entry that is not a plain
requirement by name (a direct reference, a VCS URL, a pip option) is refused, naming the entry, before anything
is written or pip runs; pip runs isolated from PIP_* variables and config files. The worker hands the build pod
wheels only, whatever the lock says, and of a lock (an uploaded one skips the plugin) it takes only a sha256 that
is one and an https URL on the index's file host, before anything is written or asked. conda-store and conda-lock are not installed here: lock.py is imported with
stand-ins for the names it takes from them (none of which the code under test calls).
"""

from __future__ import annotations

import hashlib
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
    """A real source archive with an in-tree build backend that needs nothing from an index and leaves a marker
    when imported. Given to pip as `evil @ file://...`, pip 23 and 26 import it despite `--only-binary :all:`
    (pip issue #12807). The lock plugin refuses every form of it before pip runs, so pip never runs here; were
    one let through, the real pip would build it and the marker would appear."""
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


# -- a lock the worker did not make (uploaded): what it may make the worker write and ask for --------------------

WHEEL = "https://files.pythonhosted.org/packages/ab/cd/rich-13.9.4-py3-none-any.whl"


def _pip_lock(url: str = WHEEL, sha256: Any = "0" * 64) -> dict[str, Any]:
    return {"package": [{"name": "rich", "manager": "pip", "url": url, "hash": {"sha256": sha256}}]}


def _tree(root: pathlib.Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


class FakeAnswer:
    """What requests.get(..., stream=True) returns, as far as the worker reads it."""

    def __init__(self, status: int, content: bytes = b"") -> None:
        self.status_code, self.content = status, content
        self.reason = {200: "OK", 302: "Found", 404: "Not Found"}[status]

    def __enter__(self) -> FakeAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, size: int) -> Iterator[bytes]:
        yield self.content


@pytest.mark.parametrize("sha256", ["../../elsewhere", "../" + "0" * 61, "0" * 63, "0" * 65, "A" * 64,
                                    "0" * 64 + "/../..", "0" * 64 + "\n", "/tmp", ["0" * 64]])
def test_a_locked_sha256_that_is_not_one_is_refused_before_anything_is_written(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, sha256: Any) -> None:
    """The sha256 names the wheel's folder: `../../elsewhere` would have made folders outside `wheels/` and, on
    the hash mismatch, removed the .whl found there."""
    victim = tmp_path / "elsewhere" / "rich-13.9.4-py3-none-any.whl"
    victim.parent.mkdir()
    victim.write_bytes(b"someone's wheel")
    wheels = tmp_path / "store" / "wheels"
    wheels.mkdir(parents=True)
    before = _tree(tmp_path)
    monkeypatch.setattr(buildpod.requests, "get", lambda *a, **k: pytest.fail("downloaded for a bad sha256"))
    with pytest.raises(buildpod.BuildPodError, match="not 64 lower-case hex digits; lock the environment again"):
        buildpod.fetch_wheels(_pip_lock(sha256=sha256), wheels, wheels)
    assert _tree(tmp_path) == before


def test_a_bad_entry_anywhere_in_the_lock_stops_it_before_the_first_download(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildpod.requests, "get", lambda *a, **k: pytest.fail("downloaded before checking all"))
    lock = _pip_lock()
    lock["package"].append({**_pip_lock(sha256="../x")["package"][0], "name": "evil"})
    with pytest.raises(buildpod.BuildPodError, match="pip package evil is locked with sha256 '../x'"):
        buildpod.fetch_wheels(lock, tmp_path, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("url", [
    WHEEL.replace("https://", "http://"),
    "https://evil.example/rich-13.9.4-py3-none-any.whl",
    "https://files.pythonhosted.org.evil.example/rich-13.9.4-py3-none-any.whl",
    "https://files.pythonhosted.org:8443/rich-13.9.4-py3-none-any.whl",
    "https://files.pythonhosted.org@10.0.0.1/rich-13.9.4-py3-none-any.whl",
    "https://10.0.0.1\\@files.pythonhosted.org/rich-13.9.4-py3-none-any.whl",
    "https://kubernetes.default.svc:443/rich-13.9.4-py3-none-any.whl",
    "https://qhub-conda-store-server:5000/rich-13.9.4-py3-none-any.whl",
    "https://pypi.org/rich-13.9.4-py3-none-any.whl",
    "https://[::1/rich-13.9.4-py3-none-any.whl",
    "https://files.python\thosted.org/rich-13.9.4-py3-none-any.whl",
    "file:///opt/conda-store/rich-13.9.4-py3-none-any.whl",
    "ftp://files.pythonhosted.org/rich-13.9.4-py3-none-any.whl",
    "gopher://files.pythonhosted.org/rich-13.9.4-py3-none-any.whl",
    "//files.pythonhosted.org/rich-13.9.4-py3-none-any.whl",
    "rich-13.9.4-py3-none-any.whl",
])
def test_a_wheel_from_anywhere_but_the_index_is_refused_without_a_request(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The worker may reach port 443 (and 6443) anywhere: a lock must not make it ask internal services. Any other
    scheme is refused the same way, with a message, not a traceback from requests."""
    monkeypatch.setattr(buildpod.requests, "get", lambda *a, **k: pytest.fail(f"asked {a[0]}"))
    with pytest.raises(buildpod.BuildPodError) as refused:
        buildpod.fetch_wheels(_pip_lock(url), tmp_path, tmp_path)
    assert str(refused.value) == (
        f"pip package rich is locked to {url}; wheels are downloaded only over https from files.pythonhosted.org "
        "(PyPI, the index the lock plugin uses): lock the environment again (or correct the uploaded lockfile), "
        "or add the package from a conda channel")
    assert not list(tmp_path.iterdir())


def test_the_allowed_hosts_are_those_of_the_index_the_lock_plugin_asks(lock: types.ModuleType,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One declaration (qhub_conda_store.pypi) for the index pip gets and the hosts the worker downloads from."""
    seen: list[str] = []

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        seen.extend(args)
        pathlib.Path(args[args.index("--report") + 1]).write_text(json.dumps({"install": []}))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(lock.subprocess, "run", fake_run)
    lock.pip_report(["rich"], "3.12")
    assert seen[seen.index("--index-url") + 1] == lock.INDEX_URL == buildpod.pypi.INDEX_URL == "https://pypi.org/simple"
    assert buildpod.pypi.FILE_HOSTS == {"files.pythonhosted.org"}


@pytest.mark.parametrize("error", [buildpod.requests.exceptions.InvalidSchema("No connection adapters were found"),
                                   buildpod.requests.exceptions.ConnectionError("connection refused"),
                                   buildpod.requests.exceptions.ChunkedEncodingError("connection reset")])
def test_a_failed_download_is_a_build_error_naming_the_entry(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                             error: Exception) -> None:
    def failing(*args: Any, **kwargs: Any) -> FakeAnswer:
        raise error

    monkeypatch.setattr(buildpod.requests, "get", failing)
    with pytest.raises(buildpod.BuildPodError) as failed:
        buildpod.fetch_wheels(_pip_lock(), tmp_path, tmp_path)
    assert str(failed.value) == (f"pip package rich: downloading {WHEEL} failed ({error}); check that the worker "
                                 "reaches the index, or lock the environment again")
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.whl"))


@pytest.mark.parametrize("status", [302, 404])
def test_an_answer_other_than_the_wheel_is_a_build_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                         status: int) -> None:
    """Not even a redirect is followed: only the URL checked is asked."""
    asked: dict[str, Any] = {}

    def get(url: str, **kwargs: Any) -> FakeAnswer:
        asked.update(kwargs)
        return FakeAnswer(status, b"<html>")

    monkeypatch.setattr(buildpod.requests, "get", get)
    with pytest.raises(buildpod.BuildPodError, match=f"pip package rich: {WHEEL} answered {status} "):
        buildpod.fetch_wheels(_pip_lock(), tmp_path, tmp_path)
    assert asked["allow_redirects"] is False
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.whl"))


def test_a_wheel_from_the_index_is_downloaded_checked_and_handed_over(tmp_path: pathlib.Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"a wheel's bytes"
    sha = hashlib.sha256(content).hexdigest()
    asked: list[str] = []

    def get(url: str, **kwargs: Any) -> FakeAnswer:
        asked.append(url)
        assert kwargs["stream"] is True and kwargs["allow_redirects"] is False and kwargs["timeout"]
        return FakeAnswer(200, content)

    monkeypatch.setattr(buildpod.requests, "get", get)
    local = buildpod.fetch_wheels(_pip_lock(sha256=sha), tmp_path / "wheels", pathlib.Path("/mnt/wheels"))
    assert asked == [WHEEL]
    assert (tmp_path / "wheels" / sha / "rich-13.9.4-py3-none-any.whl").read_bytes() == content
    assert local["package"][0]["url"] == f"file:///mnt/wheels/{sha}/rich-13.9.4-py3-none-any.whl"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["rich-13.9.4-py3-none-any.whl"]
