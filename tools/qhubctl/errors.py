"""QHub's own exceptions. Library code raises these; the command layer turns them into a message and an exit code.

Exit codes: 0 ok, 1 user error (bad config, refused action), 2 reserved for "plan has changes" (deploy --dry-run
with --detailed-exitcode), 3 and up for failures of tools, the cluster or the network.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_CHANGES = 2
EXIT_FAILURE = 3


class QHubError(Exception):
    """Base of every error qhubctl reports without a traceback.

    `hint` tells the user what to do about it; `exit_code` is what the command exits with.
    """

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UserError(QHubError):
    """Something the user can fix: a bad file, a refused action, a missing argument."""

    exit_code = EXIT_USER


class ConfigError(UserError):
    """The config file is missing, unreadable or invalid. `problems` lists "field.path: message - hint" lines."""

    def __init__(self, message: str, *, hint: str = "", problems: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class ImmutableFieldError(UserError):
    """A deploy would change a field that cannot change after the first deploy."""


class RefusedError(UserError):
    """The user declined a confirmation, or an action is refused for safety."""


class CommandError(QHubError):
    """An external command failed. Carries the command line, its exit code and the tail of its stderr."""

    def __init__(self, args: list[str], returncode: int | None, stderr: str = "", *, hint: str = "") -> None:
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr_tail = _tail(stderr)
        what = "timed out" if returncode is None else f"exited with {returncode}"
        message = f"command {' '.join(self.args_list)!s} {what}"
        if self.stderr_tail:
            message += f":\n{self.stderr_tail}"
        super().__init__(message, hint=hint)


class ToolNotFoundError(QHubError):
    """A required executable is not on PATH."""


class HelmError(QHubError):
    """Helm could not render, install, upgrade or uninstall the chart."""


class ClusterError(QHubError):
    """The Kubernetes API refused or failed a request, or workloads did not become ready."""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
