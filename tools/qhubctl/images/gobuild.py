"""Static Go binaries for system images, built with the Go on PATH.

A binary from the module proxy is built in a wrapper module of its own under $QHUB_CACHE/images/go/src (the same
pattern as ci/tools.sh: `go get -tool <package>@<version>`, then `go build -mod=mod`), so two binaries never
share a module graph. A binary with `build_in_module: true` is built inside a writable copy of its module's own
source instead, so that go.mod is the main module and its `replace` and `exclude` directives apply (Go ignores
them in a dependency). A binary whose source is in the spec directory is built from there. Every build is static
and reproducible: CGO off, paths trimmed, no VCS stamp, an empty build id, the local toolchain only. Finished
binaries are cached by (module, version, package, ldflags, build mode, Go version) or by the source's content, so
a rebuild runs no compiler at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from qhubctl.errors import CommandError, ToolNotFoundError, UserError
from qhubctl.images.oci import cache_root
from qhubctl.images.sysspec import GoBinary
from qhubctl.proc import run

BUILD_FORMAT = 1  # bump when the build flags change
BASE_LDFLAGS = "-s -w -buildid="
_ENV = {
    "CGO_ENABLED": "0",  # static: no C library in the image to link against
    "GOTOOLCHAIN": "local",  # never download another toolchain: the build uses the Go it says it uses
    "GOFLAGS": "-buildvcs=false",  # no VCS stamp: the binary does not depend on a checkout's state
    "GOOS": "linux",
    "GOARCH": "amd64",
}


@dataclass(frozen=True)
class Built:
    binary: GoBinary
    path: Path
    sha256: str
    go_version: str


@cache
def go_version() -> str:
    """`go1.26.8` etc.; a UserError when no Go is on PATH."""
    try:
        return run(["go", "env", "GOVERSION"], env=_ENV).stdout.strip()
    except ToolNotFoundError:
        raise UserError("the spec has `go:` binaries but no `go` is on PATH",
                        hint="install Go (https://go.dev/dl/) and put its bin directory on PATH") from None


def source_digest(source: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(binary: GoBinary) -> str:
    what = {
        "format": BUILD_FORMAT,
        "go": go_version(),
        "package": binary.package,
        "ldflags": binary.ldflags,
        "module": binary.module,
        "version": binary.version,
        "source": source_digest(binary.source) if binary.source else "",
    }
    if binary.in_module:  # only when set, so the keys of wrapper builds stay what they were
        what["in_module"] = True
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _wrapper_module(work: Path, binary: GoBinary) -> None:
    minor = re.match(r"go(\d+\.\d+)", go_version())
    go_line = f"{minor.group(1)}.0" if minor else "1.22.0"
    work.mkdir(parents=True)
    (work / "go.mod").write_text(f"module qhub.local/image-{binary.name}\n\ngo {go_line}\n")
    run(["go", "get", "-tool", f"{binary.package}@{binary.version}"], cwd=work, env=_ENV, timeout=1800)


def _module_copy(work: Path, binary: GoBinary) -> None:
    """A writable copy of `module@version`'s source (the module cache keeps it read-only) at `work`."""
    out = run(["go", "mod", "download", "-json", f"{binary.module}@{binary.version}"],
              cwd=work.parent, env=_ENV, timeout=1800)  # outside any module: no go.mod of ours changes
    shutil.copytree(json.loads(out.stdout)["Dir"], work, symlinks=True)
    for root, dirs, files in os.walk(work):
        for name in (*dirs, *files):
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)  # go may write go.sum
    work.chmod(work.stat().st_mode | 0o200)


def _compile(binary: GoBinary, out: Path, log) -> None:  # noqa: ANN001 - a plain callable
    ldflags = f"{BASE_LDFLAGS} {binary.ldflags}".strip()
    with tempfile.TemporaryDirectory(prefix="qhub-go-", dir=cache_root()) as tmp:
        if binary.source is not None:
            work = Path(tmp) / "src"
            shutil.copytree(binary.source, work)  # go may touch go.sum; the spec directory stays as it is
            package = binary.package
        elif binary.in_module:
            work = Path(tmp) / "module"
            log(f"go: fetching {binary.module}@{binary.version} to build inside it")
            _module_copy(work, binary)
            package = binary.package_in_module
        else:
            work = Path(tmp) / "mod"
            log(f"go: fetching {binary.package}@{binary.version}")
            _wrapper_module(work, binary)
            package = binary.package
        log(f"go: building {binary.name} ({binary.package}) with {go_version()}")
        run(["go", "build", "-mod=mod", "-trimpath", "-ldflags", ldflags, "-o", out, package],
            cwd=work, env=_ENV, timeout=3600)


def build(binary: GoBinary, log=lambda msg: None) -> Built:  # noqa: ANN001 - a plain callable
    """The binary from the cache, or built into it."""
    key = cache_key(binary)
    final = cache_root() / "go" / key / binary.name
    if not final.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{binary.name}.{os.getpid()}.partial")
        try:
            _compile(binary, partial, log)
        except CommandError as exc:
            partial.unlink(missing_ok=True)
            what = f"{binary.package}@{binary.version}" if binary.module else f"{binary.source}"
            raise UserError(f"go build of {binary.name} ({what}) failed",
                            hint="check the module path, version and package in image.yaml\n" + exc.stderr_tail
                            ) from None
        partial.replace(final)
    digest = hashlib.sha256(final.read_bytes()).hexdigest()
    return Built(binary, final, digest, go_version())
