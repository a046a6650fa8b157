"""The `pip:` section of a system image: wheels from a hash-pinned requirements file, in a virtual environment
of the image's own Debian Python.

The image's Python comes from its `debian:` packages (python3 and its closure). This machine's pip (qhubctl's
own environment) installs binary wheels for that Python's version into a staging directory, which becomes the
venv at `prefix` (pyvenv.cfg, bin/python linked to /usr/bin/python3.X, lib/python3.X/site-packages). Nothing in
the image is run. `--require-hashes` makes every wheel's sha256 part of the spec: the requirements file is the
lock (write it with `pip-compile --generate-hashes` or `uv pip compile --generate-hashes`).
"""

from __future__ import annotations

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


def layer(spec: SystemSpec, deb_list: list[Deb], store: BlobStore,
          log: Callable[[str], None]) -> tuple[Layer, dict[str, Any]]:
    """The venv layer (cached by the requirements file, the Python version and the prefix) and its lock entry."""
    assert spec.pip is not None
    version = image_python(spec, deb_list)
    req = spec.pip.requirements
    req_sha = hashlib.sha256(req.read_bytes()).hexdigest()
    entry: dict[str, Any] = {"requirements": req.name, "requirements_sha256": req_sha, "python": version}
    if spec.pip.sdists:
        entry["sdists"] = list(spec.pip.sdists)
    key = hashlib.sha256(json.dumps({"format": LAYER_FORMAT, "prefix": spec.pip.prefix, **entry},
                                    sort_keys=True).encode()).hexdigest()
    index = LayerIndex("pip", key)
    if (cached := index.get(store)) is not None:
        return cached, entry
    prefix = spec.pip.prefix
    log(f"pip: installing {req.name} for Python {version} into {prefix}")
    with tempfile.TemporaryDirectory(prefix="qhub-pip-") as tmp:
        staging = Path(tmp) / "venv"
        try:
            install_into(staging, version, f"{prefix}/bin/python", spec.directory,
                         ["--require-hashes", "-r", str(req.resolve())], spec.pip.sdists)
        except CommandError as exc:
            raise UserError(f"pip could not install {req}", hint=exc.stderr_tail) from None
        builder = LayerBuilder(f"qhubctl images: pip {req.name} ({req_sha[:12]}) for Python {version}")
        builder.add_tree(staging, prefix)
        builder.add_bytes(f"{prefix}/pyvenv.cfg",
                          f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n".encode())
        builder.add_symlink(f"{prefix}/bin/python", f"/usr/bin/python{version}")
        builder.add_symlink(f"{prefix}/bin/python3", "python")
        result = builder.write(store)
    index.put(result)
    return result, entry
