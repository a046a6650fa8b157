"""An image spec: a conda environment file plus the image settings that sit beside it.

A spec is a directory (or the path of its `environment.yaml`). The directory holds:

- `environment.yaml`: `name`, `channels`, `dependencies` (conda match specs, and an optional `pip:` list);
- `image.yaml` (optional): how the environment becomes an image (base, prefix, user, entrypoint, env, ...);
- `rootfs/` (optional): files copied as they are into the image's top layer;
- `environment.lock` and `base.lock.json`: written by the build, pinning the conda packages and the base packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qhubctl.errors import UserError

SPEC_FILE = "environment.yaml"
IMAGE_FILE = "image.yaml"
LOCK_FILE = "environment.lock"
BASE_LOCK_FILE = "base.lock.json"
ROOTFS_DIR = "rootfs"

# Base root filesystems, each a list of Debian packages unpacked (never configured) into the image's first layer.
# `busybox`: a shell and core utilities in one static binary, enough for environments that need no C library.
# `glibc`: busybox plus the GNU C library, what conda-forge binaries expect from the host system.
BASES: dict[str, list[str]] = {
    "busybox": ["busybox-static"],
    "glibc": ["busybox-static", "libc6", "libgcc-s1"],
}

_IMAGE_KEYS = {
    "kind", "base", "prefix", "user", "home", "workdir", "entrypoint", "cmd", "env", "labels", "cuda", "max_layers",
}


@dataclass
class ImageSettings:
    """What `image.yaml` may set; every field has a default so the file is optional."""

    base: str = "glibc"
    prefix: str = "/opt/conda"
    user: int = 1000
    home: str = "/home/qhub"
    workdir: str = ""
    entrypoint: list[str] = field(default_factory=lambda: ["/usr/local/bin/qhub-entrypoint"])
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # CUDA driver version the solver may assume (the `__cuda` virtual package) for GPU images.
    cuda: str = ""
    max_layers: int = 60


@dataclass
class ImageSpec:
    """A parsed spec directory."""

    directory: Path
    name: str
    channels: list[str]
    dependencies: list[str]
    pip: list[str]
    image: ImageSettings

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_FILE

    @property
    def base_lock_path(self) -> Path:
        return self.directory / BASE_LOCK_FILE

    @property
    def rootfs_dir(self) -> Path:
        return self.directory / ROOTFS_DIR


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise UserError(f"{where}: expected a list of strings")
    return [str(v) for v in value]


def load_spec(path: str | Path) -> ImageSpec:
    """Read a spec directory (or its environment.yaml) and check its shape; raises UserError on any problem."""
    path = Path(path)
    if path.is_dir():
        directory, env_file = path, path / SPEC_FILE
    else:
        directory, env_file = path.parent, path
    if not env_file.is_file():
        raise UserError(
            f"no conda environment file at {env_file}",
            hint=f"a spec is a directory with {SPEC_FILE}, or with an {IMAGE_FILE} saying `kind: system`",
        )
    data = _read_yaml(env_file)
    if not isinstance(data, dict):
        raise UserError(f"{env_file}: expected a mapping with name, channels and dependencies")
    unknown = set(data) - {"name", "channels", "dependencies", "variables", "prefix"}
    if unknown:
        raise UserError(f"{env_file}: unknown keys {sorted(unknown)}")
    channels = _str_list(data.get("channels"), f"{env_file}: channels")
    if not channels:
        raise UserError(f"{env_file}: no channels listed", hint="add e.g. `channels: [conda-forge]`")
    deps: list[str] = []
    pip: list[str] = []
    for item in data.get("dependencies") or []:
        if isinstance(item, dict):
            if set(item) != {"pip"}:
                raise UserError(f"{env_file}: only a `pip:` list may appear as a mapping in dependencies")
            pip.extend(_str_list(item["pip"], f"{env_file}: dependencies.pip"))
        elif isinstance(item, (str, int, float)):
            deps.append(str(item))
        else:
            raise UserError(f"{env_file}: dependency {item!r} is neither a match spec nor a pip list")
    if not deps:
        raise UserError(f"{env_file}: no conda dependencies listed")
    image = ImageSettings()
    image_file = directory / IMAGE_FILE
    if image_file.is_file():
        raw = _read_yaml(image_file) or {}
        if not isinstance(raw, dict):
            raise UserError(f"{image_file}: expected a mapping")
        bad = set(raw) - _IMAGE_KEYS
        if raw.get("kind", "conda") != "conda":
            raise UserError(f"{image_file}: kind {raw['kind']!r} with an {SPEC_FILE}",
                            hint=f"a conda spec has `kind: conda` or no kind; `kind: system` specs have no {SPEC_FILE}")
        if bad:
            raise UserError(f"{image_file}: unknown keys {sorted(bad)}", hint=f"known: {sorted(_IMAGE_KEYS)}")
        for key in ("entrypoint", "cmd"):
            if key in raw:
                setattr(image, key, _str_list(raw[key], f"{image_file}: {key}"))
        for key in ("env", "labels"):
            if key in raw:
                if not isinstance(raw[key], dict):
                    raise UserError(f"{image_file}: {key} must be a mapping")
                setattr(image, key, {str(k): str(v) for k, v in raw[key].items()})
        for key in ("base", "prefix", "home", "workdir", "cuda"):
            if key in raw:
                setattr(image, key, str(raw[key]))
        for key in ("user", "max_layers"):
            if key in raw:
                if not isinstance(raw[key], int) or raw[key] < 0:
                    raise UserError(f"{image_file}: {key} must be a non-negative integer")
                setattr(image, key, raw[key])
    if image.base not in BASES:
        raise UserError(f"{image_file}: unknown base {image.base!r}", hint=f"one of {sorted(BASES)}")
    if not image.prefix.startswith("/") or image.prefix.rstrip("/") in ("", "/usr", "/etc", "/bin"):
        raise UserError(f"{image_file}: prefix must be an absolute path of its own, got {image.prefix!r}")
    if image.max_layers < 4:
        raise UserError(f"{image_file}: max_layers must be at least 4")
    name = str(data.get("name") or directory.resolve().name)
    return ImageSpec(directory, name, channels, deps, pip, image)


def spec_kind(path: str | Path) -> str:
    """"system" for a spec whose image.yaml says `kind: system`, else "conda"."""
    from qhubctl.images.sysspec import KIND, read_image_yaml

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    return KIND if read_image_yaml(directory).get("kind") == KIND else "conda"


def published_tag(path: str | Path, namespace: str = "qhub", app_version: str = "") -> str:
    """The reference a spec is published under, `<namespace>/<name>:<version>`.

    The version is the spec's own `version:` in image.yaml (node images, upstream programs such as Traefik) or,
    for specs without one (the platform images), `app_version`: the chart's appVersion. Conda specs carry no
    version; they always take `app_version`.
    """
    from qhubctl.images.sysspec import load_system_spec

    if spec_kind(path) == "system":
        spec = load_system_spec(path)
        name, version = spec.name, spec.version or app_version
    else:
        path = Path(path)
        name, version = (path if path.is_dir() else path.parent).resolve().name, app_version
    if not version:
        raise UserError(f"{path}: the spec has no `version:`; its tag is the chart's appVersion",
                        hint="pass --app-version (scripts/build_images.sh passes charts/qhub/Chart.yaml's appVersion)")
    return f"{namespace}/{name}:{version}"
