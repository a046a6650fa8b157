"""Long-lived host processes of the local cluster (the simulated autoscaler, containerd, kubelet, kube-proxy, the
image registry): started detached with a pid file, stopped by that file, never confused with a process that
later reused the pid.

`proc.run` waits for a command to finish; a daemon does not, so this is the one other place that starts processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from qhubctl.errors import QHubError


def start(pid_file: Path, args: Sequence[str | os.PathLike[str]], *, log_file: Path,
          env: Mapping[str, str] | None = None) -> int:
    """Start `args` in a session of its own, output appended to `log_file`; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argument list, never a shell
            [os.fspath(a) for a in args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(env) if env is not None else None,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def running(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line contains `marker`."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if marker.encode() in cmdline and alive(pid) else None


def stop(pid_file: Path, marker: str, *, grace: float = 15) -> None:
    """Stop the process group named by `pid_file` (SIGTERM, then SIGKILL after `grace` seconds)."""
    pid = running(pid_file, marker)
    if pid is not None:
        terminate_group(pid, grace)
    pid_file.unlink(missing_ok=True)


def terminate_group(pid: int, grace: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while alive(pid):
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            return
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether the process still runs; an exited child of this process is reaped (not counted as alive)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: look it up
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(what: str, check: Callable[[], object], *, timeout: float, log_file: Path | None = None,
             interval: float = 0.25) -> None:
    """Poll `check()` until it is true; on timeout raise QHubError naming `what` and the log's last lines."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = ""
            if log_file is not None and log_file.exists():
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise QHubError(f"{what} within {timeout:.0f}s",
                            hint=f"last lines of {log_file}:\n{tail}" if tail else "")
        time.sleep(interval)
