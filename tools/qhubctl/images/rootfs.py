"""The base root filesystem: Debian packages fetched with `apt-get download`, unpacked with `dpkg-deb -x` (no
maintainer scripts run), plus the few files an image needs (users, /tmp, home, the entrypoint), as one layer.

The packages come from Debian's archive through apt, the only reachable source of a C library and a shell. Which
versions were used is written to `base.lock.json` beside the spec, and a rebuild fetches exactly those again (and
checks their sha256). Downloads are cached in $QHUB_CACHE/images/debs, finished base layers in the layer cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qhubctl.errors import CommandError, UserError
from qhubctl.images.oci import BlobStore, Layer, LayerBuilder, LayerIndex, cache_root
from qhubctl.images.spec import BASES, ImageSpec
from qhubctl.proc import run

BASE_FORMAT = 2  # bump when the base layer's content rules change
CA_FORMAT = 1     # the CA bundle (add_ca_bundle): part of the layer keys of layers with ca-certificates
CA_SOURCE = "usr/share/ca-certificates"        # where the ca-certificates package unpacks its certificates
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"  # the bundle OpenSSL's default paths lead to


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    filename: str
    sha256: str


def deb_dir() -> Path:
    path = cache_root() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, version: str | None, lock_name: str = "base.lock.json") -> Path:
    """`apt-get download` one package into the deb cache and return the file."""
    target = deb_dir()
    work = Path(tempfile.mkdtemp(dir=target, prefix=".dl-"))
    try:
        arg = f"{name}={version}" if version else name
        try:
            run(["apt-get", "download", "-q", arg], cwd=work, timeout=300)
        except CommandError as exc:
            raise UserError(
                f"cannot download the Debian package {arg}",
                hint=f"run `apt-get update` first; a locked version gone from the archive needs "
                f"deleting {lock_name} to pick the current one\n" + exc.stderr_tail,
            ) from None
        files = sorted(work.glob("*.deb"))
        if len(files) != 1:
            raise UserError(f"apt-get download {arg} left {len(files)} .deb files")
        final = target / files[0].name
        files[0].replace(final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _field(deb: Path, name: str) -> str:
    return run(["dpkg-deb", "-f", deb, name]).stdout.strip()


def fetch_base(spec: ImageSpec) -> list[Deb]:
    """Get the base's packages: the locked versions if base.lock.json names this base, else the current ones."""
    wanted = BASES[spec.image.base]
    locked: dict[str, Deb] = {}
    if spec.base_lock_path.is_file():
        data = json.loads(spec.base_lock_path.read_text())
        if data.get("base") == spec.image.base:
            locked = {d["name"]: Deb(**d) for d in data.get("packages", [])}
    debs = []
    for name in wanted:
        if name in locked:
            want = locked[name]
            path = deb_dir() / want.filename
            if not path.is_file():
                path = download(name, want.version)
            digest = sha256_file(path)
            if digest != want.sha256:
                raise UserError(
                    f"{path.name}: sha256 {digest} differs from base.lock.json ({want.sha256})",
                    hint="the archive changed this version; delete base.lock.json to re-lock",
                )
            debs.append(Deb(name, want.version, path.name, digest))
        else:
            path = download(name, None)
            debs.append(Deb(name, _field(path, "Version"), path.name, sha256_file(path)))
    record = {"base": spec.image.base, "packages": [d.__dict__ for d in debs]}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    if not spec.base_lock_path.is_file() or spec.base_lock_path.read_text() != text:
        spec.base_lock_path.write_text(text)
    return debs


def glibc_version(debs: list[Deb]) -> str | None:
    """The C library version the base provides (for the solver's `__glibc`), or None without libc6."""
    for deb in debs:
        if deb.name == "libc6":
            match = re.match(r"(?:\d+:)?(\d+\.\d+)", deb.version)
            if match:
                return match.group(1)
    return None


ENTRYPOINT = """#!/bin/sh
# Activate the image's conda environment the way `conda activate` would for scripts, then run the command.
if [ -d "$CONDA_PREFIX/etc/conda/activate.d" ]; then
  for script in "$CONDA_PREFIX"/etc/conda/activate.d/*.sh; do
    [ -r "$script" ] && . "$script"
  done
fi
[ "$#" -gt 0 ] || set -- /bin/sh
exec "$@"
"""


def base_layer(spec: ImageSpec, debs: list[Deb], store: BlobStore) -> Layer:
    """The base layer, from the layer cache when the same packages and settings were laid out before."""
    image = spec.image
    key_data = {
        "format": BASE_FORMAT,
        "debs": [d.sha256 for d in debs],
        "user": image.user,
        "home": image.home,
        "prefix": image.prefix,
    }
    if any(d.name == "ca-certificates" for d in debs):
        key_data["ca"] = CA_FORMAT
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()
    index = LayerIndex("base", key)
    if (layer := index.get(store)) is not None:
        return layer
    packages = ", ".join(f"{d.name} {d.version}" for d in debs)
    builder = LayerBuilder(f"qhubctl images: base {spec.image.base} ({packages})")
    with tempfile.TemporaryDirectory(prefix="qhub-base-") as tmp:
        root = Path(tmp)
        for deb in debs:
            run(["dpkg-deb", "-x", deb_dir() / deb.filename, root])
        # Debian ships docs we do not need in an image.
        for path in ("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/bug"):
            shutil.rmtree(root / path, ignore_errors=True)
        builder.add_tree(root, "/")
        if not add_busybox_applets(builder, root):
            raise UserError(f"base {spec.image.base!r}: no busybox binary in {[d.name for d in debs]}")
        add_ca_bundle(builder, root)
        _add_system_files(builder, spec)
        layer = builder.write(store)  # inside the block: file entries are read from `root` here
    index.put(layer)
    return layer


def add_busybox_applets(builder: LayerBuilder, root: Path) -> bool:
    """Link every busybox applet that no package provides (sh, ls, wget, ...) to the busybox binary under `root`.

    Returns False when `root` has no busybox. The applet list comes from running that (static) binary.
    """
    busybox = next((p for p in (root / "bin/busybox", root / "usr/bin/busybox") if p.is_file()), None)
    if busybox is None:
        return False
    busybox_at = "/" + str(busybox.relative_to(root))
    applets = run([busybox, "--list-full"]).stdout.split()
    for applet in sorted(applets):
        if applet and not (root / applet).exists():
            builder.add_symlink(applet, busybox_at)
    return True


def add_ca_bundle(builder: LayerBuilder, root: Path) -> bool:
    """Write /etc/ssl/certs/ca-certificates.crt from the certificates ca-certificates unpacked under `root`, as its
    install script (update-ca-certificates) would: without it OpenSSL, and every Python, curl or Rust client that
    trusts the system's store, has no trusted CA at all. Returns False when `root` has no certificates."""
    found = sorted((root / CA_SOURCE).rglob("*.crt"))
    if not found:
        return False
    bundle = b"".join(crt.read_bytes().rstrip(b"\n") + b"\n" for crt in found)
    builder.add_bytes(CA_BUNDLE, bundle)
    return True


def _add_system_files(builder: LayerBuilder, spec: ImageSpec) -> None:
    image = spec.image
    uid = image.user
    name = Path(image.home).name or "qhub"
    builder.add_bytes(
        "etc/passwd",
        (f"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
         f"{name}:x:{uid}:{uid}:{name}:{image.home}:/bin/sh\n").encode(),
    )
    builder.add_bytes("etc/group", f"root:x:0:\nnogroup:x:65534:\n{name}:x:{uid}:\n".encode())
    builder.add_bytes("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    builder.add_dir("tmp", 0o1777)
    builder.add_dir("root", 0o700)
    builder.add_dir(image.home, 0o755, uid=uid, gid=uid)
    builder.add_bytes("usr/local/bin/qhub-entrypoint", ENTRYPOINT.encode(), 0o755)
