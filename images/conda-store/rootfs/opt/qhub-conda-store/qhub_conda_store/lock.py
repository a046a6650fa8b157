"""The `rattler` lock plugin of conda-store: a spec solved by py-rattler into a conda-lock (v1) lockfile.

Channels are the spec's (or conda-store's default channels), named channels resolve under conda-store's
`conda_channel_alias` (a mirror in an air-gapped cluster). pip packages are resolved by pip against the Python
version of the solve, to wheels only (`--only-binary :all:`): a build never runs a package's setup code. The
worker running pip holds conda-store's secrets, so a pip entry must be a plain requirement by name (PEP 508:
name, extras, versions, markers); direct references (`name @ URL`), VCS URLs and pip options are refused before
pip runs (pip's `--only-binary` does not cover direct references), and pip ignores PIP_* variables and config
files and is given `qhub_conda_store.pypi.INDEX_URL` (PyPI), so no other index is asked.
Enable with `c.CondaStore.lock_backend = "rattler"` after `register()` (conda-store 2025.x loads only its
built-in plugins, so the config adds this one to that list).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import typing

import rattler
from conda_lock.lockfile.v1.models import HashModel, LockedDependency, Lockfile, LockMeta
from conda_lock.models.channel import Channel as LockChannel
from conda_store_server._internal import conda_utils
from conda_store_server.plugins import BUILTIN_PLUGINS
from conda_store_server.plugins.hookspec import hookimpl
from conda_store_server.plugins.types import lock, types
from packaging.requirements import InvalidRequirement, Requirement

from qhub_conda_store.pypi import INDEX_URL

NAME = "rattler"
# manylinux tags pip may pick for linux-64 wheels (glibc 2.17 up to Debian bookworm's 2.36)
MANYLINUX = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 37)] + ["manylinux2014_x86_64"]


class PipResolveError(RuntimeError):
    """pip could not resolve the spec's pip section to wheels."""


class PipRequirementRefused(PipResolveError):
    """A pip entry is not a plain requirement by name, so pip is not run on it."""


WHEELS_ONLY = ("only requirements by name from the index are allowed (wheels only); publish a wheel to the "
               "index or add the package from a conda channel")


def pip_refusal(line: str) -> str | None:
    """Why `line` of a pip section may not be given to pip, or None when it is a plain PEP 508 requirement by
    name (name, extras, version specifiers, environment markers)."""
    if any(token.startswith("-") for token in line.split()):  # pip reads a token starting with - as an option
        return f"pip: {line!r} is a pip option; options are not allowed, remove it ({WHEELS_ONLY})"
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        what = "a URL" if "://" in line else "not a requirement by name (PEP 508, e.g. 'requests>=2')"
        return f"pip: {line!r} is {what}; {WHEELS_ONLY}"
    if requirement.url:
        return f"pip: {line!r} is a direct reference to {requirement.url}; {WHEELS_ONLY}"
    return None


def checked_requirements(requirements: list[str]) -> list[str]:
    """The pip section in the form handed to pip (as parsed by packaging), or PipRequirementRefused naming every
    entry that is not a plain requirement by name: the whole build is refused."""
    refusals = [why for why in map(pip_refusal, requirements) if why]
    if refusals:
        raise PipRequirementRefused("\n".join(refusals))
    return [str(Requirement(line)) for line in requirements]


def isolated_pip_env() -> dict[str, str]:
    """The worker's environment without PIP_* variables, and with pip's config files off (os.devnull), so
    neither can point pip at another index or add options."""
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull}


def split_dependencies(spec) -> tuple[list[str], list[str]]:
    """(conda match specs, pip requirements) of a conda-store specification."""
    conda, pip = [], []
    for dep in spec.dependencies:
        if isinstance(dep, str):
            conda.append(dep)
        else:
            pip.extend(dep.pip)
    return conda, pip


def solve_conda(specs: list[str], channels: list[str], alias: str, platform: str,
                log: typing.Callable[[str], None]) -> list[rattler.RepoDataRecord]:
    config = rattler.ChannelConfig(channel_alias=alias.rstrip("/") + "/")
    sources = [rattler.Channel(c, config) for c in channels]
    log(f"solving {specs} for {platform} on {[s.base_url for s in sources]}")
    virtual = rattler.VirtualPackage.detect() if platform == conda_utils.conda_platform() else []
    return asyncio.run(rattler.solve(sources, specs, platforms=[platform, "noarch"], virtual_packages=virtual))


def conda_locked(record: rattler.RepoDataRecord, platform: str) -> LockedDependency:
    deps = {}
    for dep in record.depends:
        name, _, rest = dep.partition(" ")
        deps[name] = rest.strip() or "*"
    return LockedDependency(
        name=record.name.normalized, version=str(record.version), manager="conda", platform=platform,
        dependencies=deps, url=record.url, build=str(record.build), category="main", optional=False,
        hash=HashModel(md5=record.md5.hex() if record.md5 else None,
                       sha256=record.sha256.hex() if record.sha256 else None))


def python_version(records: list[rattler.RepoDataRecord]) -> str | None:
    for record in records:
        if record.name.normalized == "python":
            return ".".join(str(record.version).split(".")[:2])
    return None


def pip_report(requirements: list[str], python: str) -> dict:
    """pip's installation report for `requirements` on linux-64 CPython `python`, wheels only."""
    checked = checked_requirements(requirements)  # before anything is written or run
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        # --isolated: no PIP_* variables or user config (isolated_pip_env also drops the config files);
        # requirements as arguments after --, not a requirements file: no options, ${VAR}s or includes in them;
        # cwd: the empty temporary folder, so no name is read as a local archive; --index-url: the one index
        # whose file hosts the worker downloads the locked wheels from (buildpod.fetch_wheels)
        args = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                "--quiet", "--disable-pip-version-check", "--index-url", INDEX_URL,
                "--only-binary", ":all:", "--implementation", "cp",
                "--python-version", python, *[a for tag in MANYLINUX for a in ("--platform", tag)],
                "--target", os.path.join(tmp, "target"), "--report", report, "--", *checked]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp, env=isolated_pip_env())
        if done.returncode:
            raise PipResolveError(f"pip could not resolve {requirements} to wheels:\n{done.stderr[-3000:]}")
        with open(report) as f:
            return json.load(f)


def pip_locked(requirements: list[str], python: str | None, platform: str) -> list[LockedDependency]:
    if not requirements:
        return []
    if python is None:
        raise PipResolveError("the spec has pip packages but no python among its conda packages")
    locked = []
    for item in pip_report(requirements, python)["install"]:
        meta, info = item["metadata"], item["download_info"]
        sha256 = (info.get("archive_info") or {}).get("hashes", {}).get("sha256")
        locked.append(LockedDependency(
            name=meta["name"], version=meta["version"], manager="pip", platform=platform, dependencies={},
            url=info["url"], hash=HashModel(sha256=sha256), category="main", optional=False))
    return locked


def content_hash(spec, platform: str) -> str:
    return hashlib.sha256(json.dumps([spec.model_dump(), platform], sort_keys=True).encode()).hexdigest()


class RattlerLock(lock.LockPlugin):
    """Solve with py-rattler; pip sections to wheels with pip."""

    def lock_environment(self, context, spec, platforms=(conda_utils.conda_platform(),)) -> dict:
        settings = context.conda_store.get_settings()
        channels = spec.channels or settings.conda_default_channels
        conda_specs, pip_requirements = split_dependencies(spec)
        checked_requirements(pip_requirements)  # a refused pip entry fails the build before any solve
        packages: list[LockedDependency] = []
        for platform in platforms:
            records = solve_conda(conda_specs, channels, settings.conda_channel_alias, platform, context.log.info)
            packages += [conda_locked(r, platform) for r in records]
            packages += pip_locked(pip_requirements, python_version(records), platform)
            context.log.info(f"{platform}: {len(records)} conda packages, "
                             f"{sum(p.manager == 'pip' for p in packages)} pip packages")
        config = rattler.ChannelConfig(channel_alias=settings.conda_channel_alias.rstrip("/") + "/")
        meta = LockMeta(content_hash={p: content_hash(spec, p) for p in platforms}, platforms=list(platforms),
                        channels=[LockChannel.from_string(rattler.Channel(c, config).base_url.rstrip("/"))
                                  for c in channels],
                        sources=["environment.yaml"])
        return Lockfile(package=packages, metadata=meta).dict_for_output()


@hookimpl
def lock_plugins():
    yield types.TypeLockPlugin(name=NAME, synopsis="Solve with py-rattler (conda), pip wheels only",
                               backend=RattlerLock)


def register() -> None:
    """Add this plugin to conda-store's built-in plugins (call from conda_store_config.py)."""
    module = sys.modules[__name__]
    if module not in BUILTIN_PLUGINS:
        BUILTIN_PLUGINS.append(module)
