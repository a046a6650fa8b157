"""Hand homes from before per-user uids to their users: the program `qhubctl upgrade --homes` runs in a one-shot Job.

Before per-user uids every user's server ran as uid 1000 (gid 100), so every home and everything in it belongs to
1000. This program runs as root (CHOWN, DAC_OVERRIDE, FOWNER and FSETID only) where the shared filesystem is
reachable as root (the shared PVC, or the NFS server's own disk: NFS clients are root-squashed) and, given the
uid of every user from the hub's identities record:

- home/<user> owned by uid 1000 becomes the user's: every entry in it owned by 1000 goes to the user's uid (and
  from gid 100 to the user's gid), the folder itself last (so an interrupted run is simply run again), mode 0700;
- a home of a name without a uid (not a hub user), or owned by anyone but 1000, is left alone and reported;
- in shared/<group>, what 1000 owns becomes writable by the group, as it was to every member before.

What has a name outside the folder being migrated is left alone: before, anyone could hard-link anything of uid
1000 (another user's file, the hub's or conda-store's) into their own home or a group folder, and handing that
name over would hand over the file. So each home, and each group folder, is walked twice: first counting the names
it holds of every entry of 1000 other than a folder with more than one link (only those are remembered), then
changing. An entry whose every link is in that folder (conda environments and `git clone --local` make many) is
handed over like any other; one with a link elsewhere keeps its owner and mode and is reported ("multiLink", its
names in the folder, below the share), as is a device file of 1000 ("devices"; its owner would get the device).
Fifos and sockets of one link are handed over like files.

Nothing is followed: folders are opened with O_NOFOLLOW relative to their parent's descriptor and no other
filesystem is entered, so a symlink or a folder swapped in while it runs leads nowhere outside the home being
migrated. Folders, files and fifos are changed through a descriptor of their own, opened with O_NOFOLLOW and
checked (fstat) to be the entry looked at, with as many links as names counted: a link made elsewhere before
that check keeps the entry as it is. Not seen are a link made between that check and the fchown, and a name moved
out of the folder between the two walks; symlinks and sockets cannot be opened and are changed with lchown through
the parent's descriptor, so an entry swapped in under their name between the look and the lchown could be changed.
Each takes a process of uid 1000 running during the migration (a server from before): stop the old servers first.
Standard library only (it runs in the hub image); prints one JSON report on stdout.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

LEGACY_UID = 1000
LEGACY_GID = 100
HOME_MODE = 0o700
HOMES_MODE = 0o1733
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# a file or fifo: never through a symlink, never waiting for a fifo's writer, never becoming a controlling terminal
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
LIST_CAP = 50  # paths listed per kind of entry left alone; the count is always complete

# visit(parent_fd, name, lstat, path below the share) -> whether it changed the entry
Visit = Callable[[int, str, os.stat_result, str], bool]
# (st_dev, st_ino) of an entry with more than one link -> how many of its names the folder being migrated holds
Names = dict[tuple[int, int], int]


@dataclass
class Listing:
    """Entries left as they were for the admin to check: every one counted, the first LIST_CAP listed by path."""

    count: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.paths) < LIST_CAP:
            self.paths.append(path)


@dataclass
class Kept:
    """Entries of the legacy uid that keep their owner and mode (see the module's doc)."""

    links: Listing = field(default_factory=Listing)
    devices: Listing = field(default_factory=Listing)

    def holds(self, st: os.stat_result, path: str, names: Names) -> bool:
        """Whether the entry `st` at `path` must stay as it is (a device, or linked from outside the folder whose
        `names` were counted); noted here if so."""
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            self.devices.add(path)
            return True
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and names.get((st.st_dev, st.st_ino)) != st.st_nlink:
            self.links.add(path)
            return True
        return False


def _open_dir(name: str, parent: int) -> int | None:
    """A folder below `parent`, never through a symlink; None if it is not a folder (any more)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink
            return None
        raise


def _walk(top: int, where: str, visit: Visit) -> int:
    """Call visit for every entry below the folder `top` (at `where` below the share), depth first, descending only
    into real folders of the same filesystem; returns how many entries visit changed. At most one descriptor per
    level is open."""
    device = os.fstat(top).st_dev
    changed = 0
    stack: list[tuple[int, str, list[str]]] = [(top, where, sorted(os.listdir(top)))]
    while stack:
        fd, path, names = stack[-1]
        if not names:
            stack.pop()
            if fd != top:
                os.close(fd)
            continue
        name = names.pop()
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        changed += bool(visit(fd, name, st, f"{path}/{name}"))
        if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
            child = _open_dir(name, fd)
            if child is not None:
                stack.append((child, f"{path}/{name}", sorted(os.listdir(child))))
    return changed


def count_names(top: int, where: str) -> Names:
    """The first walk of a home or group folder: how many names below `top` each entry of the legacy uid other than
    a folder with more than one link has. Entries of one link are not remembered."""
    names: Names = {}

    def visit(parent: int, name: str, st: os.stat_result, path: str) -> bool:
        if st.st_uid == LEGACY_UID and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            names[st.st_dev, st.st_ino] = names.get((st.st_dev, st.st_ino), 0) + 1
        return False

    _walk(top, where, visit)
    return names


def _reopen(parent: int, name: str, st: os.stat_result) -> tuple[int, os.stat_result] | None:
    """The folder, file or fifo `name` opened (see FILE_FLAGS) with its fstat, if it is still the entry `st`
    describes; None if it is gone or was swapped since."""
    try:
        fd = os.open(name, DIR_FLAGS if stat.S_ISDIR(st.st_mode) else FILE_FLAGS, dir_fd=parent)
    except OSError:
        return None
    now = os.fstat(fd)
    if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
        return fd, now
    os.close(fd)
    return None


def give_tree(top: int, where: str, uid: int, gid: int, kept: Kept) -> int:
    """Every entry below `top` (at `where` below the share) owned by the legacy uid goes to uid (and from the legacy
    gid to gid), except what `kept` holds: those are noted there and left as they are."""
    names = count_names(top, where)

    def visit(parent: int, name: str, st: os.stat_result, path: str) -> bool:
        if st.st_uid != LEGACY_UID or kept.holds(st, path, names):
            return False
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):  # cannot be opened (see the module's doc)
            os.chown(name, uid, gid if st.st_gid == LEGACY_GID else -1, dir_fd=parent, follow_symlinks=False)
            return True
        opened = _reopen(parent, name, st)
        if opened is None:
            return False
        fd, now = opened
        try:
            if now.st_uid != LEGACY_UID or kept.holds(now, path, names):  # linked since it was looked at
                return False
            os.fchown(fd, uid, gid if now.st_gid == LEGACY_GID else -1)
        finally:
            os.close(fd)
        return True

    return _walk(top, where, visit)


def open_to_group(top: int, where: str, gid: int, kept: Kept) -> int:
    """Every file and folder below `top` (at `where` below the share) owned by the legacy uid: group `gid`, group
    read and write (folders also search, and setgid so new entries keep the group); except what `kept` holds."""
    names = count_names(top, where)

    def visit(parent: int, name: str, st: os.stat_result, path: str) -> bool:
        if st.st_uid != LEGACY_UID or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return False
        if kept.holds(st, path, names):
            return False
        opened = _reopen(parent, name, st)
        if opened is None:
            return False
        fd, now = opened
        try:
            if now.st_uid != LEGACY_UID or kept.holds(now, path, names):  # linked since it was looked at
                return False
            if now.st_gid != gid:
                os.fchown(fd, -1, gid)
            extra = stat.S_IRGRP | stat.S_IWGRP
            if stat.S_ISDIR(now.st_mode):
                extra |= stat.S_IXGRP | stat.S_ISGID
            os.fchmod(fd, stat.S_IMODE(now.st_mode) | extra)
        finally:
            os.close(fd)
        return True

    return _walk(top, where, visit)


def migrate(root: str, uids: dict[str, int], gids: dict[str, int]) -> dict[str, Any]:
    """Migrate the shared filesystem mounted at `root`; the report lists what was done and what was left."""
    report: dict[str, Any] = {"migrated": {}, "already": [], "noUid": [], "otherOwner": {}, "notFolder": [],
                              "groups": {}}
    kept = Kept()
    top = os.open(root, DIR_FLAGS)
    try:
        homes = _open_dir("home", top)
        if homes is not None:
            try:
                _migrate_homes(homes, uids, kept, report)
            finally:
                os.close(homes)
        shared = _open_dir("shared", top)
        if shared is not None:
            try:
                _open_groups(shared, gids, kept, report)
            finally:
                os.close(shared)
    finally:
        os.close(top)
    report["multiLink"] = asdict(kept.links)
    report["devices"] = asdict(kept.devices)
    return report


def _migrate_homes(homes: int, uids: dict[str, int], kept: Kept, report: dict[str, Any]) -> None:
    st = os.fstat(homes)
    if st.st_uid == LEGACY_UID and stat.S_IMODE(st.st_mode) != HOMES_MODE:
        os.fchmod(homes, HOMES_MODE)  # anyone may add a home, nobody may list or remove another's
    for name in sorted(os.listdir(homes)):
        st = os.stat(name, dir_fd=homes, follow_symlinks=False)
        uid = uids.get(name)
        if not stat.S_ISDIR(st.st_mode):
            report["notFolder"].append(name)
        elif uid is not None and st.st_uid == uid:
            report["already"].append(name)
        elif st.st_uid != LEGACY_UID:
            report["otherOwner"][name] = st.st_uid
        elif uid is None:
            report["noUid"].append(name)
        else:
            home = _open_dir(name, homes)
            if home is None:
                report["notFolder"].append(name)
                continue
            try:
                changed = give_tree(home, f"home/{name}", uid, uid, kept)
                os.fchown(home, uid, uid)  # last: a home still owned by 1000 is not done
                os.fchmod(home, HOME_MODE)
            finally:
                os.close(home)
            report["migrated"][name] = {"uid": uid, "entries": changed + 1}


def _open_groups(shared: int, gids: dict[str, int], kept: Kept, report: dict[str, Any]) -> None:
    for group, gid in sorted(gids.items()):
        folder = _open_dir(group, shared)
        if folder is None:
            continue
        try:
            report["groups"][group] = open_to_group(folder, f"shared/{group}", gid, kept)
        finally:
            os.close(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="where the shared filesystem is mounted")
    parser.add_argument("--identities", required=True, help="the hub's identities.json")
    args = parser.parse_args(argv)
    with open(args.identities, encoding="utf-8") as f:
        record = json.load(f)
    uids = {str(k): int(v) for k, v in (record.get("users") or {}).items()}
    gids = {str(k): int(v) for k, v in (record.get("groups") or {}).items()}
    report = migrate(args.root, uids, gids)
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
