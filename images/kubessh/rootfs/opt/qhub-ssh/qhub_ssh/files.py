"""SFTP served from inside the user's own server, as the user.

The gateway speaks SFTP to the client (asyncssh's protocol handling) but touches no file itself: every file
operation is a call to a small agent (Python standard library only) that runs in a terminal of the user's own
JupyterLab server, through the same relay as commands. The agent works with the user's uid and groups and sees
exactly what the user's terminal sees (home, group folders), so no path check in the gateway can be raced, and
the gateway mounts no volume at all.

Agent protocol, both directions: 8-byte header (JSON length, payload length, big-endian uint32), JSON, payload.
Request {"op": name, "args": [...]} (+ data to write); reply {"ok": result} (+ data read) or {"errno", "error"}.
Paths travel as text with surrogate escapes, so any byte string survives the JSON.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import struct
from types import SimpleNamespace

import asyncssh

from .hub import Hub, Login
from .relay import Relay

AGENT = r"""
import errno, json, os, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
os.chdir(os.path.expanduser("~"))

def st(s):
    return [s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_nlink, s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns]

def setattrs(target, a, follow=True):
    kw = {} if isinstance(target, int) else {"follow_symlinks": follow}
    if a.get("size") is not None:
        os.truncate(target, a["size"])
    if a.get("uid") is not None or a.get("gid") is not None:
        os.chown(target, -1 if a.get("uid") is None else a["uid"], -1 if a.get("gid") is None else a["gid"], **kw)
    if a.get("mode") is not None:
        os.chmod(target, a["mode"] & 0o7777, **kw)
    if a.get("atime") is not None and a.get("mtime") is not None:
        os.utime(target, ns=(a["atime"], a["mtime"]), **kw)

def scandir(p):
    names = [[".", st(os.lstat(p))], ["..", st(os.lstat(os.path.join(p, "..")))]]
    with os.scandir(p) as entries:
        return names + [[e.name, st(e.stat(follow_symlinks=False))] for e in entries]

def rename(a, b):
    if os.path.lexists(b):
        raise FileExistsError(errno.EEXIST, "File exists")
    os.rename(a, b)

OPS = {
    "stat": lambda p: st(os.stat(p)), "lstat": lambda p: st(os.lstat(p)), "fstat": lambda fd: st(os.fstat(fd)),
    "open": os.open, "close": os.close, "setstat": setattrs,
    "lsetstat": lambda p, a: setattrs(p, a, False), "scandir": scandir, "remove": os.remove, "mkdir": os.mkdir,
    "rmdir": os.rmdir, "realpath": os.path.realpath, "rename": rename, "posix_rename": os.replace,
    "readlink": os.readlink, "symlink": os.symlink, "link": os.link, "fsync": os.fsync,
    "statvfs": lambda p: list(os.statvfs(p)), "fstatvfs": lambda fd: list(os.fstatvfs(fd)),
}

while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    jl, pl = struct.unpack(">II", head)
    req, data, payload = json.loads(inp.read(jl)), inp.read(pl), b""
    try:
        op, args = req["op"], req["args"]
        if op == "read":
            payload, result = os.pread(args[0], args[2], args[1]), None
        elif op == "write":
            result = os.pwrite(args[0], data, args[1])
        else:
            result = OPS[op](*args)
        reply = {"ok": result}
    except OSError as e:
        reply = {"errno": e.errno or errno.EIO, "error": e.strerror or str(e)}
    except (NotImplementedError, TypeError, ValueError) as e:
        reply = {"errno": errno.EINVAL, "error": str(e)}
    body = json.dumps(reply).encode()
    out.write(struct.pack(">II", len(body), len(payload)) + body + payload)
    out.flush()
"""

# Started in the user's shell by the relay; reads the agent's source as its first line of input.
AGENT_COMMAND = "exec python3 -c 'import base64,sys; exec(base64.b64decode(sys.stdin.buffer.readline()))'"


class FileAgent:
    """The agent in one terminal of the user's server; calls are made one at a time."""

    def __init__(self, hub: Hub, login: Login, server_path: str):
        self.relay = Relay(hub, login, server_path)
        self._frames = None
        self._buf = b""
        self._stderr = b""
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.relay.open("x", AGENT_COMMAND)
        await self.relay.send(base64.b64encode(AGENT.encode()) + b"\n")
        self._frames = self.relay.frames()

    async def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                tag, payload = await self._frames.__anext__()
            except StopAsyncIteration:
                tag, payload = "X", None
            if tag == "O":
                self._buf += payload
            elif tag == "E":
                self._stderr += payload
            else:
                detail = self._stderr.decode(errors="replace").strip()[-500:]
                raise ConnectionError(f"the file agent in your server ended{': ' + detail if detail else ''}")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def call(self, op: str, *args, data: bytes = b"") -> tuple[object, bytes]:
        body = json.dumps({"op": op, "args": list(args)}).encode()
        async with self._lock:
            await self.relay.send(struct.pack(">II", len(body), len(data)) + body + data)
            jl, pl = struct.unpack(">II", await self._read(8))
            reply = json.loads(await self._read(jl))
            payload = await self._read(pl)
        if "errno" in reply:
            raise OSError(reply["errno"], reply["error"])
        return reply["ok"], payload

    async def close(self) -> None:
        try:
            await self.relay.eof()
        finally:
            await self.relay.close()


class RemoteFile:
    """An open file of the agent (its descriptor number)."""

    def __init__(self, fd: int):
        self.fd = fd

    def seek(self, *_args):  # asyncssh's sparse-ranges extension seeks local files; there is none here
        raise OSError(errno.EOPNOTSUPP, "not supported")


def _attrs(st: list) -> asyncssh.SFTPAttrs:
    mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns = st
    return asyncssh.SFTPAttrs.from_local(SimpleNamespace(
        st_mode=mode, st_uid=uid, st_gid=gid, st_size=size, st_nlink=nlink, st_atime_ns=atime_ns,
        st_mtime_ns=mtime_ns, st_ctime_ns=ctime_ns))


def _changes(attrs: asyncssh.SFTPAttrs) -> dict:
    def ns(sec, nsec):
        return None if sec is None else int(sec) * 1_000_000_000 + int(nsec or 0)
    return {"size": attrs.size, "uid": attrs.uid, "gid": attrs.gid, "mode": attrs.permissions,
            "atime": ns(attrs.atime, attrs.atime_ns), "mtime": ns(attrs.mtime, attrs.mtime_ns)}


def _path(path: bytes) -> str:
    return os.fsdecode(path) or "."


class RemoteSFTP(asyncssh.SFTPServer):
    """SFTP whose every operation runs in the user's own server (started if needed, like a shell)."""

    def __init__(self, chan, hub: Hub, login: Login, server_start_timeout: float):
        super().__init__(chan)
        self._hub, self._login, self._timeout = hub, login, server_start_timeout
        self._agent: FileAgent | None = None
        self._starting = asyncio.Lock()

    async def _call(self, op: str, *args, data: bytes = b"") -> tuple[object, bytes]:
        async with self._starting:
            if self._agent is None:
                server_path = await self._hub.ensure_server(self._login.username, self._timeout)
                agent = FileAgent(self._hub, self._login, server_path)
                await agent.start()
                self._agent = agent
        return await self._agent.call(op, *args, data=data)

    async def _result(self, op: str, *args):
        return (await self._call(op, *args))[0]

    def format_user(self, uid):
        return "" if uid is None else str(uid)

    def format_group(self, gid):
        return "" if gid is None else str(gid)

    async def open(self, path, pflags, attrs):
        flags = os.O_RDWR if pflags & asyncssh.FXF_READ and pflags & asyncssh.FXF_WRITE else (
            os.O_WRONLY if pflags & asyncssh.FXF_WRITE else os.O_RDONLY)
        for bit, flag in ((asyncssh.FXF_APPEND, os.O_APPEND), (asyncssh.FXF_CREAT, os.O_CREAT),
                          (asyncssh.FXF_TRUNC, os.O_TRUNC), (asyncssh.FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= flag
        mode = 0o666 if attrs.permissions is None else attrs.permissions
        return RemoteFile(await self._result("open", _path(path), flags, mode))

    def open56(self, path, desired_access, flags, attrs):
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    async def close(self, file_obj):
        await self._call("close", file_obj.fd)

    async def read(self, file_obj, offset, size):
        return (await self._call("read", file_obj.fd, offset, size))[1]

    async def write(self, file_obj, offset, data):
        return (await self._call("write", file_obj.fd, offset, data=data))[0]

    async def stat(self, path):
        return _attrs(await self._result("stat", _path(path)))

    async def lstat(self, path):
        return _attrs(await self._result("lstat", _path(path)))

    async def fstat(self, file_obj):
        return _attrs(await self._result("fstat", file_obj.fd))

    async def setstat(self, path, attrs):
        await self._call("setstat", _path(path), _changes(attrs))

    async def lsetstat(self, path, attrs):
        await self._call("lsetstat", _path(path), _changes(attrs))

    async def fsetstat(self, file_obj, attrs):
        await self._call("setstat", file_obj.fd, _changes(attrs))

    async def scandir(self, path):
        for name, st in await self._result("scandir", _path(path)):
            yield asyncssh.SFTPName(os.fsencode(name), attrs=_attrs(st))

    async def remove(self, path):
        await self._call("remove", _path(path))

    async def mkdir(self, path, attrs):
        await self._call("mkdir", _path(path), 0o777 if attrs.permissions is None else attrs.permissions)

    async def rmdir(self, path):
        await self._call("rmdir", _path(path))

    async def realpath(self, path):
        return os.fsencode(await self._result("realpath", _path(path)))

    async def rename(self, oldpath, newpath):
        await self._call("rename", _path(oldpath), _path(newpath))

    async def posix_rename(self, oldpath, newpath):
        await self._call("posix_rename", _path(oldpath), _path(newpath))

    async def readlink(self, path):
        return os.fsencode(await self._result("readlink", _path(path)))

    async def symlink(self, oldpath, newpath):
        await self._call("symlink", os.fsdecode(oldpath), _path(newpath))

    async def link(self, oldpath, newpath):
        await self._call("link", _path(oldpath), _path(newpath))

    def lock(self, file_obj, offset, length, flags):
        raise asyncssh.SFTPOpUnsupported("byte-range locks are not supported")

    def unlock(self, file_obj, offset, length):
        raise asyncssh.SFTPOpUnsupported("byte-range locks are not supported")

    async def statvfs(self, path):
        return _vfs(await self._result("statvfs", _path(path)))

    async def fstatvfs(self, file_obj):
        return _vfs(await self._result("fstatvfs", file_obj.fd))

    async def fsync(self, file_obj):
        await self._call("fsync", file_obj.fd)

    async def exit(self):
        if self._agent is not None:
            await self._agent.close()


def _vfs(v: list) -> asyncssh.SFTPVFSAttrs:
    names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_flag",
             "f_namemax")
    return asyncssh.SFTPVFSAttrs.from_local(SimpleNamespace(**dict(zip(names, v))))
