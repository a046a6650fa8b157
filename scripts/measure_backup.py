"""Backup and restore throughput of a deployed platform, with a given amount of small files in the shared volume.

    KUBECONFIG=... python scripts/measure_backup.py -c qhub-config.yaml [--mib 1024] [--file-kib 64] [--keep-data]

Writes --mib MiB of random files of --file-kib KiB into `home/qhub-measure/` of the shared volume (a pod as the
hub's uid, the hub's placement), then times, with qhubctl as a user runs it: a first backup to a new local
directory, a second one with nothing changed, and `restore --force` from the directory (which stops the hub and
conda-store, puts every file back, and waits for the hub again). Prints the figures and removes the files (and the
directory) afterwards unless --keep-data. Needs a platform deployed by `qhubctl deploy` (e.g. `make demo`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from qhubctl.localcluster import bin_dir
from qhubctl.errors import CommandError
from qhubctl.proc import run

POD = "qhub-measure-backup"
FOLDER = "home/qhub-measure"
WRITE = """
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
for i in range(count):
    sub = os.path.join(root, f"d{i // 1000:03d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:06d}.bin"), "wb") as out:
        out.write(os.urandom(size))
print("written", count)
"""


def kubectl(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    return run([str(bin_dir() / "kubectl"), *args], input=stdin, env=dict(os.environ), timeout=timeout).stdout


def qhubctl(*args: str) -> float:
    """Run qhubctl as a user does; the seconds it took (exit on failure, with its output)."""
    begun = time.monotonic()
    result = run([sys.executable, "-c", "from qhubctl.cli import main; main()", *args], env=dict(os.environ),
                 check=False, timeout=7200)
    if result.returncode != 0:
        sys.exit(f"qhubctl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.monotonic() - begun


def in_share(namespace: str, release: str, script: str, args: list[str], timeout: float) -> str:
    """Run a Python script in a pod beside the hub (its image, uid, placement) with the shared volume at /share."""
    hub = json.loads(kubectl("get", "deployment", f"{release}-hub", "-n", namespace, "-o", "json"))
    spec = hub["spec"]["template"]["spec"]
    hub_container = next(c for c in spec["containers"] if c["name"] == "hub")
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": namespace, "labels": {"app.kubernetes.io/component": "measure"}},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            **{k: spec[k] for k in ("nodeSelector", "tolerations", "imagePullSecrets") if spec.get(k)},
            "securityContext": {k: v for k, v in (spec.get("securityContext") or {}).items()
                                if k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")},
            "containers": [{
                "name": "measure", "image": hub_container["image"], "command": ["python3", "-c", script, *args],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
                "volumeMounts": [{"name": "share", "mountPath": "/share"}],
            }],
            "volumes": [{"name": "share", "persistentVolumeClaim": {"claimName": f"{release}-shared"}}],
        },
    }
    kubectl("delete", "pod", POD, "-n", namespace, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = kubectl("get", "pod", POD, "-n", namespace, "-o", "jsonpath={.status.phase}")
        if phase in ("Succeeded", "Failed"):
            log = kubectl("logs", POD, "-n", namespace)
            kubectl("delete", "pod", POD, "-n", namespace, "--wait=false")
            if phase == "Failed":
                sys.exit(f"the pod writing to the shared volume failed:\n{log}")
            return log
        time.sleep(2)
    sys.exit(f"the pod {namespace}/{POD} did not finish within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--mib", type=int, default=1024, help="MiB of files to write (default 1024)")
    parser.add_argument("--file-kib", type=int, default=64, help="size of each file in KiB (default 64)")
    parser.add_argument("--keep-data", action="store_true", help="leave the files and the archive in place")
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(args.config.read_text())
    namespace, release = cfg.get("namespace", "qhub"), cfg.get("release_name", "qhub")
    count = args.mib * 1024 // args.file_kib
    begun = time.monotonic()
    in_share(namespace, release, WRITE, [f"/share/{FOLDER}", str(count), str(args.file_kib * 1024)], 1800)
    print(f"wrote {args.mib} MiB in {count} files of {args.file_kib} KiB in {time.monotonic() - begun:.0f}s")
    work = Path(tempfile.mkdtemp(prefix="qhub-measure-backup-"))
    archive, key = work / "archive", work / "backup.key"
    common = ["-c", str(args.config), "--key-file", str(key)]
    try:
        first = qhubctl("backup", "-o", str(archive), *common)
        manifest = json.loads(sorted((archive / "manifests").iterdir())[-1].read_text())["parts"]["files"]
        mb = manifest["bytes"] / 1e6
        print(f"first backup to a directory: {mb:.0f} MB in {manifest['files']} files, {first:.0f}s "
              f"({mb / first:.1f} MB/s end to end; restic {manifest['seconds']:.0f}s); archive "
              f"{sum(p.stat().st_size for p in archive.rglob('*') if p.is_file()) / 1e6:.0f} MB")
        second = qhubctl("backup", "-o", str(archive), *common)
        print(f"second backup, nothing changed: {second:.0f}s")
        restore = qhubctl("restore", str(archive), *common, "--force", "--yes")
        print(f"restore --force from the directory: {restore:.0f}s ({mb / restore:.1f} MB/s end to end)")
    finally:
        if not args.keep_data:
            in_share(namespace, release, "import shutil, sys; shutil.rmtree(sys.argv[1]); print('removed')",
                     [f"/share/{FOLDER}"], 600)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: /share/{FOLDER} in the shared volume, the archive in {archive}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except CommandError as exc:  # kubectl could not reach the cluster or the platform
        raise SystemExit(f"measure_backup: {exc}") from None
