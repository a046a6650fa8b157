"""Byte streams through a JupyterLab terminal.

A terminal carries text only (the server decodes the pty's output as UTF-8) and its pty rewrites line endings.
For commands (`ssh host cmd`, what VS Code, scp-over-shell and scripts use) and TCP forwarding (VS Code's
connection to its server), the gateway puts the pty in raw mode and runs a small Python relay in it that frames
the bytes as base64 lines:

  relay -> gateway   O<b64>  stdout / socket data    E<b64>  stderr    X<status>  command exited    C  socket closed
  gateway -> relay   I<b64>  stdin / socket data     D  end of input   K  kill

The relay runs in the user's own server (python3 is in every JupyterLab image), as the user, so a forward to
localhost:<port> reaches only that user's server.
"""

from __future__ import annotations

import base64
import json

import aiohttp

from .hub import Hub, Login, stdin_message

READY = "QHUB-RELAY-READY"

PROGRAM = r"""
import base64, os, select, signal, socket, subprocess, sys
def send(tag, data=b""): os.write(1, tag + base64.b64encode(data) + b"\n")
mode, arg = sys.argv[1], base64.b64decode(sys.argv[2]).decode()
if mode == "x":
    shell = os.environ.get("SHELL") or "/bin/sh"
    p = subprocess.Popen([shell, "-c", arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outs = {p.stdout.fileno(): b"O", p.stderr.fileno(): b"E"}
    sink = p.stdin.fileno()
else:
    s = socket.create_connection(("127.0.0.1", int(arg)))
    outs = {s.fileno(): b"O"}
    sink = s.fileno()
os.write(1, b"QHUB-RELAY-READY\n")
buf, inp = b"", True
while outs:
    ready, _, _ = select.select(([0] if inp else []) + list(outs), [], [])
    for fd in ready:
        if fd == 0:
            data = os.read(0, 65536)
            if not data:
                inp = False
                continue
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip(b"\r")
                if line[:1] == b"I":
                    payload = base64.b64decode(line[1:])
                    try:
                        while payload:
                            payload = payload[os.write(sink, payload):]
                    except OSError:
                        pass
                elif line[:1] == b"D":
                    if mode == "x":
                        p.stdin.close()
                    else:
                        s.shutdown(socket.SHUT_WR)
                elif line[:1] == b"K" and mode == "x":
                    p.send_signal(signal.SIGTERM)
        else:
            data = os.read(fd, 65536)
            if data:
                send(outs[fd], data)
            else:
                del outs[fd]
if mode == "x":
    os.write(1, b"X%d\n" % p.wait())
else:
    os.write(1, b"C\n")
"""


class Relay:
    """One relay in a fresh terminal of the user's server: `mode` x (command) or t (TCP port on localhost)."""

    def __init__(self, hub: Hub, login: Login, server_path: str):
        self.hub = hub
        self.login = login
        self.server_path = server_path
        self.term: str | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending = ""

    async def open(self, mode: str, arg: str) -> None:
        self.term = await self.hub.new_terminal(self.login, self.server_path)
        self.ws = await self.hub.connect_terminal(self.login, self.server_path, self.term)
        program = base64.b64encode(PROGRAM.encode()).decode()
        arg64 = base64.b64encode(arg.encode()).decode()
        await self.ws.send_str(stdin_message(
            f' stty raw -echo; exec python3 -c "$(printf %s {program} | base64 -d)" {mode} {arg64}\n'))
        async for text in self._texts():
            self._pending += text
            at = self._pending.find(READY + "\n")
            if at >= 0:
                self._pending = self._pending[at + len(READY) + 1:]
                return
        raise ConnectionError("the terminal closed before the relay started (is python3 in the user image?)")

    async def _texts(self):
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            kind, *args = json.loads(msg.data)
            if kind == "stdout":
                yield args[0]
            elif kind == "disconnect":
                return

    async def frames(self):
        """(tag, payload) until the relay ends: ("O"|"E", bytes), ("X", status), ("C", None)."""
        texts = self._texts()
        while True:
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                line = line.strip("\r")
                if not line:
                    continue
                tag = line[0]
                if tag in "OE":
                    yield tag, base64.b64decode(line[1:])
                elif tag == "X":
                    yield "X", int(line[1:])
                    return
                elif tag == "C":
                    yield "C", None
                    return
            try:
                self._pending += await texts.__anext__()
            except StopAsyncIteration:
                return

    async def send(self, data: bytes) -> None:
        for i in range(0, len(data), 32768):
            await self.ws.send_str(stdin_message("I" + base64.b64encode(data[i:i + 32768]).decode() + "\n"))

    async def eof(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_str(stdin_message("D\n"))

    async def kill(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_str(stdin_message("K\n"))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.term is not None:
            await self.hub.close_terminal(self.login, self.server_path, self.term)
