"""The `pip:` section of a system image: wheels from a hash-pinned requirements file, in a virtual environment
of the image's own Debian Python.

The image's Python comes from its `debian:` packages (python3 and its closure). This machine's pip (qhubctl's
own environment) installs binary wheels for that Python's version into a staging directory, which becomes the
venv at `prefix` (pyvenv.cfg, bin/python linked to /usr/bin/python3.X, lib/python3.X/site-packages). Nothing in
the image is run. `--require-hashes` makes every wheel's sha256 part of the spec: the requirements file is the
lock (write it with `pip-compile --generate-hashes` or `uv pip compile --generate-hashes`).

`shared_layer:` names packages (patterns) installed first, in a layer of their own, keyed only by those packages'
pins, the Python version and the prefix: images whose locks pin them alike carry the very same blob, which a registry
stores once and a node pulls once (the GPU images' CUDA wheels, ~1 GB, are shared so).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qhubctl.errors import CommandError, UserError
from qhubctl.images.oci import BlobStore, Layer, LayerBuilder, LayerIndex
from qhubctl.images.pip import install_into
from qhubctl.images.rootfs import Deb
from qhubctl.images.sysspec import SystemSpec

LAYER_FORMAT = 2  # 2: console scripts' RECORD rows name the moved script (pip.install_into)
_PY_RE = re.compile(r"^python(3\.\d+)-minimal$")


def image_python(spec: SystemSpec, deb_list: list[Deb]) -> str:
    """The "3.X" of the image's Debian Python; a UserError when `debian:` brings none."""
    for deb in deb_list:
        match = _PY_RE.match(deb.name)
        if match:
            return match.group(1)
    raise UserError(f"{spec.image_file}: pip: the image has no Python to install packages for",
                    hint="add `python3` to `debian:`")


def project_name(text: str) -> str:
    """PEP 503's normalised form of a project name."""
    return re.sub(r"[-_.]+", "-", text).lower()


def split_lock(text: str, patterns: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """A hash-pinned requirements file as (options, entries whose project matches a pattern, the other entries):
    one line per requirement, its name normalised, its hashes sorted, comments dropped, so that two locks pinning a
    package alike give the same line."""
    options: list[str] = []
    chosen: list[str] = []
    rest: list[str] = []
    for raw in re.sub(r"\\\s*\n", " ", text).splitlines():  # `\`-continued lines joined
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        words = line.split()
        hashes = sorted(w for w in words if w.startswith("--hash="))
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        name = re.match(r"[A-Za-z0-9._-]+", spec).group(0)  # type: ignore[union-attr]
        entry = " ".join([project_name(name) + spec[len(name):], *hashes])
        (chosen if any(fnmatch.fnmatchcase(_entry_name(entry), p) for p in patterns) else rest).append(entry)
    return options, chosen, rest


def layers(spec: SystemSpec, deb_list: list[Deb], store: BlobStore,
           log: Callable[[str], None]) -> tuple[list[Layer], dict[str, Any]]:
    """The venv's layers, bottom first: the `shared_layer` packages (when the spec names any), then the rest of the
    lock with the venv itself; and the lock entry."""
    assert spec.pip is not None
    version = image_python(spec, deb_list)
    req = spec.pip.requirements
    req_sha = hashlib.sha256(req.read_bytes()).hexdigest()
    entry: dict[str, Any] = {"requirements": req.name, "requirements_sha256": req_sha, "python": version}
    if spec.pip.sdists:
        entry["sdists"] = list(spec.pip.sdists)
    patterns = spec.pip.shared_layer
    options, shared, rest = split_lock(req.read_text(), patterns)
    prefix = spec.pip.prefix
    found: list[Layer] = []
    if patterns:
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(_entry_name(e), p) for e in shared)]
        if unmatched:
            raise UserError(f"{spec.image_file}: pip.shared_layer: {unmatched} match no package of {req.name}",
                            hint="name projects the lock pins (patterns like nvidia-* allowed), or remove them")
        entry["shared_layer"] = sorted(_entry_name(e) for e in shared)
        if built := sorted(set(entry["shared_layer"]) & {project_name(n) for n in spec.pip.sdists}):
            raise UserError(f"{spec.image_file}: pip.shared_layer: {built} are built from sdists here",
                            hint="keep packages built from source out of the shared layer")
        key = _key({"format": LAYER_FORMAT, "prefix": prefix, "python": version, "shared": shared})
        found.append(_cached_layer(spec, store, log, key, options + shared, version, venv=False,
                                   what=f"the shared layer's {len(shared)} packages",
                                   comment=f"qhubctl images: pip shared layer ({key[:12]}) for Python {version}"))
    found.append(_cached_layer(spec, store, log, _key({"format": LAYER_FORMAT, "prefix": prefix, **entry}),
                               options + rest if patterns else None, version, venv=True, what=req.name,
                               comment=f"qhubctl images: pip {req.name} ({req_sha[:12]}) for Python {version}"))
    return found, entry


def _entry_name(entry: str) -> str:
    return project_name(re.match(r"[A-Za-z0-9._-]+", entry).group(0))  # type: ignore[union-attr]


def _key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _cached_layer(spec: SystemSpec, store: BlobStore, log: Callable[[str], None], key: str, lines: list[str] | None,
                  version: str, *, venv: bool, what: str, comment: str) -> Layer:
    """One pip layer, from the cache when built before under `key`: `lines` installed (None: the spec's whole
    requirements file), with the venv's pyvenv.cfg and python links when `venv`."""
    assert spec.pip is not None
    index = LayerIndex("pip", key)
    if (cached := index.get(store)) is not None:
        return cached
    prefix, req = spec.pip.prefix, spec.pip.requirements
    log(f"pip: installing {what} for Python {version} into {prefix}")
    with tempfile.TemporaryDirectory(prefix="qhub-pip-") as tmp:
        if lines is not None:
            req = Path(tmp) / "requirements.txt"
            req.write_text("\n".join(lines) + "\n")
        staging = Path(tmp) / "venv"
        try:
            install_into(staging, version, f"{prefix}/bin/python", spec.directory,
                         ["--require-hashes", "-r", str(req.resolve())], spec.pip.sdists if venv else ())
        except CommandError as exc:
            raise UserError(f"pip could not install {what} of {spec.pip.requirements}",
                            hint=exc.stderr_tail) from None
        builder = LayerBuilder(comment)
        builder.add_tree(staging, prefix)
        if venv:
            builder.add_bytes(f"{prefix}/pyvenv.cfg",
                              f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n".encode())
            builder.add_symlink(f"{prefix}/bin/python", f"/usr/bin/python{version}")
            builder.add_symlink(f"{prefix}/bin/python3", "python")
        result = builder.write(store)
    index.put(result)
    return result
