"""From a system spec (sysspec.py) to an image, without conda and without a container daemon.

Layers, bottom to top, one per source so that changing one thing changes one layer:

1. `debian:` packages and their dependency closure (debs.py), with busybox applet links when busybox is there;
2. one layer per `go:` binary (gobuild.py);
3. `pip:` packages (pythonpkgs.py), then `npm:` packages (npmpkgs.py);
4. the top layer: /etc/passwd and /etc/group with the image's user, /tmp, the home directory, the spec's
   image.yaml and lock under /usr/share/qhub/image/, and the spec's `rootfs/` files (or its `rootfs:` list's).

`system.lock.json` beside the spec records what went in; see `_check_go` and `debs.fetch` for how a rebuild holds
to it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhubctl.errors import UserError
from qhubctl.images import debs, gobuild
from qhubctl.images.oci import BlobStore, Image, ImageConfig, Layer, LayerBuilder, LayerIndex, assemble
from qhubctl.images.rootfs import Deb
from qhubctl.images.sysspec import SystemSpec, load_system_spec

GO_LAYER_FORMAT = 1
SPEC_COPY_DIR = "/usr/share/qhub/image"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


@dataclass
class SystemBuildResult:
    spec: SystemSpec
    image: Image
    relocked: bool
    seconds: float
    debs: list[Deb] = field(default_factory=list)
    go: list[gobuild.Built] = field(default_factory=list)


def read_lock(spec: SystemSpec) -> dict[str, Any]:
    if not spec.lock_path.is_file():
        return {}
    try:
        data = json.loads(spec.lock_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{spec.lock_path}: not valid JSON ({exc})", hint="delete it to lock again") from None
    return data if isinstance(data, dict) else {}


def _locked_debs(spec: SystemSpec, lock: dict[str, Any], relock: bool) -> list[Deb] | None:
    """The lock's Debian packages if it was made for the same `debian:` list (and --relock is not given)."""
    section = lock.get("debian") or {}
    if relock or section.get("request") != sorted(spec.debian):
        return None
    try:
        return [Deb(**d) for d in section.get("packages", [])]
    except TypeError:
        raise UserError(f"{spec.lock_path}: the debian section is malformed", hint="run with --relock") from None


def _go_entry(built: gobuild.Built) -> dict[str, str]:
    b = built.binary
    return {
        "module": b.module, "version": b.version, "package": b.package, "ldflags": b.ldflags,
        "source_sha256": gobuild.source_digest(b.source) if b.source else "",
        "go": built.go_version, "sha256": built.sha256,
    }


def _check_go(spec: SystemSpec, lock: dict[str, Any], built: gobuild.Built, relock: bool) -> None:
    """Same inputs (module, version, flags, source, Go version) must give the same binary as the lock says."""
    old = (lock.get("go") or {}).get(built.binary.name)
    new = _go_entry(built)
    if relock or not isinstance(old, dict):
        return
    same_inputs = all(old.get(k) == new[k] for k in new if k != "sha256")
    if same_inputs and old.get("sha256") != new["sha256"]:
        raise UserError(
            f"{built.binary.name}: built sha256 {new['sha256']} differs from {spec.lock_path.name} "
            f"({old.get('sha256')}) with the same module, version, flags and {built.go_version}",
            hint="the build is not reproducible on this machine (a changed GOFLAGS or GOEXPERIMENT?); "
            "--relock accepts the new binary",
        )


def _write_lock(spec: SystemSpec, deb_list: list[Deb], go: list[gobuild.Built], extra: dict[str, Any]) -> bool:
    data: dict[str, Any] = {}
    if spec.debian:
        data["debian"] = {"request": sorted(spec.debian), "packages": [d.__dict__ for d in deb_list]}
    if go:
        data["go"] = {b.binary.name: _go_entry(b) for b in go}
    data.update(extra)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if spec.lock_path.is_file() and spec.lock_path.read_text() == text:
        return False
    spec.lock_path.write_text(text)
    return True


def _go_layer(built: gobuild.Built, store: BlobStore) -> Layer:
    dest = built.binary.dest
    key = hashlib.sha256(f"{GO_LAYER_FORMAT}:{built.sha256}:{dest}".encode()).hexdigest()
    index = LayerIndex("go", key)
    if (cached := index.get(store)) is not None:
        return cached
    b = built.binary
    what = f"{b.package}@{b.version}" if b.module else f"{b.package} from the spec"
    builder = LayerBuilder(f"qhubctl images: go {b.name} ({what}, {built.go_version})")
    builder.add_path(dest, built.path)
    layer = builder.write(store)
    index.put(layer)
    return layer


def _top_layer(spec: SystemSpec, store: BlobStore) -> Layer:
    uid, name = spec.user, spec.username
    builder = LayerBuilder("qhubctl images: user, spec files and rootfs/")
    passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    group = "root:x:0:\nnogroup:x:65534:\n"
    if uid != 65534:
        passwd += f"{name}:x:{uid}:{uid}:{name}:{spec.home}:/sbin/nologin\n"
        group += f"{name}:x:{uid}:\n"
    builder.add_bytes("etc/passwd", passwd.encode())
    builder.add_bytes("etc/group", group.encode())
    builder.add_bytes("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    builder.add_dir("tmp", 0o1777)
    builder.add_dir("root", 0o700)
    if spec.home != "/tmp":  # /tmp as home: writable by any uid the image is run as
        builder.add_dir(spec.home, 0o755, uid=uid, gid=uid)
    for source in (spec.image_file, spec.lock_path):
        if source.is_file():
            builder.add_bytes(f"{SPEC_COPY_DIR}/{source.name}", source.read_bytes())
    for directory in spec.rootfs:
        builder.add_tree(directory, "/")
    return builder.write(store)


def image_config(spec: SystemSpec, extra_path: list[str] | None = None, version: str = "") -> ImageConfig:
    """The image's config; `version` labels an image whose spec has no `version:` (the tag it is built under)."""
    env = {"PATH": ":".join([*(extra_path or []), DEFAULT_PATH]), "HOME": spec.home}
    env.update(spec.env)
    labels = {"org.opencontainers.image.title": spec.name, "dev.qhub.spec": spec.name}
    if spec.version or version:
        labels["org.opencontainers.image.version"] = spec.version or version
    labels.update(spec.labels)
    return ImageConfig(
        user=f"{spec.user}:{spec.user}",
        env=[f"{k}={v}" for k, v in env.items()],
        entrypoint=spec.entrypoint,
        cmd=spec.cmd,
        workdir=spec.workdir,
        labels=labels,
    )


def build_system(spec_path: str | Path, *, relock: bool = False, store: BlobStore | None = None,
                 log: Log = lambda msg: None, version: str = "") -> SystemBuildResult:
    """Build the image of a system spec into the blob store; nothing leaves this machine here. `version` labels
    an image whose spec has no `version:` (see image_config)."""
    started = time.monotonic()
    spec = load_system_spec(spec_path)
    store = store or BlobStore()
    lock = read_lock(spec)
    layers: list[Layer] = []
    deb_list: list[Deb] = []
    if spec.debian:
        locked = _locked_debs(spec, lock, relock)
        deb_list = debs.fetch(spec.debian, locked, spec.lock_path.name)
        log(f"debian: {len(deb_list)} packages ({'from the lock' if locked is not None else 'resolved with apt'})")
        layers.append(debs.layer(deb_list, store))
    go_built = []
    for binary in spec.go:
        built = gobuild.build(binary, log)
        _check_go(spec, lock, built, relock)
        go_built.append(built)
        layers.append(_go_layer(built, store))
    extra_lock, extra_path = _language_layers(spec, lock, relock, deb_list, store, layers, log)
    relocked = _write_lock(spec, deb_list, go_built, extra_lock)
    layers.append(_top_layer(spec, store))
    image = assemble(store, layers, image_config(spec, extra_path, version))
    return SystemBuildResult(spec, image, relocked, time.monotonic() - started, deb_list, go_built)


def _language_layers(spec: SystemSpec, lock: dict[str, Any], relock: bool, deb_list: list[Deb],
                     store: BlobStore, layers: list[Layer], log: Log) -> tuple[dict[str, Any], list[str]]:
    """The pip and npm layers (appended to `layers`); returns their lock sections and PATH entries."""
    extra: dict[str, Any] = {}
    path: list[str] = []
    if spec.pip is not None:
        from qhubctl.images import pythonpkgs

        pip_layers, extra["pip"] = pythonpkgs.layers(spec, deb_list, store, log)
        layers.extend(pip_layers)
        path.append(f"{spec.pip.prefix}/bin")
    if spec.npm is not None:
        from qhubctl.images import npmpkgs

        layer, extra["npm"] = npmpkgs.layer(spec, store, log)
        layers.append(layer)
        path.append(f"{spec.npm.prefix}/node_modules/.bin")
    return extra, path
