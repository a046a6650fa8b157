"""Solving a spec into a locked set of conda packages, with py-rattler, and keeping the lock next to the spec.

Named channels (`conda-forge`) resolve under a channel alias: https://conda.anaconda.org/ by default, or a local
mirror given by $QHUB_CHANNEL_ALIAS (a URL or a directory holding one folder per channel).
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import rattler
from rattler.exceptions import SolverError

from qhubctl.errors import UserError
from qhubctl.images.spec import ImageSpec

PLATFORM = "linux-64"
SUBDIRS = [PLATFORM, "noarch"]
LOCK_ENV = "default"
DEFAULT_ALIAS = "https://conda.anaconda.org/"
PROBE_TIMEOUT = 10.0


class SpecError(UserError):
    """The spec cannot be turned into a set of packages: a bad pin, an unknown channel, or no solution."""


def channel_alias() -> str:
    alias = os.environ.get("QHUB_CHANNEL_ALIAS", "").strip() or DEFAULT_ALIAS
    if "://" not in alias:
        alias = Path(alias).resolve().as_uri()
    return alias.rstrip("/") + "/"


def resolve_channels(names: list[str]) -> list[rattler.Channel]:
    config = rattler.ChannelConfig(channel_alias=channel_alias())
    channels = []
    for name in names:
        try:
            channels.append(rattler.Channel(name, config))
        except Exception as exc:  # rattler raises its own InvalidChannelError
            raise SpecError(f"channel {name!r} is not a valid channel name or URL: {exc}") from None
    return channels


def parse_specs(deps: list[str]) -> list[rattler.MatchSpec]:
    specs = []
    for dep in deps:
        try:
            specs.append(rattler.MatchSpec(dep))
        except Exception as exc:  # InvalidMatchSpecError and its relatives: any parse failure is a bad pin
            raise SpecError(f"dependency {dep!r} is not a valid conda match spec: {exc}") from None
    return specs


def _probe(channel: rattler.Channel, name: str) -> None:
    """Fail with a clear message if the channel has no readable noarch/repodata.json."""
    base = channel.base_url.rstrip("/") + "/"
    url = base + "noarch/repodata.json"
    if url.startswith("file://"):
        path = Path(urllib.request.url2pathname(url[len("file://") :]))
        if not path.is_file():
            raise SpecError(
                f"channel {name!r} not found: {path} does not exist",
                hint="a local channel needs noarch/repodata.json (index it with `rattler-index fs` or py-rattler)",
            )
        return
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):  # noqa: S310 - http(s) channel URL
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise SpecError(f"channel {name!r} not found at {base} (HTTP {exc.code})") from None
        if exc.code < 500 and exc.code not in (401, 403):
            return
        raise SpecError(f"channel {name!r} at {base} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SpecError(
            f"channel {name!r} is unreachable at {base}: {reason}",
            hint="set QHUB_CHANNEL_ALIAS to a reachable mirror (URL or directory) that serves this channel",
        ) from None


def lock_records(spec: ImageSpec) -> list[rattler.RepoDataRecord] | None:
    """The records of the spec's lock file, or None if there is none."""
    if not spec.lock_path.is_file():
        return None
    try:
        lock = rattler.LockFile.from_path(spec.lock_path)
    except Exception as exc:
        raise SpecError(f"{spec.lock_path}: unreadable lock file: {exc}", hint="delete it to solve afresh") from None
    env = lock.environment(LOCK_ENV)
    if env is None:
        return None
    for platform in lock.platforms():
        if platform.name == PLATFORM:
            return list(env.conda_repodata_records_for_platform(platform) or [])
    return None


def lock_satisfies(records: list[rattler.RepoDataRecord], specs: list[rattler.MatchSpec],
                   channels: list[rattler.Channel]) -> bool:
    """True when the locked records are exactly what the specs need: each spec met, every dependency met,
    nothing extra, and every record from one of the spec's channels."""
    bases = {c.base_url.rstrip("/") for c in channels}
    by_name = {r.name.normalized: r for r in records}
    if len(by_name) != len(records):
        return False
    for record in records:
        if record.channel and record.channel.rstrip("/") not in bases:
            return False
    needed: set[str] = set()
    todo = []
    for spec in specs:
        name = spec.name.normalized if spec.name else None
        if name is None or name not in by_name or not spec.matches(by_name[name]):
            return False
        todo.append(name)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for dep in by_name[name].depends:
            dep_spec = rattler.MatchSpec(dep)
            dep_name = dep_spec.name.normalized
            if dep_name.startswith("__"):
                continue
            if dep_name not in by_name or not dep_spec.matches(by_name[dep_name]):
                return False
            todo.append(dep_name)
    return needed == set(by_name)


def virtual_packages(spec: ImageSpec, glibc: str | None) -> list[rattler.GenericVirtualPackage]:
    def vp(name: str, version: str, build: str = "0") -> rattler.GenericVirtualPackage:
        return rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
        )

    out = [vp("__unix", "0"), vp("__linux", "5.10"), vp("__archspec", "1", "x86_64")]
    if glibc:
        out.append(vp("__glibc", glibc))
    if spec.image.cuda:
        out.append(vp("__cuda", spec.image.cuda))
    return out


def solve(spec: ImageSpec, *, glibc: Callable[[], str | None], relock: bool = False,
          ) -> tuple[list[rattler.RepoDataRecord], bool]:
    """Return the records to install and whether the lock file was (re)written.

    A lock that still satisfies the spec is used as it is, without touching the channels. Otherwise the spec is
    solved again, preferring the previously locked versions so an edit moves as few packages as possible.
    `glibc` gives the base's C library version; it is called only for a fresh solve, after the channels answered.
    """
    specs = parse_specs(spec.dependencies)
    channels = resolve_channels(spec.channels)
    locked = None if relock else lock_records(spec)
    if locked and lock_satisfies(locked, specs, channels):
        return locked, False
    for channel, name in zip(channels, spec.channels, strict=True):
        _probe(channel, name)
    try:
        records = asyncio.run(
            rattler.solve(
                sources=channels,
                specs=specs,
                platforms=SUBDIRS,
                locked_packages=locked or None,
                virtual_packages=virtual_packages(spec, glibc()),
                timeout=None,
            )
        )
    except SolverError as exc:
        raise SpecError(f"the environment of {spec.directory} cannot be solved:\n{exc}") from None
    except Exception as exc:  # fetch and gateway errors: the channel could not be read
        raise SpecError(f"reading the channels {spec.channels} failed: {exc}") from None
    records = sorted(records, key=lambda r: r.name.normalized)
    write_lock(spec, records, channels)
    return records, True


def write_lock(spec: ImageSpec, records: list[rattler.RepoDataRecord], channels: list[rattler.Channel]) -> None:
    platform = rattler.LockPlatform(PLATFORM)
    lock = rattler.LockFile([platform])
    lock.set_channels(LOCK_ENV, [rattler.LockChannel(c.base_url) for c in channels])
    for record in records:
        lock.add_conda_package(LOCK_ENV, platform, record)
    lock.to_path(spec.lock_path)
