"""The JupyterHub side: who a token belongs to and what it may do, starting a user's server, its terminals.

Two credentials, never mixed:
- the user's own token (their SSH password) is the only one sent to the user's server (terminals API and
  websocket, through the hub's proxy). A user who logs the requests her server receives sees her own token.
- the gateway's service token goes to the hub API only (`api_url`, the hub's own Service, never the proxy), to
  read server status and start servers: its role holds `read:servers` and `start:servers`, nothing that opens
  anyone's server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from .guard import shown

log = logging.getLogger("qhub_ssh")


class HubError(Exception):
    pass


@dataclass(frozen=True)
class Login:
    """A verified login: the user's name and the token they logged in with (which opens their server)."""

    username: str
    token: str

    def __repr__(self) -> str:  # never print the token
        return f"Login({self.username!r})"


def grants_server_access(scopes: list[str], username: str, groups: list[str]) -> bool:
    """True if a token with these (expanded) scopes may use `username`'s default server: `access:servers`
    unfiltered, or filtered to that user, to their default server, or to one of their groups."""
    wanted = {"access:servers", f"access:servers!user={username}", f"access:servers!server={username}/"}
    wanted |= {f"access:servers!group={g}" for g in groups}
    return any(s in wanted for s in scopes)


class Hub:
    def __init__(self, api_url: str, proxy_url: str, service_token: str):
        self.api_url = api_url.rstrip("/")
        self.proxy_url = proxy_url.rstrip("/")
        self._service_token = service_token
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _as(token: str) -> dict:
        return {"Authorization": f"token {token}"}

    def _hub_api(self, path: str) -> tuple[str, dict]:
        """URL and headers of a hub API call with the gateway's own token (hub API only)."""
        return f"{self.api_url}{path}", self._as(self._service_token)

    def _user_server(self, login: Login, server_path: str, path: str) -> tuple[str, dict]:
        """URL and headers of a request to the user's own server: always with the user's own token."""
        return f"{self.proxy_url}{server_path}{path}", self._as(login.token)

    async def identify(self, username: str, token: str) -> Login | None:
        """A Login if `token` is a valid hub token of the user `username` (never of a service or another user)
        whose scopes grant access to that user's server; None otherwise."""
        if not token or not username:
            return None
        async with self.session.get(f"{self.api_url}/user", headers=self._as(token)) as r:
            if r.status != 200:
                return None
            model = await r.json()
        if model.get("kind", "user") != "user" or model.get("name") != username:
            return None
        if not grants_server_access(list(model.get("scopes") or []), username, list(model.get("groups") or [])):
            log.info("token of %s lacks access:servers for their server", shown(username))
            return None
        return Login(username, token)

    async def ensure_server(self, username: str, timeout: float) -> str:
        """Start the user's default server if needed; return its URL path (e.g. /user/alice/)."""
        user_url, headers = self._hub_api(f"/users/{quote(username, safe='')}")
        deadline = time.monotonic() + timeout
        started = False
        while True:
            async with self.session.get(user_url, headers=headers) as r:
                if r.status != 200:
                    raise HubError(f"hub answered {r.status} for user {username}")
                model = await r.json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return server["url"]
            if not started and not (server and server.get("pending")):
                async with self.session.post(f"{user_url}/server", headers=headers) as r:
                    if r.status not in (201, 202, 400):
                        raise HubError(f"could not start the server of {username}: {r.status} {await r.text()}")
                started = True
            if time.monotonic() > deadline:
                raise HubError(f"the server of {username} did not start within {timeout:.0f}s")
            await asyncio.sleep(1)

    async def new_terminal(self, login: Login, server_path: str) -> str:
        url, headers = self._user_server(login, server_path, "api/terminals")
        async with self.session.post(url, headers=headers, json={}) as r:
            if r.status not in (200, 201):
                raise HubError(f"could not open a terminal: {r.status} {await r.text()}")
            return (await r.json())["name"]

    async def close_terminal(self, login: Login, server_path: str, name: str) -> None:
        url, headers = self._user_server(login, server_path, f"api/terminals/{name}")
        try:
            async with self.session.delete(url, headers=headers):
                pass
        except aiohttp.ClientError:  # the server may be gone already
            pass

    async def connect_terminal(self, login: Login, server_path: str, name: str) -> aiohttp.ClientWebSocketResponse:
        url, headers = self._user_server(login, server_path, f"terminals/websocket/{name}")
        return await self.session.ws_connect(url.replace("http", "ws", 1), headers=headers, heartbeat=30)


def stdin_message(data: str) -> str:
    return json.dumps(["stdin", data])


def size_message(cols: int, rows: int) -> str:
    return json.dumps(["set_size", rows or 24, cols or 80])
