"""The Debian part of a system image: resolve a package list to its full dependency closure with apt, download
the exact versions, and lay them out (unpacked with `dpkg-deb -x`, no maintainer scripts) as one layer.

The closure is what `apt-get install --no-install-recommends` would install onto an empty system: apt is pointed
at an empty dpkg status file, so nothing of this machine's own installed packages leaks into the image. The result
(name, version, file name, sha256) is locked; a rebuild downloads exactly those versions and checks their sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from qhubctl.errors import CommandError, UserError
from qhubctl.images import rootfs
from qhubctl.images.oci import BlobStore, Layer, LayerBuilder, LayerIndex
from qhubctl.images.rootfs import Deb
from qhubctl.proc import run

LAYER_FORMAT = 1  # bump when the way the Debian layer is laid out changes
_INST_RE = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")
# Docs and data no container needs; dropped from the layer.
_DROP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/bug")


def resolve(packages: list[str]) -> list[tuple[str, str]]:
    """(name, version) of every package apt would install for `packages` onto an empty system, sorted by name."""
    with tempfile.TemporaryDirectory(prefix="qhub-apt-") as tmp:
        status = Path(tmp) / "status"
        status.write_text("")
        try:
            out = run([
                "apt-get", "install", "--simulate", "--quiet", "--no-install-recommends",
                "-o", f"Dir::State::status={status}",  # an empty system: every dependency is listed
                "-o", "Debug::NoLocking=1",  # a simulation takes no locks, so it needs no root
                *packages,
            ], timeout=300).stdout
        except CommandError as exc:
            raise UserError(
                f"apt cannot resolve the Debian packages {packages}",
                hint="check the names in `debian:` (apt-cache policy <name>) and run `apt-get update`\n"
                + exc.stderr_tail,
            ) from None
    found = {}
    for line in out.splitlines():
        match = _INST_RE.match(line)
        if match:
            found[match.group(1).split(":", 1)[0]] = match.group(2)
    missing = [p for p in packages if p not in found]
    if missing:
        raise UserError(f"apt resolved no install for {missing}", hint="is that a virtual or a removed package?")
    return sorted(found.items())


def _cached(name: str, version: str) -> Path | None:
    quoted = version.replace(":", "%3a")
    hits = sorted(rootfs.deb_dir().glob(f"{name}_{quoted}_*.deb"))
    return hits[0] if hits else None


def _download_all(wanted: list[tuple[str, str]], lock_name: str) -> dict[str, Path]:
    """`apt-get download` every (name, version) in one run into the deb cache; the files by package name."""
    if not wanted:
        return {}
    target = rootfs.deb_dir()
    work = Path(tempfile.mkdtemp(dir=target, prefix=".dl-"))
    try:
        try:
            run(["apt-get", "download", "-q", *(f"{n}={v}" for n, v in wanted)], cwd=work, timeout=1800)
        except CommandError as exc:
            raise UserError(
                f"cannot download the Debian packages {[n for n, _ in wanted]}",
                hint=f"run `apt-get update` first; a locked version gone from the archive needs --relock "
                f"(or deleting {lock_name})\n" + exc.stderr_tail,
            ) from None
        files = {}
        for path in sorted(work.glob("*.deb")):
            final = target / path.name
            path.replace(final)
            files[path.name.split("_", 1)[0]] = final  # Debian file names are <name>_<version>_<arch>.deb
        missing = [n for n, _ in wanted if n not in files]
        if missing:
            raise UserError(f"apt-get download left no .deb for {missing}")
        return files
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch(packages: list[str], locked: list[Deb] | None, lock_name: str) -> list[Deb]:
    """The closure's .deb files in the cache: the locked versions (sha256 checked) if given, else apt's choice."""
    if locked is None:
        wanted = resolve(packages)
        files = {n: p for n, v in wanted if (p := _cached(n, v)) is not None}
        files.update(_download_all([(n, v) for n, v in wanted if n not in files], lock_name))
        return [Deb(n, v, files[n].name, rootfs.sha256_file(files[n])) for n, v in wanted]
    files = {d.name: rootfs.deb_dir() / d.filename for d in locked if (rootfs.deb_dir() / d.filename).is_file()}
    files.update(_download_all([(d.name, d.version) for d in locked if d.name not in files], lock_name))
    out = []
    for want in locked:
        path = files[want.name]
        digest = rootfs.sha256_file(path)
        if digest != want.sha256:
            raise UserError(f"{path.name}: sha256 {digest} differs from {lock_name} ({want.sha256})",
                            hint="the archive changed this version; run with --relock to lock it again")
        out.append(Deb(want.name, want.version, path.name, digest))
    return out


def _status_entry(deb: Path) -> str:
    """The package's control paragraph as dpkg's status file has it, so scanners can list the image's packages."""
    control = run(["dpkg-deb", "--field", deb]).stdout.strip()
    lines = control.splitlines()
    return "\n".join([lines[0], "Status: install ok installed", *lines[1:]]) + "\n"


def layer(debs: list[Deb], store: BlobStore) -> Layer:
    """One layer with every package unpacked, busybox applet links, the CA bundle, and /var/lib/dpkg/status;
    cached."""
    key_data: dict[str, object] = {"format": LAYER_FORMAT, "debs": [d.sha256 for d in debs]}
    if any(d.name == "ca-certificates" for d in debs):
        key_data["ca"] = rootfs.CA_FORMAT
    key = hashlib.sha256(json.dumps(key_data).encode()).hexdigest()
    index = LayerIndex("debs", key)
    if (cached := index.get(store)) is not None:
        return cached
    names = ", ".join(f"{d.name} {d.version}" for d in debs)
    builder = LayerBuilder(f"qhubctl images: debian {names}")
    with tempfile.TemporaryDirectory(prefix="qhub-debs-") as tmp:
        root = Path(tmp)
        status = []
        for deb in debs:
            path = rootfs.deb_dir() / deb.filename
            run(["dpkg-deb", "--extract", path, root])
            status.append(_status_entry(path))
        for rel in _DROP:
            shutil.rmtree(root / rel, ignore_errors=True)
        builder.add_tree(root, "/")
        rootfs.add_busybox_applets(builder, root)
        rootfs.add_ca_bundle(builder, root)
        builder.add_bytes("var/lib/dpkg/status", "\n".join(status).encode())
        result = builder.write(store)  # inside the block: file entries are read from `root` here
    index.put(result)
    return result
