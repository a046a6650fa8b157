"""`conda`, as far as conda-store's worker and `python -m conda_lock install` use it, on py-rattler.

  conda --version                                   what conda-lock's executable probe reads
  conda info --json                                 pkgs_dirs (where conda-store downloads packages) and platform
  conda create --file EXPLICIT --prefix P [--yes]   link the explicit lockfile's packages into P with rattler
  conda run --prefix P CMD...                       CMD with P/bin first on PATH (conda-lock's pip step)
  conda env export --prefix P --json                the prefix's packages as an environment file

Packages are taken from the package directory conda-store's worker filled (`CONDA_PKGS_DIRS`, first entry) after
checking them against the lockfile's hash; a package missing there is downloaded from its URL. Anything else
exits with status 2 naming the command, so a conda-store change that needs more of conda fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import pathlib
import sys
import tempfile
import urllib.request

import rattler

# conda-lock's executable probe parses "conda <version>"; this is the conda CLI level whose subset is provided.
COMPAT_VERSION = "24.11.0"
PLATFORM = "linux-64"


def pkgs_dir() -> pathlib.Path:
    first = (os.environ.get("CONDA_PKGS_DIRS") or "").split(",")[0]
    return pathlib.Path(first or pathlib.Path.home() / ".conda" / "pkgs")


def parse_explicit(path: str) -> list[tuple[str, str]]:
    """(url, hash) pairs of an explicit lockfile: `url#md5` or `url#sha256:hex` lines after @EXPLICIT."""
    lines = pathlib.Path(path).read_text().splitlines()
    if "@EXPLICIT" not in [line.strip() for line in lines]:
        raise SystemExit(f"conda create: {path} is not an explicit lockfile (no @EXPLICIT line)")
    entries = []
    for line in lines[[line.strip() for line in lines].index("@EXPLICIT") + 1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            url, _, digest = line.partition("#")
            entries.append((url, digest))
    return entries


def verified_archive(url: str, digest: str) -> pathlib.Path:
    """The package archive of `url` (from the package directory, else downloaded), checked against `digest`."""
    name = url.rsplit("/", 1)[-1]
    path = pkgs_dir() / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=300) as response, path.open("wb") as f:  # noqa: S310
            f.write(response.read())
    algo, _, expected = digest.rpartition(":") if ":" in digest else ("sha256" if len(digest) == 64 else "md5",
                                                                         "", digest)
    actual = hashlib.new(algo or "md5", path.read_bytes()).hexdigest()
    if expected and actual != expected:
        raise SystemExit(f"conda create: {name} has {algo} {actual}, the lockfile says {expected}")
    return path


async def records_for(entries: list[tuple[str, str]]) -> list[rattler.RepoDataRecord]:
    records = []
    for url, digest in entries:
        archive = verified_archive(url, digest)
        record = await rattler.RepoDataRecord.from_package_archive(archive)
        channel = url.rsplit("/", 2)[0]
        records.append(rattler.RepoDataRecord(record, archive.name, archive.as_uri(), channel))
    return records


def record_package_paths(prefix: str) -> None:
    """conda's package-cache fields in each conda-meta record (conda-store reads the archives through them)."""
    for meta in pathlib.Path(prefix, "conda-meta").glob("*.json"):
        record = json.loads(meta.read_text())
        archive = pkgs_dir() / record["fn"]
        record["package_tarball_full_path"] = str(archive)
        record["extracted_package_dir"] = str(archive).removesuffix(".tar.bz2").removesuffix(".conda")
        meta.write_text(json.dumps(record, indent=2))


def create(args: argparse.Namespace) -> int:
    records = asyncio.run(records_for(parse_explicit(args.file)))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(rattler.install(records, target_prefix=args.prefix, cache_dir=pathlib.Path(tmp),
                                    show_progress=False, execute_link_scripts=False))
    record_package_paths(args.prefix)
    print(f"linked {len(records)} packages into {args.prefix}")
    return 0


def run(args: argparse.Namespace) -> int:
    prefix = os.path.abspath(args.prefix)
    env = {**os.environ, "PATH": f"{prefix}/bin:{os.environ.get('PATH', '')}", "CONDA_PREFIX": prefix}
    command = [c for c in args.command if c != "--"]
    os.execvpe(command[0], command, env)
    return 127


def env_export(args: argparse.Namespace) -> int:
    records = [rattler.PrefixRecord.from_path(p) for p in sorted(pathlib.Path(args.prefix, "conda-meta").glob("*.json"))]
    channels = sorted({str(r.channel) for r in records if r.channel})
    deps = [f"{r.name.normalized}={r.version}={r.build}" for r in records]
    print(json.dumps({"name": pathlib.Path(args.prefix).name, "channels": channels, "dependencies": deps,
                      "prefix": os.path.abspath(args.prefix)}))
    return 0


def info(_: argparse.Namespace) -> int:
    print(json.dumps({"pkgs_dirs": [str(pkgs_dir())], "platform": PLATFORM, "conda_version": COMPAT_VERSION,
                      "channels": [], "root_prefix": sys.prefix}))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conda", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"conda {COMPAT_VERSION}")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("info").add_argument("--json", action="store_true")
    c = sub.add_parser("create")
    c.add_argument("--file", required=True)
    c.add_argument("-p", "--prefix", required=True)
    for flag in ("--yes", "-y", "--quiet", "-q", "--copy"):
        c.add_argument(flag, action="store_true")
    r = sub.add_parser("run")
    r.add_argument("-p", "--prefix", required=True)
    r.add_argument("command", nargs=argparse.REMAINDER)
    e = sub.add_parser("env").add_subparsers(dest="env_verb", required=True).add_parser("export")
    e.add_argument("-p", "--prefix", required=True)
    e.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        print(f"conda (QHub, rattler): unsupported arguments {unknown} for `{args.verb}`", file=sys.stderr)
        return 2
    handler = {"info": info, "create": create, "run": run, "env": env_export}[args.verb]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
