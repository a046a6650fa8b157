"""The one subprocess wrapper: every external tool except Helm (which goes through pyhelm3) runs through `run`.

No shell, arguments as a list, failures become `CommandError` with the command, exit code and stderr tail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qhubctl.errors import CommandError, ToolNotFoundError


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tool_path() -> str:
    """PATH with $QHUB_CACHE/bin (default ~/.cache/qhub/bin) first, where `make tools` puts pinned binaries."""
    cache = Path(os.environ.get("QHUB_CACHE", Path.home() / ".cache" / "qhub"))
    return os.pathsep.join([str(cache / "bin"), os.environ.get("PATH", "")])


def which(tool: str, env: Mapping[str, str] | None = None) -> str:
    """Absolute path of `tool`, searching the QHub tool dir first; ToolNotFoundError names the tool if absent."""
    search = (env or {}).get("PATH") or tool_path()
    found = shutil.which(tool, path=search)
    if not found:
        raise ToolNotFoundError(
            f"{tool} not found on PATH", hint=f"run `make tools` or put {tool} in $QHUB_CACHE/bin"
        )
    return found


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = 600,
    check: bool = True,
    input: str | None = None,
) -> Result:
    """Run a command and capture its output as text.

    `env` is added on top of the current environment (PATH gets the QHub tool dir first unless `env` sets it).
    With `check` a non-zero exit raises CommandError; a timeout always raises CommandError (returncode None).
    """
    argv = [os.fspath(a) for a in args]
    full_env = {**os.environ, "PATH": tool_path(), **(env or {})}
    argv[0] = which(argv[0], full_env) if os.sep not in argv[0] else argv[0]
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, never a shell
            argv, env=full_env, cwd=cwd, timeout=timeout, capture_output=True, text=True, input=input
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, None, stderr, hint=f"it ran longer than {timeout}s") from None
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and not result.ok:
        raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
    return result
