"""A system image spec: an `image.yaml` with `kind: system` and no conda environment.

A system image is assembled only from sources reachable without conda: Debian packages (apt), static Go binaries
(the Go module proxy, or Go source inside the spec directory), Python wheels (PyPI) and npm packages. The
directory holds:

- `image.yaml`: the fields below;
- `rootfs/` (optional): files copied as they are into the image's top layer (or the directories `rootfs:`
  lists, e.g. a sibling image's as well as its own);
- `system.lock.json`: written by the build, pinning the Debian packages (name, version, sha256) and the Go
  binaries (module version, Go version, sha256), and the sha256 of the pip and npm lock files. A rebuild fetches
  exactly what the lock names; a Go binary that comes out different from the same inputs is an error.

`image.yaml` fields:

    kind: system                  # required: marks the spec as a system image
    name: coredns                 # optional: the image name (default: the directory name)
    version: 1.15.0               # the tag the image is published under (qhub/<name>:<version>); leave it out
                                  # for images published under the chart's appVersion (the platform images): their
                                  # tag is given on the command line (`images tag --app-version`, `build --tag`)
    user: 65532                   # optional: uid and gid the image runs as (not 0; default 65532)
    username: nonroot             # optional: its /etc/passwd name (default nonroot)
    home: /home/nonroot           # optional: its home directory (default /home/<username>); `/tmp` (world-
                                  # writable, sticky) suits images that run under any uid
    workdir: /                    # optional: default the home directory
    entrypoint: [/usr/local/bin/coredns]
    cmd: []
    env: {KEY: value}
    labels: {key: value}
    debian: [busybox-static]      # Debian packages; their whole Depends closure is installed (no recommends)
    go:                           # static Go binaries, one layer each
      - name: coredns             # the binary's file name
        module: github.com/coredns/coredns
        version: v1.15.0          # default: the image version (with a leading v added)
        package: github.com/coredns/coredns   # default: the module path
        ldflags: -X main.v={version}  # added to `-s -w -buildid=`; {version} is the module version
        dest: /usr/local/bin/coredns          # default /usr/local/bin/<name>
        build_in_module: false    # optional: true builds inside a copy of the module's own source (its go.mod is
                                  # the main module, so its `replace` directives apply) instead of in a wrapper
                                  # module that requires it; for programs whose go.mod replaces dependencies
      - name: pause
        source: src               # a Go module inside the spec directory instead of module/version
        package: .
        dest: /pause
    pip:                          # wheels from a hash-pinned requirements file beside the spec, into a venv of
                                  # the image's Debian Python (needs python3 or python3-minimal in `debian:`)
      requirements: requirements.lock
      prefix: /opt/venv
      sdists: [onetimepass]       # optional: pure-Python packages PyPI has no wheel for, built here from their
                                  # hash-pinned sdist (everything else must be a wheel)
      shared_layer: [nvidia-*]    # optional: projects (patterns) installed first in a layer of their own, the same
                                  # blob in every image whose lock pins them alike (pulled and stored once)
    npm:                          # `npm ci` of package.json + package-lock.json (needs nodejs in `debian:`)
      directory: npm              # the spec sub-directory holding package.json and package-lock.json
      prefix: /opt/npm
    rootfs: [../jupyterlab/rootfs, rootfs]  # optional: directories (relative to the spec) copied as they are into
                                  # the top layer, in order, a later file replacing an earlier one; default
                                  # [rootfs] when the spec has one. A variant of another image shares its files so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qhubctl.errors import UserError

IMAGE_FILE = "image.yaml"
SYSTEM_LOCK_FILE = "system.lock.json"
ROOTFS_DIR = "rootfs"
KIND = "system"
DEFAULT_UID = 65532

_KEYS = {"kind", "name", "version", "user", "username", "home", "workdir", "entrypoint", "cmd", "env", "labels",
         "debian", "go", "pip", "npm", "rootfs"}
_GO_KEYS = {"name", "module", "version", "package", "ldflags", "dest", "source", "build_in_module"}
_PIP_KEYS = {"requirements", "prefix", "sdists", "shared_layer"}
_NPM_KEYS = {"directory", "prefix"}
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_DEB_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_MODULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~/-]*$")
_PYPI_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_PYPI_PATTERN_RE = re.compile(r"^[a-z0-9*?]([a-z0-9*?-]*[a-z0-9*?])?$")  # normalised names, with * and ?
_BINARY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class GoBinary:
    """One static Go binary: from `module@version` on the proxy, or from `source` inside the spec directory."""

    name: str
    package: str
    dest: str
    ldflags: str = ""
    module: str = ""
    version: str = ""
    source: Path | None = None
    in_module: bool = False  # build inside the module's own source, not in a wrapper module

    @property
    def package_in_module(self) -> str:
        """The package as a path relative to the module's root (`.` or `./cmd/x`), for builds inside it."""
        return "." + self.package[len(self.module):] if self.module else self.package


@dataclass(frozen=True)
class PipSection:
    requirements: Path
    prefix: str
    sdists: tuple[str, ...] = ()
    shared_layer: tuple[str, ...] = ()  # project name patterns (pythonpkgs.layers)


@dataclass(frozen=True)
class NpmSection:
    directory: Path
    prefix: str


@dataclass
class SystemSpec:
    directory: Path
    name: str
    version: str
    user: int = DEFAULT_UID
    username: str = "nonroot"
    home: str = "/home/nonroot"
    workdir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    debian: list[str] = field(default_factory=list)
    go: list[GoBinary] = field(default_factory=list)
    pip: PipSection | None = None
    npm: NpmSection | None = None
    rootfs: list[Path] = field(default_factory=list)  # directories copied into the top layer, in order

    @property
    def image_file(self) -> Path:
        return self.directory / IMAGE_FILE

    @property
    def lock_path(self) -> Path:
        return self.directory / SYSTEM_LOCK_FILE


def read_image_yaml(directory: Path) -> dict[str, Any]:
    """The mapping in `directory/image.yaml` ({} when the file is absent or empty); UserError if it is not one."""
    path = directory / IMAGE_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of image settings")
    return data


class _Fields:
    """Reads typed fields from one mapping; every error names the file and the field and says what to write."""

    def __init__(self, path: Path, data: dict[str, Any], where: str = "") -> None:
        self.path, self.data, self.where = path, data, where

    def fail(self, key: str, problem: str, hint: str) -> UserError:
        return UserError(f"{self.path}: {self.where}{key}: {problem}", hint=hint)

    def unknown(self, known: set[str]) -> None:
        bad = sorted(str(k) for k in set(self.data) - known)
        if bad:
            raise UserError(f"{self.path}: {self.where}unknown keys {bad}", hint=f"known keys: {sorted(known)}")

    def string(self, key: str, default: str = "", *, pattern: re.Pattern[str] | None = None,
               hint: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a string, got {type(value).__name__}", hint or f"write `{key}: <text>`")
        text = str(value)
        if pattern is not None and not pattern.match(text):
            raise self.fail(key, f"{text!r} is not allowed here", hint)
        return text

    def path_in_image(self, key: str, default: str) -> str:
        text = self.string(key, default)
        if not text.startswith("/") or ".." in text.split("/") or text.rstrip("/") in ("", "/etc", "/usr", "/bin"):
            raise self.fail(key, f"{text!r} is not an absolute path of its own",
                            f"write an absolute directory such as `{key}: {default}`")
        return text.rstrip("/")

    def str_list(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings", f"write e.g. `{key}: [first, second]`")
        return list(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or any(isinstance(v, (dict, list)) or v is None for v in value.values()):
            raise self.fail(key, "expected a mapping of names to plain values", f"write e.g. `{key}: {{NAME: value}}`")
        return {str(k): str(v) for k, v in value.items()}

    def uid(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
            raise self.fail(key, f"{value!r} is not a non-root uid",
                            f"write a uid from 1 to 2147483647, e.g. `{key}: {DEFAULT_UID}`; images never run as root")
        return value


def _go_binary(path: Path, directory: Path, item: Any, index: int, image_version: str) -> GoBinary:
    if not isinstance(item, dict):
        raise UserError(f"{path}: go[{index}]: expected a mapping with name and module (or source)",
                        hint="write e.g. `go: [{name: coredns, module: github.com/coredns/coredns}]`")
    f = _Fields(path, item, f"go[{index}].")
    f.unknown(_GO_KEYS)
    name = f.string("name", pattern=_BINARY_RE, hint="a file name: letters, digits, . _ -")
    if not name:
        raise f.fail("name", "missing", "give the binary's file name, e.g. `name: coredns`")
    dest = f.path_in_image("dest", f"/usr/local/bin/{name}")
    ldflags = f.string("ldflags")
    in_module = item.get("build_in_module", False)
    if not isinstance(in_module, bool):
        raise f.fail("build_in_module", f"{in_module!r} is not true or false",
                     "write `build_in_module: true` to build inside the module's own source, or leave it out")
    source_text = f.string("source")
    module = f.string("module", pattern=_MODULE_RE, hint="a Go module path such as github.com/coredns/coredns")
    if bool(source_text) == bool(module):
        raise UserError(f"{path}: go[{index}] ({name}): give exactly one of `module:` and `source:`",
                        hint="`module: <path>` builds from the Go module proxy, `source: <dir>` from a Go module "
                        "inside the spec directory")
    if source_text:
        if in_module:
            raise f.fail("build_in_module", "not used with source:",
                         "remove `build_in_module:`; a `source:` module is always built inside itself")
        source = (directory / source_text).resolve()
        if not source.is_relative_to(directory.resolve()) or not (source / "go.mod").is_file():
            raise f.fail("source", f"no go.mod in {source_text!r} inside the spec directory",
                         "point `source:` at a directory of the spec holding go.mod and the program")
        if "version" in item:
            raise f.fail("version", "not used with source:", "remove `version:`; the source is in the spec")
        package = f.string("package", ".")
        return GoBinary(name, package, dest, ldflags.replace("{version}", image_version), source=source)
    version = f.string("version")
    if not version and not image_version:
        raise f.fail("version", "missing (and the image has no `version:` to follow)",
                     "write the module version, e.g. `version: v1.15.0`")
    version = version or (image_version if image_version.startswith("v") else f"v{image_version}")
    if not re.match(r"^v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$", version):
        raise f.fail("version", f"{version!r} is not a Go module version",
                     "write a semantic version with a leading v, e.g. `version: v1.15.0`")
    ldflags = ldflags.replace("{version}", version)
    package = f.string("package", module, pattern=_MODULE_RE, hint="a Go package path inside the module")
    if not (package == module or package.startswith(module + "/")):
        raise f.fail("package", f"{package!r} is not inside module {module!r}",
                     f"write `package: {module}` or `package: {module}/cmd/<name>`")
    return GoBinary(name, package, dest, ldflags, module=module, version=version, in_module=in_module)


def _check_hashed(path: Path) -> None:
    """Every requirement in a pip requirements file carries `--hash=sha256:` (what `--require-hashes` needs)."""
    logical = re.sub(r"\\\s*\n", " ", path.read_text())  # join `\`-continued lines
    for raw in logical.splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if line and not line.startswith("-") and "--hash=sha256:" not in line:
            raise UserError(f"{path}: `{line.split()[0]}` has no --hash=sha256:",
                            hint="pin every requirement with its hashes (`pip-compile --generate-hashes`)")


def _optional_section(path: Path, directory: Path, raw: Any, key: str) -> PipSection | NpmSection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: {key}: expected a mapping", hint=f"see `{key}:` in the spec format (sysspec.py)")
    f = _Fields(path, raw, f"{key}.")
    if key == "pip":
        f.unknown(_PIP_KEYS)
        req = directory / f.string("requirements", "requirements.lock")
        if not req.is_file():
            raise f.fail("requirements", f"no file {req.name} beside the spec",
                         "write a hash-pinned requirements file (`pip-compile --generate-hashes`) there")
        _check_hashed(req)
        sdists = f.str_list("sdists")
        for name in sdists:
            if not _PYPI_RE.match(name):
                raise f.fail("sdists", f"{name!r} is not a PyPI project name", "list bare names, e.g. [onetimepass]")
        shared = f.str_list("shared_layer")
        for pattern in shared:
            if not _PYPI_PATTERN_RE.match(pattern):
                raise f.fail("shared_layer", f"{pattern!r} is not a PyPI project name or pattern",
                             "list names or patterns in lower case, e.g. [nvidia-*, cupy-cuda12x]")
        return PipSection(req, f.path_in_image("prefix", "/opt/venv"), tuple(sorted(sdists)), tuple(shared))
    f.unknown(_NPM_KEYS)
    npm_dir = directory / f.string("directory", "npm")
    if not (npm_dir / "package.json").is_file() or not (npm_dir / "package-lock.json").is_file():
        raise f.fail("directory", f"{npm_dir} needs package.json and package-lock.json",
                     "run `npm install --package-lock-only <pkg>@<version>` in that directory")
    return NpmSection(npm_dir, f.path_in_image("prefix", "/opt/npm"))


def _rootfs_dirs(f: _Fields, directory: Path) -> list[Path]:
    """`rootfs:` as directories (default: the spec's own rootfs/ when there is one); each must exist."""
    if "rootfs" not in f.data:
        own = directory / ROOTFS_DIR
        return [own] if own.is_dir() else []
    dirs = []
    for text in f.str_list("rootfs"):
        path = directory / text
        if text.startswith("/") or not path.is_dir():
            raise f.fail("rootfs", f"{text!r} is not a directory beside the spec",
                         "list directories relative to the spec directory, e.g. `rootfs: [../jupyterlab/rootfs, "
                         "rootfs]`")
        dirs.append(path)
    return dirs


def load_system_spec(path: str | Path) -> SystemSpec:
    """Read a system spec directory (or its image.yaml); raises UserError naming the field on any problem."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    image_file = directory / IMAGE_FILE
    if not image_file.is_file():
        raise UserError(f"no {IMAGE_FILE} in {directory}", hint="a system spec is a directory with image.yaml")
    data = read_image_yaml(directory)
    f = _Fields(image_file, data)
    f.unknown(_KEYS)
    if data.get("kind") != KIND:
        raise f.fail("kind", f"{data.get('kind')!r} is not a system image", f"write `kind: {KIND}`")
    name = f.string("name", directory.resolve().name, pattern=_NAME_RE,
                    hint="lower case letters, digits and . _ - (it becomes qhub/<name>)")
    if isinstance(data.get("version"), float):  # 1.10 would silently become "1.1"
        raise f.fail("version", f"{data['version']!r} is a YAML number", "quote it, e.g. `version: \"1.10\"`")
    version = f.string("version", pattern=_TAG_RE, hint="an image tag: letters, digits, . _ -, e.g. `version: 1.0.0`")
    spec = SystemSpec(directory, name, version)
    spec.user = f.uid("user", DEFAULT_UID)
    spec.username = f.string("username", "nonroot", pattern=_USERNAME_RE,
                             hint="a login name: lower case letters, digits, _ and -")
    if spec.username in ("root", "nobody"):
        raise f.fail("username", f"{spec.username!r} is taken", "pick another name, e.g. `username: nonroot`")
    spec.home = f.path_in_image("home", f"/home/{spec.username}")
    spec.workdir = f.path_in_image("workdir", spec.home) if data.get("workdir") != "/" else "/"
    spec.entrypoint = f.str_list("entrypoint")
    spec.cmd = f.str_list("cmd")
    if not spec.entrypoint and not spec.cmd:
        raise f.fail("entrypoint", "neither entrypoint nor cmd is set",
                     "write what the image runs, e.g. `entrypoint: [/usr/local/bin/<binary>]`")
    spec.env = f.mapping("env")
    spec.labels = f.mapping("labels")
    spec.debian = f.str_list("debian")
    for pkg in spec.debian:
        if not _DEB_RE.match(pkg):
            raise f.fail("debian", f"{pkg!r} is not a Debian package name",
                         "list plain package names (versions are pinned in system.lock.json)")
    raw_go = data.get("go") or []
    if not isinstance(raw_go, list):
        raise f.fail("go", "expected a list of binaries", "write `go: [{name: ..., module: ...}]`")
    spec.go = [_go_binary(image_file, directory, item, i, version) for i, item in enumerate(raw_go)]
    names = [b.name for b in spec.go]
    if len(set(names)) != len(names):
        raise f.fail("go", f"binary names repeat: {names}", "give each binary its own `name:`")
    spec.pip = _optional_section(image_file, directory, data.get("pip"), "pip")  # type: ignore[assignment]
    spec.npm = _optional_section(image_file, directory, data.get("npm"), "npm")  # type: ignore[assignment]
    spec.rootfs = _rootfs_dirs(f, directory)
    if not (spec.debian or spec.go or spec.pip or spec.npm or spec.rootfs):
        raise UserError(f"{image_file}: the image has no content",
                        hint="list `debian:` packages or `go:` binaries, or add files under rootfs/")
    return spec
