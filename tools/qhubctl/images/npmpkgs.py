"""The `npm:` section of a system image: `npm ci` from the spec's package.json and package-lock.json into a
folder of the image (`prefix`), with this machine's npm; the image's own `nodejs` (a Debian package) runs it.

package-lock.json is the lock (versions and integrity hashes); `npm ci` installs exactly it or fails. Install
scripts are not run (`--ignore-scripts`): packages that compile native code at install time do not fit here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qhubctl.errors import CommandError, UserError
from qhubctl.images.oci import BlobStore, Layer, LayerBuilder, LayerIndex, cache_root
from qhubctl.images.sysspec import SystemSpec
from qhubctl.proc import run

LAYER_FORMAT = 1
_DROP = {".package-lock.json"}  # npm's own bookkeeping, written with local details


def layer(spec: SystemSpec, store: BlobStore, log: Callable[[str], None]) -> tuple[Layer, dict[str, Any]]:
    """The node_modules layer (cached by package.json, package-lock.json and the prefix) and its lock entry."""
    assert spec.npm is not None
    if "nodejs" not in spec.debian:
        raise UserError(f"{spec.image_file}: npm: the image has no Node.js to run the packages",
                        hint="add `nodejs` to `debian:`")
    source = spec.npm.directory
    manifest, lock = (source / "package.json").read_bytes(), (source / "package-lock.json").read_bytes()
    entry = {"package_json_sha256": hashlib.sha256(manifest).hexdigest(),
             "package_lock_sha256": hashlib.sha256(lock).hexdigest()}
    key = hashlib.sha256(json.dumps({"format": LAYER_FORMAT, "prefix": spec.npm.prefix, **entry},
                                    sort_keys=True).encode()).hexdigest()
    index = LayerIndex("npm", key)
    if (cached := index.get(store)) is not None:
        return cached, entry
    log(f"npm: installing {source.name}/package-lock.json into {spec.npm.prefix}")
    with tempfile.TemporaryDirectory(prefix="qhub-npm-") as tmp:
        work = Path(tmp) / "app"
        work.mkdir()
        shutil.copy(source / "package.json", work)
        shutil.copy(source / "package-lock.json", work)
        try:
            run(["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"],
                cwd=work, env={"npm_config_cache": str(cache_root() / "npm")}, timeout=900)
        except CommandError as exc:
            raise UserError(f"npm ci in {source} failed", hint="is package-lock.json in sync with package.json?\n"
                            + exc.stderr_tail) from None
        for name in _DROP:
            (work / "node_modules" / name).unlink(missing_ok=True)
        builder = LayerBuilder(f"qhubctl images: npm {source.name} ({entry['package_lock_sha256'][:12]})")
        builder.add_tree(work, spec.npm.prefix)
        result = builder.write(store)
    index.put(result)
    return result, entry
