#!/usr/bin/env python3
"""Build time and image size of `qhubctl images build`, cold and cached.

    scripts/bench_images.py                 the test channel's demo spec and a synthetic 150-package spec
    scripts/bench_images.py SPEC [SPEC...]  these spec directories (their channels must be reachable)

Cold: an empty cache (packages downloaded and extracted, every layer written); only the Debian packages of the
base are copied in from $QHUB_CACHE, so apt mirror speed is not measured. Cached: the same build again, which
installs nothing when every package layer is in the cache. Specs are copied first: their lock files stay as they
are. Prints one line per spec and cache state.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "images"))


def synthetic_channel(channel: Path, count: int) -> list[str]:
    """`count` linux-64 packages of 20-400 KiB of incompressible data each, chained by dependencies."""
    from localchannel import Pkg, make_channel

    rng = random.Random(7)
    packages = []
    for i in range(count):
        size = rng.randint(20, 400) * 1024
        depends = [f"synth{j:03d}" for j in (i - 1, i // 2) if 0 <= j < i]
        files = {f"share/synth{i:03d}/data.bin": (rng.randbytes(size), 0o644),
                 f"bin/synth{i:03d}": (f"#!/bin/sh\necho synth{i:03d}\n", 0o755)}
        packages.append(Pkg(f"synth{i:03d}", "1.0", depends=sorted(set(depends)), files=files))
    make_channel(channel, packages)
    return [p.name for p in packages]


def write_spec(directory: Path, channel: Path, deps: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "environment.yaml").write_text(
        "name: bench\nchannels: [" + channel.as_uri() + "]\ndependencies:\n" + "".join(f"  - {d}\n" for d in deps)
    )
    (directory / "image.yaml").write_text("base: busybox\n")
    return directory


def measure(spec: Path, label: str, debs: Path) -> None:
    from qhubctl.images.build import build

    with tempfile.TemporaryDirectory(prefix="qhub-bench-cache-") as cache:
        os.environ["QHUB_CACHE"] = cache
        if debs.is_dir():
            shutil.copytree(debs, Path(cache) / "images" / "debs")
        for state in ("cold", "cached"):
            result = build(spec)
            image = result.image
            print(
                f"{label:<22} {state:<6} {result.seconds:7.2f}s  packages={len(result.records):<4} "
                f"layers={len(image.layers):<3} size={image.size / 1e6:8.2f} MB  {image.manifest_digest[:19]}",
                flush=True,
            )
        # keep what the cold build downloaded for the base: later specs (and runs) reuse it
        debs.mkdir(parents=True, exist_ok=True)
        for deb in (Path(cache) / "images" / "debs").glob("*.deb"):
            if not (debs / deb.name).exists():
                shutil.copy2(deb, debs / deb.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--synthetic", type=int, default=150, help="packages in the synthetic spec (0: skip it)")
    args = parser.parse_args()
    user_cache = Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub"))
    debs = user_cache / "images" / "debs"
    with tempfile.TemporaryDirectory(prefix="qhub-bench-") as tmp:
        work = Path(tmp)
        runs: list[tuple[str, Path]] = []
        for spec in args.specs:
            copy = work / f"spec-{len(runs)}"
            shutil.copytree(spec, copy, symlinks=False)
            runs.append((spec.name, copy))
        if not args.specs:
            from localchannel import make_channel

            demo = make_channel(work / "demo-channel")
            runs.append(("demo (3 packages)", write_spec(work / "demo", demo, ["qhub-hello 1.*"])))
            if args.synthetic:
                names = synthetic_channel(work / "synth-channel", args.synthetic)
                synth = write_spec(work / "synth", work / "synth-channel", names)
                runs.append((f"synthetic ({args.synthetic})", synth))
        print(f"{'spec':<22} {'cache':<6} {'time':>8}", flush=True)
        for label, spec in runs:
            measure(spec, label, debs)


if __name__ == "__main__":
    main()
