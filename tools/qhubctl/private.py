"""Files only their owner may read (kubeconfigs: they hold cluster credentials), created that way from the start.

`write_private` never lets the content exist with wider permissions, not even for a moment: it writes a new file
that `os.open` creates with mode 0600 (the umask can only narrow that), then renames it over the target. A file
already at the target, whatever its mode, is replaced by the new inode, so a reader that opened the old file never
sees the new content and nobody's umask or earlier chmod widens it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from qhubctl.errors import UserError

MODE = 0o600


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 0600 from the first byte; atomic (a reader sees the old or the new file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), MODE)
    except FileNotFoundError:
        raise UserError(f"cannot write {path}: the folder {path.parent} does not exist",
                        hint="create the folder or choose another path") from None
    except FileExistsError:
        raise UserError(f"cannot write {path}: {tmp} is in the way (left by an interrupted run?)",
                        hint=f"delete {tmp} and run the command again") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path
