"""From a spec to an image: base layer, conda package layers, top layer, config, manifest.

Layer split: each conda package gets a layer of its own while the image stays under `max_layers`; past that the
largest packages keep their own layer and the rest share a few buckets chosen by a hash of the package name, so
adding, removing or updating one package changes one layer. The top layer holds the spec, its lock and the spec's
`rootfs/` files. Package layers are cached by the packages' sha256, so a rebuild with nothing new installs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import rattler

from qhubctl.errors import UserError
from qhubctl.images import pip as pip_section
from qhubctl.images import rootfs
from qhubctl.images.oci import BlobStore, Image, ImageConfig, Layer, LayerBuilder, assemble, cache_root
from qhubctl.images.solve import PLATFORM, solve
from qhubctl.images.spec import IMAGE_FILE, ImageSpec, load_spec, spec_kind

LAYER_FORMAT = 1  # bump when the way package layers are laid out changes
BUCKETS = 8
# Written by installers into a prefix but not owned by any package; never part of an image.
_PREFIX_NOISE = {"CACHEDIR.TAG", "conda-meta/history"}
_RECORD_DROP = ("extracted_package_dir", "package_tarball_full_path")


@dataclass
class BuildResult:
    spec: ImageSpec
    image: Image
    records: list[rattler.RepoDataRecord]
    relocked: bool
    installed: bool  # whether packages had to be installed (some package layer was not cached)
    seconds: float
    layer_packages: list[list[str]] = field(default_factory=list)


def plan_layers(records: list[rattler.RepoDataRecord], budget: int) -> list[list[rattler.RepoDataRecord]]:
    """Group records into at most `budget` layers (see the module docstring)."""
    records = sorted(records, key=lambda r: r.name.normalized)
    if len(records) <= budget:
        return [[r] for r in records]
    buckets = min(BUCKETS, max(1, budget // 4))
    singles = budget - buckets
    by_size = sorted(records, key=lambda r: (-(r.size or 0), r.name.normalized))
    own = {r.name.normalized for r in by_size[:singles]}
    groups = [[r] for r in records if r.name.normalized in own]
    shared: dict[int, list[rattler.RepoDataRecord]] = {}
    for r in records:
        if r.name.normalized not in own:
            shared.setdefault(zlib.crc32(r.name.normalized.encode()) % buckets, []).append(r)
    out = groups + [shared[k] for k in sorted(shared)]
    return sorted(out, key=lambda g: g[0].name.normalized)


def _record_id(record: rattler.RepoDataRecord) -> str:
    sha = record.sha256.hex() if record.sha256 else (record.md5.hex() if record.md5 else record.url)
    return f"{record.name.normalized}-{record.version}-{record.build}:{sha}"


def _group_key(group: list[rattler.RepoDataRecord], prefix: str) -> str:
    data = {"format": LAYER_FORMAT, "prefix": prefix, "packages": sorted(_record_id(r) for r in group)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _pkg_cache() -> Path:
    path = cache_root() / "pkgs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install(records: list[rattler.RepoDataRecord], target: Path, prefix: str) -> None:
    try:
        asyncio.run(
            rattler.install(
                records,
                target_prefix=target,
                cache_dir=_pkg_cache(),
                alternative_target_prefix=prefix,
                platform=rattler.Subdir(PLATFORM),
                execute_link_scripts=False,
                show_progress=False,
            )
        )
    except Exception as exc:
        raise UserError(f"installing the environment failed: {exc}") from None


def _normalised_record(path: Path) -> bytes:
    data = json.loads(path.read_text())
    for key in _RECORD_DROP:
        data.pop(key, None)
    if isinstance(data.get("link"), dict):
        data["link"] = {"type": data["link"].get("type", 1)}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _package_layer(group: list[rattler.RepoDataRecord], installed: Path, prefix: str, store: BlobStore) -> Layer:
    names = ", ".join(f"{r.name.normalized} {r.version}" for r in group)
    builder = LayerBuilder(f"qhubctl images: conda {names}")
    for record in group:
        stem = f"{record.name.normalized}-{record.version}-{record.build}"
        meta = installed / "conda-meta" / f"{stem}.json"
        if not meta.is_file():
            raise UserError(f"installer left no conda-meta record for {stem}")
        prefix_record = rattler.PrefixRecord.from_path(meta)
        for rel in prefix_record.files:
            rel = str(rel)
            source = installed / rel
            if os.path.lexists(source):
                builder.add_path(f"{prefix}/{rel}", source)
        builder.add_bytes(f"{prefix}/conda-meta/{stem}.json", _normalised_record(meta))
    return builder.write(store)


def _top_layer(spec: ImageSpec, extra: Path | None, store: BlobStore) -> Layer:
    image = spec.image
    builder = LayerBuilder("qhubctl images: spec files")
    meta = f"{image.prefix}/conda-meta"
    builder.add_bytes(f"{meta}/history", b"")
    for source in (spec.directory / "environment.yaml", spec.directory / IMAGE_FILE, spec.lock_path):
        if source.is_file():
            builder.add_bytes(f"{meta}/qhub/{source.name}", source.read_bytes())
    if extra is not None:
        builder.add_tree(extra, image.prefix)
    if spec.rootfs_dir.is_dir():
        builder.add_tree(spec.rootfs_dir, "/")
    return builder.write(store)


def image_config(spec: ImageSpec) -> ImageConfig:
    image = spec.image
    env = {
        "PATH": f"{image.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "CONDA_PREFIX": image.prefix,
        "CONDA_DEFAULT_ENV": spec.name,
        "HOME": image.home,
        "USER": Path(image.home).name or "qhub",
        "LANG": "C.UTF-8",
        "SHELL": "/bin/sh",
    }
    env.update(image.env)
    labels = {"org.opencontainers.image.title": spec.name, "dev.qhub.spec": spec.name, **image.labels}
    return ImageConfig(
        user=f"{image.user}:{image.user}",
        env=[f"{k}={v}" for k, v in env.items()],
        entrypoint=image.entrypoint,
        cmd=image.cmd,
        workdir=image.workdir or image.home,
        labels=labels,
    )


def build(spec_path: str | Path, *, relock: bool = False, store: BlobStore | None = None,
          log=lambda msg: None, version: str = "") -> BuildResult:  # noqa: ANN001 - a plain callable
    """Build the image of a spec into the blob store; nothing leaves this machine here.

    A system spec (image.yaml with `kind: system`) goes to `system.build_system`, which returns a
    SystemBuildResult (it has `image` and `seconds` like BuildResult, and no conda records). `version` (the tag
    being built) labels a system image whose spec has no `version:` of its own.
    """
    if spec_kind(spec_path) == "system":
        from qhubctl.images.system import build_system

        return build_system(spec_path, relock=relock, store=store, log=log,  # type: ignore[return-value]
                            version=version)
    started = time.monotonic()
    spec = load_spec(spec_path)
    store = store or BlobStore()
    fetched: list[list[rootfs.Deb]] = []

    def glibc() -> str | None:
        fetched.append(rootfs.fetch_base(spec))
        return rootfs.glibc_version(fetched[-1])

    records, relocked = solve(spec, glibc=glibc, relock=relock)
    debs = fetched[-1] if fetched else rootfs.fetch_base(spec)
    log(f"{len(records)} conda packages ({'solved, lock written' if relocked else 'from the lock'})")
    pip_reqs = pip_section.requirements(spec, records)  # checks the pip section before any work
    budget = spec.image.max_layers - 2
    groups = plan_layers(records, budget)
    index_dir = cache_root() / "layers"
    index_dir.mkdir(parents=True, exist_ok=True)
    cached: dict[int, Layer] = {}
    for i, group in enumerate(groups):
        index = index_dir / f"{_group_key(group, spec.image.prefix)}.json"
        if index.is_file():
            layer = Layer.from_json(json.loads(index.read_text()))
            if store.has(layer.digest):
                cached[i] = layer
    layers = [rootfs.base_layer(spec, debs, store)]
    installed = len(cached) < len(groups) or bool(pip_reqs)
    with tempfile.TemporaryDirectory(prefix="qhub-image-") as tmp:
        extra = None
        if installed:
            target = Path(tmp) / "prefix"
            log(f"installing {len(records)} packages")
            _install(records, target, spec.image.prefix)
            if pip_reqs:
                extra = pip_section.install(pip_reqs, records, Path(tmp) / "pip", spec)
        for i, group in enumerate(groups):
            if i not in cached:
                layer = _package_layer(group, Path(tmp) / "prefix", spec.image.prefix, store)
                (index_dir / f"{_group_key(group, spec.image.prefix)}.json").write_text(json.dumps(layer.to_json()))
                cached[i] = layer
            layers.append(cached[i])
        layers.append(_top_layer(spec, extra, store))
    image = assemble(store, layers, image_config(spec))
    return BuildResult(
        spec, image, records, relocked, installed, time.monotonic() - started,
        [[r.name.normalized for r in g] for g in groups],
    )


def clear_cache() -> None:
    """Forget every cached layer and blob (packages and debs stay): the next build lays everything out again."""
    for sub in ("layers", "blobs"):
        shutil.rmtree(cache_root() / sub, ignore_errors=True)
