"""The SSH (shell, exec, SFTP) and SFTP-only listeners."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from pathlib import Path

import aiohttp
import asyncssh

from .config import Settings
from .hub import Hub, HubError, size_message, stdin_message

log = logging.getLogger("qhub_ssh")

# Markers framing the output of a one-shot command in the terminal: ASCII record separators, which a shell prints
# only when it runs the printf (the echoed command line shows them as the two characters backslash-0-3-6).
_START = "\x1eQHUB-START\x1e"
_EXIT = re.compile("\x1eQHUB-EXIT:(\\d+)\x1e")


class ConfinedSFTP(asyncssh.SFTPServer):
    """SFTP confined to one home directory: no path, symlink or `..` leads outside it."""

    def __init__(self, chan, root: str):
        self._root = os.path.realpath(root)
        super().__init__(chan, chroot=self._root.encode())

    def map_path(self, path: bytes) -> bytes:
        mapped = super().map_path(path)
        real = os.path.realpath(os.fsdecode(mapped))
        if real != self._root and not real.startswith(self._root + os.sep):
            raise asyncssh.SFTPPermissionDenied("outside your home directory")
        return mapped


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.hub = Hub(settings.hub_api_url, settings.proxy_url, settings.api_token)
        self.acceptors: list[asyncssh.SSHAcceptor] = []

    # -- authentication ----------------------------------------------------------------------------------------
    def server_factory(self, shell: bool):
        gateway = self

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn):
                self.conn = conn

            def begin_auth(self, username):
                return True

            def password_auth_supported(self):
                return True

            def public_key_auth_supported(self):
                return False

            def kbdint_auth_supported(self):
                return False

            async def validate_password(self, username, password):
                try:
                    ok = await gateway.hub.identify(username, password)
                except aiohttp.ClientError as e:
                    log.warning("hub unreachable while authenticating %s: %s", username, e)
                    return False
                log.info("login %s for %s from %s", "accepted" if ok else "refused", username,
                         self.conn.get_extra_info("peername"))
                return ok

            def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "port forwarding is off")

        return _Server

    # -- homes -------------------------------------------------------------------------------------------------
    def home_of(self, username: str) -> str:
        if not username or "/" in username or username in (".", ".."):
            raise PermissionError(f"bad user name {username!r}")
        home = Path(self.settings.home_root) / username
        if not home.exists():
            home.mkdir(mode=0o755)
            try:
                os.chown(home, self.settings.home_uid, self.settings.home_gid)
            except PermissionError:  # not root: the directory already belongs to the gateway's own uid
                pass
        return str(home)

    def sftp_factory(self, chan):
        return ConfinedSFTP(chan, self.home_of(chan.get_extra_info("username")))

    # -- terminal sessions -------------------------------------------------------------------------------------
    async def handle_process(self, process: asyncssh.SSHServerProcess) -> None:
        username = process.get_extra_info("username")
        command = process.command
        try:
            server_path = await self.hub.ensure_server(username, self.settings.server_start_timeout)
            term = await self.hub.new_terminal(server_path)
        except (HubError, aiohttp.ClientError) as e:
            process.stderr.write(f"qhub-ssh: {e}\r\n")
            process.exit(1)
            return
        try:
            ws = await self.hub.connect_terminal(server_path, term)
            async with ws:
                if command is None:
                    status = await self._interactive(process, ws)
                else:
                    status = await self._exec(process, ws, command)
        except (HubError, aiohttp.ClientError) as e:
            process.stderr.write(f"qhub-ssh: {e}\r\n")
            status = 1
        finally:
            await self.hub.close_terminal(server_path, term)
        process.exit(status)

    async def _pump_stdin(self, process, ws, on_eof: str | None):
        try:
            while True:
                data = await process.stdin.read(4096)
                if not data:
                    break
                await ws.send_str(stdin_message(data))
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            await ws.send_str(stdin_message("\x03"))
        except asyncssh.TerminalSizeChanged as e:
            await ws.send_str(size_message(e.width, e.height))
            return await self._pump_stdin(process, ws, on_eof)
        except (ConnectionError, asyncssh.Error):
            return
        if on_eof is not None and not ws.closed:
            await ws.send_str(stdin_message(on_eof))

    async def _interactive(self, process, ws) -> int:
        cols, rows, *_ = process.get_terminal_size()
        await ws.send_str(size_message(cols, rows))
        pump = asyncio.create_task(self._pump_stdin(process, ws, on_eof="\x04"))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind, *args = json.loads(msg.data)
                if kind == "stdout":
                    process.stdout.write(args[0])
                elif kind == "disconnect":
                    break
        finally:
            pump.cancel()
        return 0

    async def _exec(self, process, ws, command: str) -> int:
        await ws.send_str(size_message(500, 50))
        # One line, so no prompt appears between the markers; the command travels base64-encoded (any quotes,
        # newlines) and runs through eval in the user's shell.
        encoded = base64.b64encode(command.encode()).decode()
        line = (
            " stty -echo -onlcr; printf '\\036QHUB-START\\036\\n'; "
            f"eval \"$(printf %s {encoded} | base64 -d)\"; "
            "printf '\\036QHUB-EXIT:%d\\036\\n' $?; exit\n"
        )
        await ws.send_str(stdin_message(line))
        pump = asyncio.create_task(self._pump_stdin(process, ws, on_eof="\x04"))
        buffer, started, status = "", False, 255
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind, *args = json.loads(msg.data)
                if kind == "disconnect":
                    break
                if kind != "stdout":
                    continue
                buffer += args[0]
                if not started:
                    at = buffer.find(_START)
                    if at < 0:
                        continue
                    started, buffer = True, buffer[at + len(_START):].lstrip("\r\n")
                end = _EXIT.search(buffer)
                if end:
                    process.stdout.write(buffer[: end.start()])
                    status = int(end.group(1))
                    break
                # keep a tail that could be the start of the exit marker
                cut = buffer.rfind("\x1e")
                keep = buffer[cut:] if cut >= 0 else ""
                process.stdout.write(buffer[: len(buffer) - len(keep)])
                buffer = keep
        finally:
            pump.cancel()
        return status

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        key = asyncssh.read_private_key(self.settings.host_key_path)
        common = dict(server_host_keys=[key], login_timeout=self.settings.login_timeout,
                      allow_scp=False, agent_forwarding=False, x11_forwarding=False)
        self.acceptors.append(await asyncssh.create_server(
            self.server_factory(shell=True), self.settings.bind, self.settings.ssh_port,
            process_factory=self.handle_process, sftp_factory=self.sftp_factory, **common))
        self.acceptors.append(await asyncssh.create_server(
            self.server_factory(shell=False), self.settings.bind, self.settings.sftp_port,
            sftp_factory=self.sftp_factory, **common))
        log.info("qhub-ssh listening: ssh %s, sftp %s", self.settings.ssh_port, self.settings.sftp_port)

    async def stop(self) -> None:
        for acceptor in self.acceptors:
            acceptor.close()
            await acceptor.wait_closed()
        await self.hub.close()
