"""Copy a restic repository between the staging volume of a running backup or restore Job and a local directory,
through the Kubernetes API (exec of the Job's own program: `list`, `send`, `receive`, `done`).

restic never changes a file once written and names every file but `config` after the SHA-256 of its content, so
only files missing on the other side are copied, and every copy is checked against its name.
"""

from __future__ import annotations

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
BLOCK = 1 << 20       # bytes per stdin frame
IDLE_SECONDS = 120    # a copy that receives nothing for this long has stalled
STDOUT, STDERR, STATUS = 1, 2, 3  # channels of the exec stream


class _Sink:
    """Where the bytes a pod sends go: a file being written and hashed, or memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.handle = path.open("wb") if path else None
        self.memory = bytearray()
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.handle:
            self.handle.write(data)
            self.hash.update(data)
        else:
            self.memory += data

    def close(self) -> None:
        if self.handle:
            self.handle.close()


def _exit_code(status: bytes) -> int:
    """The exit code in the exec's final status (channel 3): 0 on Success."""
    found = json.loads(status.decode(errors="replace") or "{}")
    if found.get("status") == "Success":
        return 0
    for cause in (found.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message") or 1)
    return 1


def _exec(api: Any, namespace: str, pod: str, args: list[str], stdin: Path | None = None,
          sink: _Sink | None = None) -> bytes:
    """Run the Job's program in its pod with `args`; stdin from a file, stdout into `sink` (or returned).

    The exec stream is read frame by frame straight from its WebSocket (binary, no base64), which moves tens of
    MB/s where the client's buffered channel reads manage well under one."""
    client = kube.kubernetes()
    from kubernetes.stream import stream  # after kube.kubernetes(): it imports the client its own way
    from websocket import ABNF, WebSocketTimeoutException

    core = client.client.CoreV1Api(api)
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, container="agent",
                command=["python3", AGENT, *args], stdin=stdin is not None, stdout=True, stderr=True, tty=False,
                binary=True, _preload_content=False)
    out = sink or _Sink()
    err = bytearray()
    code: int | None = None
    try:
        ws.sock.settimeout(IDLE_SECONDS)
        if stdin is not None:
            with stdin.open("rb") as handle:
                for block in iter(lambda: handle.read(BLOCK), b""):
                    ws.write_stdin(block)
        while code is None:
            op, frame = ws.sock.recv_data_frame(True)
            if op == ABNF.OPCODE_CLOSE:
                break
            data = frame.data
            if not data:
                continue
            if data[0] == STDOUT:
                out.write(data[1:])
            elif data[0] == STDERR:
                err += data[1:]
            elif data[0] == STATUS:
                code = _exit_code(data[1:])
    except WebSocketTimeoutException as exc:
        raise ClusterError(f"copying the archive stalled in pod {namespace}/{pod} ({' '.join(args[:2])}): "
                           f"nothing arrived for {IDLE_SECONDS}s") from exc
    except OSError as exc:
        raise ClusterError(f"copying the archive broke off in pod {namespace}/{pod} ({' '.join(args[:2])}): "
                           f"{exc}") from exc
    finally:
        out.close()
        ws.close()
    if code != 0:
        raise ClusterError(f"copying the archive failed in pod {namespace}/{pod} ({' '.join(args[:2])}): "
                           f"{err.decode(errors='replace').strip()[-1000:] or 'the stream ended without an exit code'}")
    return bytes(out.memory)


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
    remote: dict[str, int] = json.loads(_exec(api, namespace, pod, ["list"]) or b"{}")
    todo = _missing(remote, local_listing(target))
    total = sum(remote[r] for r in todo)
    copied = 0
    for relative in todo:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        sink = _Sink(partial)
        _exec(api, namespace, pod, ["send", relative], sink=sink)
        name = Path(relative).name
        if sink.size != remote[relative] or (name not in UNNAMED and sink.hash.hexdigest() != name):
            partial.unlink(missing_ok=True)
            raise ClusterError(f"{relative} arrived damaged from {namespace}/{pod}; run the backup again")
        os.replace(partial, path)
        copied += sink.size
        progress(f"copied {copied / 1e6:.1f} of {total / 1e6:.1f} MB to {target}")
    return copied


def upload(api: Any, namespace: str, pod: str, source: Path, progress: Callable[[str], None]) -> int:
    """Copy the local repository's files missing in the pod's, then let the pod go on; bytes copied."""
    remote: dict[str, int] = json.loads(_exec(api, namespace, pod, ["list"]) or b"{}")
    have = local_listing(source)
    todo = _missing(have, remote)
    total = sum(have[r] for r in todo)
    copied = 0
    for relative in todo:
        if not content_ok(relative, (source / relative).read_bytes()):
            raise ClusterError(f"{source / relative} does not match its checksum: the archive is damaged")
        _exec(api, namespace, pod, ["receive", relative, str(have[relative])], stdin=source / relative)
        copied += have[relative]
        progress(f"copied {copied / 1e6:.1f} of {total / 1e6:.1f} MB from {source}")
    release(api, namespace, pod)
    return copied


def release(api: Any, namespace: str, pod: str) -> None:
    """Tell the Job its files are copied."""
    _exec(api, namespace, pod, ["done"])
