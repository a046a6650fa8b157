"""conda.base.context for the vendored conda modules conda-store imports: the settings they read, with
conda's defaults (conda.anaconda.org channel alias, no custom channels, this host's platform)."""

from __future__ import annotations

import platform
from functools import cached_property

_SUBDIRS = {("Linux", "x86_64"): "linux-64", ("Linux", "aarch64"): "linux-aarch64",
            ("Darwin", "x86_64"): "osx-64", ("Darwin", "arm64"): "osx-arm64"}
_KNOWN = ("noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "osx-64", "osx-arm64",
          "win-64", "win-arm64", "linux-32", "win-32", "emscripten-wasm32", "wasi-wasm32", "zos-z")


class Context:
    subdir = _SUBDIRS.get((platform.system(), platform.machine()), "linux-64")
    subdirs = (subdir, "noarch")
    known_subdirs = frozenset(_KNOWN)
    custom_channels: dict = {}
    migrated_channel_aliases: tuple = ()
    migrated_custom_channels: dict = {}
    offline = debug = json = info = False
    pip_interop_enabled = use_only_tar_bz2 = separate_format_cache = clobber = False
    allow_cycles = True
    safety_checks = "warn"
    path_conflict = "clobber"
    local_build_root = "/tmp/conda-bld"
    root_prefix = "/opt/conda"

    @cached_property
    def channel_alias(self):
        from ..models.channel import Channel

        return Channel("https://conda.anaconda.org")

    @cached_property
    def custom_multichannels(self):
        from ..models.channel import Channel

        return {"defaults": tuple(Channel(u) for u in ("https://repo.anaconda.com/pkgs/main",
                                                       "https://repo.anaconda.com/pkgs/r")),
                "local": ()}

    def register_reset_callaback(self, callback):
        pass

    def update(self, *args, **kwargs):
        pass


context = Context()


def reset_context(*args, **kwargs):
    return context
