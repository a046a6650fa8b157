"""The SSH (shell, exec, SFTP) and SFTP-only listeners."""

from __future__ import annotations

import asyncio
import codecs
import json
import logging

import aiohttp
import asyncssh

from . import hostkey
from .config import Settings
from .files import RemoteSFTP
from .guard import FailedLogins, Limits, shown
from .hub import Hub, HubError, Login, size_message, stdin_message
from .relay import Relay

log = logging.getLogger("qhub_ssh")


class _Forward(asyncssh.SSHTCPSession):
    """One forwarded TCP connection, relayed into the user's server."""

    def __init__(self, gateway: "Gateway", login: Login, port: int):
        self.gateway, self.login, self.port = gateway, login, port
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.chan = None
        self.task = None

    def connection_made(self, chan):
        self.chan = chan
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        try:
            await self.gateway.forward(self.login, self.port, self)
        except Exception as e:  # noqa: BLE001 - any failure closes this one channel
            log.info("forward to localhost:%s for %s ended: %s", self.port, shown(self.login.username), shown(e))
            self.chan.close()

    # what Gateway.forward uses
    def write(self, data: bytes):
        self.chan.write(data)

    def write_eof(self):
        self.chan.write_eof()

    def close(self):
        self.chan.close()

    def data_received(self, data, datatype):
        self.queue.put_nowait(data)

    def eof_received(self):
        self.queue.put_nowait(None)
        return True  # keep our side open until the relay's socket closes

    async def pump(self, relay: Relay):
        """Client bytes to the relay, in order, then end of input."""
        while (data := await self.queue.get()) is not None:
            await relay.send(data)
        await relay.eof()

    def connection_lost(self, exc):
        if self.task and not self.task.done():
            self.task.cancel()


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.hub = Hub(settings.hub_api_url, settings.proxy_url, settings.api_token)
        self.failures = FailedLogins(Limits(window=settings.failed_login_window,
                                            per_source=settings.max_failed_logins_per_source,
                                            per_user=settings.max_failed_logins_per_user))
        self.acceptors: list[asyncssh.SSHAcceptor] = []

    # -- authentication ----------------------------------------------------------------------------------------
    async def authenticate(self, conn, username: str, password: str) -> bool:
        """Check a login against the hub, within the failed-login limits; remember the Login on the connection
        (its token is what reaches the user's server)."""
        source = str((conn.get_extra_info("peername") or ("?",))[0])
        if len(username) > 256:
            log.info("login refused for %s from %s: name too long", shown(username), shown(source))
            return False
        if not self.failures.begin(source, username):
            log.warning("login refused for %s from %s: too many failed logins", shown(username), shown(source))
            return False
        ok: bool | None = None
        try:
            login = await self.hub.identify(username, password)
            ok = login is not None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("hub unreachable while authenticating %s: %s", shown(username), shown(e))
            return False
        finally:
            self.failures.end(source, username, ok)
        log.info("login %s for %s from %s", "accepted" if ok else "refused", shown(username), shown(source))
        if login:
            conn.set_extra_info(qhub_login=login)
        return ok

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
                return await gateway.authenticate(self.conn, username, password)

            def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
                # Only to the user's own server (what VS Code Remote-SSH needs); never to other hosts.
                if not shell or dest_host not in ("localhost", "127.0.0.1", "::1"):
                    raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                                    "only forwards to localhost are allowed")
                return _Forward(gateway, self.conn.get_extra_info("qhub_login"), dest_port)

        return _Server

    # -- files -----------------------------------------------------------------------------------------------
    def sftp_factory(self, chan):
        """SFTP run by an agent inside the user's own server, as the user (files.py)."""
        return RemoteSFTP(chan, self.hub, chan.get_extra_info("qhub_login"), self.settings.server_start_timeout)

    # -- terminal sessions -------------------------------------------------------------------------------------
    async def handle_process(self, process: asyncssh.SSHServerProcess) -> None:
        login: Login = process.get_extra_info("qhub_login")
        try:
            server_path = await self.hub.ensure_server(login.username, self.settings.server_start_timeout)
            if process.command is None:
                status = await self._interactive(process, login, server_path)
            else:
                status = await self._exec(process, login, server_path, process.command)
        except (HubError, aiohttp.ClientError, ConnectionError) as e:
            log.info("session of %s failed: %s", shown(login.username), shown(e))
            process.stderr.write(f"qhub-ssh: {e}\r\n".encode())
            status = 1
        process.exit(status)

    async def _interactive(self, process, login: Login, server_path: str) -> int:
        """A shell: the SSH session bridged to a JupyterLab terminal (a real pty in the user's server)."""
        term = await self.hub.new_terminal(login, server_path)
        try:
            ws = await self.hub.connect_terminal(login, server_path, term)
            async with ws:
                cols, rows, *_ = process.get_terminal_size()
                await ws.send_str(size_message(cols, rows))

                async def pump():
                    decoder = codecs.getincrementaldecoder("utf-8")("replace")
                    while True:
                        try:
                            data = await process.stdin.read(4096)
                        except asyncssh.TerminalSizeChanged as e:
                            await ws.send_str(size_message(e.width, e.height))
                            continue
                        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                            data = b"\x03"
                        except (ConnectionError, asyncssh.Error):
                            return
                        if not data:
                            await ws.send_str(stdin_message("\x04"))
                            return
                        await ws.send_str(stdin_message(decoder.decode(data)))

                task = asyncio.create_task(pump())
                try:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        kind, *args = json.loads(msg.data)
                        if kind == "stdout":
                            process.stdout.write(args[0].encode())
                        elif kind == "disconnect":
                            break
                finally:
                    task.cancel()
        finally:
            await self.hub.close_terminal(login, server_path, term)
        return 0

    async def _exec(self, process, login: Login, server_path: str, command: str) -> int:
        """`ssh host command`: run through a relay, with separate stdout/stderr, stdin and the exit status."""
        relay = Relay(self.hub, login, server_path)
        try:
            await relay.open("x", command)

            async def pump():
                try:
                    while data := await process.stdin.read(32768):
                        await relay.send(data)
                    await relay.eof()
                except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                    await relay.kill()
                except (ConnectionError, asyncssh.Error, aiohttp.ClientError):
                    pass

            task = asyncio.create_task(pump())
            status = 255
            try:
                async for tag, payload in relay.frames():
                    if tag == "O":
                        process.stdout.write(payload)
                    elif tag == "E":
                        process.stderr.write(payload)
                    elif tag == "X":
                        status = payload
            finally:
                task.cancel()
            return status
        finally:
            await relay.close()

    async def forward(self, login: Login, port: int, chan) -> None:
        """direct-tcpip to localhost:<port>: a socket opened by a relay inside the user's own server."""
        server_path = await self.hub.ensure_server(login.username, self.settings.server_start_timeout)
        relay = Relay(self.hub, login, server_path)
        try:
            await relay.open("t", str(port))
            pump = asyncio.create_task(chan.pump(relay))
            try:
                async for tag, payload in relay.frames():
                    if tag == "O":
                        chan.write(payload)
                chan.write_eof()
            finally:
                pump.cancel()
        finally:
            await relay.close()
            chan.close()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def host_key(self) -> asyncssh.SSHKey:
        s = self.settings
        if s.host_key_secret:
            return await hostkey.from_secret(s.kube_api_url, s.kube_sa_dir, s.host_key_secret)
        return hostkey.from_file(s.host_key_path)

    async def start(self) -> None:
        key = await self.host_key()
        common = dict(server_host_keys=[key], login_timeout=self.settings.login_timeout,
                      allow_scp=False, agent_forwarding=False, x11_forwarding=False)
        self.acceptors.append(await asyncssh.create_server(
            self.server_factory(shell=True), self.settings.bind, self.settings.ssh_port,
            process_factory=self.handle_process, sftp_factory=self.sftp_factory, encoding=None, **common))
        self.acceptors.append(await asyncssh.create_server(
            self.server_factory(shell=False), self.settings.bind, self.settings.sftp_port,
            sftp_factory=self.sftp_factory, encoding=None, **common))
        log.info("qhub-ssh listening: ssh %s, sftp %s, host key %s", self.settings.ssh_port,
                 self.settings.sftp_port, key.get_fingerprint())

    async def stop(self) -> None:
        for acceptor in self.acceptors:
            acceptor.close()
            await acceptor.wait_closed()
        await self.hub.close()
