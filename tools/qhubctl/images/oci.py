"""A small OCI image writer: reproducible layer tars, a content-addressed blob store, config and manifest, and the
two file outputs (OCI image layout directory, `docker load` archive).

Reproducible means the same inputs give the same bytes: tar entries sorted by path, every mtime fixed, owners
fixed (root, except paths given to the user), no user or group names, permissions normalised, gzip headers without
a name or time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"

# Every entry's mtime: 2000-01-01T00:00:00Z (tools treat 0 as "unknown"; any fixed value is reproducible).
FIXED_MTIME = 946_684_800
FIXED_CREATED = "2000-01-01T00:00:00Z"
GZIP_LEVEL = 6
_CHUNK = 1 << 20


def cache_root() -> Path:
    return Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub")) / "images"


def canonical_json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what goes through it, passing it on to `target` if given."""

    def __init__(self, target: io.RawIOBase | io.BufferedIOBase | None = None) -> None:
        super().__init__()
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class BlobStore:
    """Blobs by digest under one directory (`blobs/sha256/<hex>`, the OCI layout's own naming)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.dir = self.root / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.dir / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.is_file():
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return digest

    def adopt(self, tmp: Path, digest: str) -> None:
        """Move a finished temporary file into place under its digest."""
        target = self.path(digest)
        if target.is_file():
            tmp.unlink()
        else:
            tmp.replace(target)

    def temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.dir, suffix=".partial")
        os.close(fd)
        return Path(name)


@dataclass(frozen=True)
class Layer:
    digest: str  # of the gzip blob, what manifests and registries name
    diff_id: str  # of the uncompressed tar, what the image config lists
    size: int  # of the gzip blob
    comment: str = ""

    def to_json(self) -> dict:
        return {"digest": self.digest, "diff_id": self.diff_id, "size": self.size, "comment": self.comment}

    @classmethod
    def from_json(cls, data: dict) -> Layer:
        return cls(data["digest"], data["diff_id"], int(data["size"]), data.get("comment", ""))




class LayerIndex:
    """Where a finished layer is remembered, named by a key of everything that went into it: a rebuild with the
    same inputs reuses the layer (when its blob is still in the store) instead of laying it out again."""

    def __init__(self, kind: str, key: str) -> None:
        self.path = cache_root() / "layers" / f"{kind}-{key}.json"

    def get(self, store: BlobStore) -> Layer | None:
        if self.path.is_file():
            layer = Layer.from_json(json.loads(self.path.read_text()))
            if store.has(layer.digest):
                return layer
        return None

    def put(self, layer: Layer) -> Layer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(layer.to_json()))
        return layer


@dataclass
class _Entry:
    kind: str  # "dir", "file", "symlink"
    mode: int
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    target: str = ""


def _norm_mode(mode: int, kind: str) -> int:
    if kind == "dir":
        return 0o1777 if mode & 0o1000 else 0o755
    if kind == "symlink":
        return 0o777
    # files: keep only "executable or not"; drop setuid/setgid, world-writable and private bits
    return 0o755 if mode & 0o111 else 0o644


class LayerBuilder:
    """Collects entries for one layer, then writes it once as a reproducible tar.gz blob."""

    def __init__(self, comment: str = "") -> None:
        self.comment = comment
        self.entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def _key(path: str) -> str:
        key = path.strip("/")
        if not key or ".." in key.split("/"):
            raise ValueError(f"bad path in layer: {path!r}")
        return key

    def _parents(self, key: str) -> None:
        parts = key.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = _Entry("dir", 0o755)

    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        key = self._key(path)
        self._parents(key)
        self.entries[key] = _Entry("dir", mode, uid, gid)

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        key = self._key(path)
        self._parents(key)
        self.entries[key] = _Entry("file", _norm_mode(mode, "file"), uid, gid, data=data)

    def add_symlink(self, path: str, target: str) -> None:
        key = self._key(path)
        self._parents(key)
        self.entries[key] = _Entry("symlink", 0o777, target=target)

    def add_path(self, path: str, source: Path) -> None:
        """Add a file, symlink or (empty) directory from the local filesystem."""
        st = source.lstat()
        if stat.S_ISLNK(st.st_mode):
            self.add_symlink(path, os.readlink(source))
        elif stat.S_ISDIR(st.st_mode):
            self.add_dir(path, _norm_mode(st.st_mode, "dir"))
        elif stat.S_ISREG(st.st_mode):
            key = self._key(path)
            self._parents(key)
            self.entries[key] = _Entry("file", _norm_mode(st.st_mode, "file"), source=source)
        # sockets, fifos and devices never belong in an image layer: skip them

    def add_tree(self, root: Path, dest: str) -> None:
        """Add everything below `root` (not root itself) under `dest`."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            for name in sorted(dirnames) + sorted(filenames):
                sub = name if rel == "." else f"{rel}/{name}"
                self.add_path(f"{dest.rstrip('/')}/{sub}", Path(dirpath) / name)

    def write(self, store: BlobStore) -> Layer:
        tmp = store.temp()
        with open(tmp, "wb") as raw:
            compressed = _HashingWriter(raw)
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL, mtime=0)
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for key in sorted(self.entries):
                    self._add(tar, key, self.entries[key])
            gz.close()
        layer = Layer(compressed.digest, uncompressed.digest, compressed.size, self.comment)
        store.adopt(tmp, layer.digest)
        return layer

    @staticmethod
    def _add(tar: tarfile.TarFile, key: str, entry: _Entry) -> None:
        info = tarfile.TarInfo(key)
        info.mtime = FIXED_MTIME
        info.uid, info.gid = entry.uid, entry.gid
        info.uname = info.gname = ""
        info.mode = entry.mode
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        elif entry.kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = entry.target
            tar.addfile(info)
        elif entry.data is not None:
            info.size = len(entry.data)
            tar.addfile(info, io.BytesIO(entry.data))
        else:
            assert entry.source is not None
            with open(entry.source, "rb") as fh:
                info.size = os.fstat(fh.fileno()).st_size
                tar.addfile(info, fh)


@dataclass
class ImageConfig:
    user: str
    env: list[str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Image:
    """A finished image: its blobs are in `store`."""

    store: BlobStore
    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layers: list[Layer]

    @property
    def size(self) -> int:
        """Bytes a registry stores for it: compressed layers, config and manifest."""
        return sum(layer.size for layer in self.layers) + len(self.config) + len(self.manifest)

    def blobs(self) -> Iterable[tuple[str, int]]:
        for layer in self.layers:
            yield layer.digest, layer.size
        yield self.config_digest, len(self.config)


def assemble(store: BlobStore, layers: list[Layer], config: ImageConfig) -> Image:
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {
            "User": config.user,
            "Env": config.env,
            "Entrypoint": config.entrypoint or None,
            "Cmd": config.cmd or None,
            "WorkingDir": config.workdir,
            "Labels": config.labels or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": FIXED_CREATED, "created_by": layer.comment or "qhubctl images"} for layer in layers],
    }
    cfg["config"] = {k: v for k, v in cfg["config"].items() if v is not None}
    config_bytes = canonical_json(cfg)
    config_digest = store.put_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = store.put_bytes(manifest_bytes)
    return Image(store, manifest_digest, manifest_bytes, config_digest, config_bytes, layers)


def _copy_blob(src: Path, dst: Path) -> None:
    if dst.is_file():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_oci_layout(image: Image, directory: Path, ref: str) -> None:
    """Write (or add to) an OCI image layout directory; `ref` names the image in index.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for digest, _size in [*image.blobs(), (image.manifest_digest, len(image.manifest))]:
        _copy_blob(image.store.path(digest), directory / "blobs" / "sha256" / digest.split(":", 1)[1])
    index_path = directory / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"schemaVersion": 2, "manifests": []}
    index["mediaType"] = MEDIA_INDEX
    manifests = [
        m for m in index.get("manifests", [])
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref
    ]
    manifests.append(
        {
            "mediaType": MEDIA_MANIFEST,
            "digest": image.manifest_digest,
            "size": len(image.manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
    )
    index["manifests"] = manifests
    index_path.write_bytes(canonical_json(index))


def write_docker_archive(image: Image, path: Path, repo_tag: str) -> None:
    """Write a tar that `docker load` reads (manifest.json), laid out as an OCI layout too (index.json, blobs/)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def blob_name(digest: str) -> str:
        return "blobs/sha256/" + digest.split(":", 1)[1]

    docker_manifest = [
        {
            "Config": blob_name(image.config_digest),
            "RepoTags": [repo_tag],
            "Layers": [blob_name(layer.digest) for layer in image.layers],
        }
    ]
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": image.manifest_digest,
                "size": len(image.manifest),
                "annotations": {"io.containerd.image.name": repo_tag, "org.opencontainers.image.ref.name": repo_tag},
            }
        ],
    }
    small = {
        "manifest.json": canonical_json(docker_manifest),
        "index.json": canonical_json(index),
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
    }
    blobs = {blob_name(d): image.store.path(d) for d, _ in [*image.blobs(), (image.manifest_digest, 0)]}
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        names = sorted([*small, *blobs, "blobs", "blobs/sha256"])
        for name in names:
            info = tarfile.TarInfo(name)
            info.mtime = FIXED_MTIME
            info.uname = info.gname = ""
            if name in ("blobs", "blobs/sha256"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif name in small:
                info.size, info.mode = len(small[name]), 0o644
                tar.addfile(info, io.BytesIO(small[name]))
            else:
                with open(blobs[name], "rb") as fh:
                    info.size, info.mode = os.fstat(fh.fileno()).st_size, 0o644
                    tar.addfile(info, fh)
    tmp.replace(path)
