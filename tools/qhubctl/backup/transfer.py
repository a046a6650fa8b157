"""Copy a restic repository between the staging volume of a running backup or restore Job and a local directory,
through the Kubernetes API (exec of the Job's own program: `list`, `send`, `receive`, `done`).

restic never changes a file once written and names every file but `config` after the SHA-256 of its content, so
only files missing on the other side are copied, and every copy is checked against its name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qhubctl import kube
from qhubctl.errors import ClusterError

AGENT = "/etc/qhub-backup/agent.py"
UNNAMED = {"config"}  # the one file not named after its hash
CHUNK = 57 * 1024     # bytes per base64 burst (76-character lines)


def _exec(api: Any, namespace: str, pod: str, args: list[str], stdin: bytes | None = None) -> str:
    client = kube.kubernetes()
    from kubernetes.stream import stream  # after kube.kubernetes(): it imports the client its own way

    core = client.client.CoreV1Api(api)
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, container="agent",
                command=["python3", AGENT, *args], stdin=stdin is not None, stdout=True, stderr=True, tty=False,
                _preload_content=False)
    out: list[str] = []
    err: list[str] = []
    if stdin is not None:
        for start in range(0, len(stdin), CHUNK):
            ws.write_stdin(base64.encodebytes(stdin[start:start + CHUNK]).decode())
        ws.write_stdin("END\n")
    while ws.is_open():
        ws.update(timeout=5)
        if ws.peek_stdout():
            out.append(ws.read_stdout())
        if ws.peek_stderr():
            err.append(ws.read_stderr())
    ws.close()
    code = ws.returncode
    if code not in (0, None):
        raise ClusterError(f"copying the archive failed in pod {namespace}/{pod} ({' '.join(args)}): "
                           f"{''.join(err).strip()[-1000:]}")
    return "".join(out)


def content_ok(relative: str, data: bytes) -> bool:
    name = Path(relative).name
    return name in UNNAMED or hashlib.sha256(data).hexdigest() == name


def local_listing(root: Path) -> dict[str, int]:
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and "locks" not in p.relative_to(root).parts}


def verify_local(root: Path) -> list[str]:
    """Files of a local repository whose content does not match their name (damaged), or that cannot be read."""
    bad = []
    for relative in local_listing(root):
        try:
            if not content_ok(relative, (root / relative).read_bytes()):
                bad.append(relative)
        except OSError:
            bad.append(relative)
    return bad


def _missing(source: dict[str, int], target: dict[str, int]) -> list[str]:
    """Files of `source` that `target` lacks or holds with another size, and `config` always."""
    return [r for r in source if target.get(r) != source[r] or r in UNNAMED]


def download(api: Any, namespace: str, pod: str, target: Path, progress: Callable[[str], None]) -> int:
    """Copy the files of the pod's repository missing in `target`; bytes copied."""
    remote: dict[str, int] = json.loads(_exec(api, namespace, pod, ["list"]) or "{}")
    todo = _missing(remote, local_listing(target))
    total = sum(remote[r] for r in todo)
    copied = 0
    for relative in todo:
        data = base64.decodebytes(_exec(api, namespace, pod, ["send", relative]).encode())
        if len(data) != remote[relative] or not content_ok(relative, data):
            raise ClusterError(f"{relative} arrived damaged from {namespace}/{pod}; run the backup again")
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        copied += len(data)
        progress(f"copied {copied / 1e6:.1f} of {total / 1e6:.1f} MB to {target}")
    return copied


def upload(api: Any, namespace: str, pod: str, source: Path, progress: Callable[[str], None]) -> int:
    """Copy the local repository's files missing in the pod's, then let the pod go on; bytes copied."""
    remote: dict[str, int] = json.loads(_exec(api, namespace, pod, ["list"]) or "{}")
    have = local_listing(source)
    todo = _missing(have, remote)
    total = sum(have[r] for r in todo)
    copied = 0
    for relative in todo:
        data = (source / relative).read_bytes()
        if not content_ok(relative, data):
            raise ClusterError(f"{source / relative} does not match its checksum: the archive is damaged")
        _exec(api, namespace, pod, ["receive", relative], stdin=data)
        copied += len(data)
        progress(f"copied {copied / 1e6:.1f} of {total / 1e6:.1f} MB from {source}")
    release(api, namespace, pod)
    return copied


def release(api: Any, namespace: str, pod: str) -> None:
    """Tell the Job its files are copied."""
    _exec(api, namespace, pod, ["done"])
