"""The JupyterHub side: who a token belongs to, starting a user's server, its terminals."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import quote

import aiohttp

log = logging.getLogger("qhub_ssh")


class HubError(Exception):
    pass


class Hub:
    def __init__(self, api_url: str, proxy_url: str, api_token: str):
        self.api_url = api_url.rstrip("/")
        self.proxy_url = proxy_url.rstrip("/")
        self.api_token = api_token
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _auth(self, token: str | None = None) -> dict:
        return {"Authorization": f"token {token or self.api_token}"}

    async def identify(self, username: str, token: str) -> bool:
        """True if `token` is a valid hub token of the user `username` (never of a service or another user)."""
        if not token or not username:
            return False
        async with self.session.get(f"{self.api_url}/user", headers=self._auth(token)) as r:
            if r.status != 200:
                return False
            model = await r.json()
        return model.get("kind", "user") == "user" and model.get("name") == username

    async def ensure_server(self, username: str, timeout: float) -> str:
        """Start the user's default server if needed; return its URL path (e.g. /user/alice/)."""
        user_url = f"{self.api_url}/users/{quote(username, safe='')}"
        deadline = time.monotonic() + timeout
        started = False
        while True:
            async with self.session.get(user_url, headers=self._auth()) as r:
                if r.status != 200:
                    raise HubError(f"hub answered {r.status} for user {username}")
                model = await r.json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return server["url"]
            if not started and not (server and server.get("pending")):
                async with self.session.post(f"{user_url}/server", headers=self._auth()) as r:
                    if r.status not in (201, 202, 400):
                        raise HubError(f"could not start the server of {username}: {r.status} {await r.text()}")
                started = True
            if time.monotonic() > deadline:
                raise HubError(f"the server of {username} did not start within {timeout:.0f}s")
            await asyncio.sleep(1)

    async def new_terminal(self, server_path: str) -> str:
        async with self.session.post(
            f"{self.proxy_url}{server_path}api/terminals", headers=self._auth(), json={}
        ) as r:
            if r.status not in (200, 201):
                raise HubError(f"could not open a terminal: {r.status} {await r.text()}")
            return (await r.json())["name"]

    async def close_terminal(self, server_path: str, name: str) -> None:
        try:
            async with self.session.delete(
                f"{self.proxy_url}{server_path}api/terminals/{name}", headers=self._auth()
            ):
                pass
        except aiohttp.ClientError:  # the server may be gone already
            pass

    async def connect_terminal(self, server_path: str, name: str) -> aiohttp.ClientWebSocketResponse:
        url = f"{self.proxy_url}{server_path}terminals/websocket/{name}"
        return await self.session.ws_connect(url.replace("http", "ws", 1), headers=self._auth(), heartbeat=30)


def stdin_message(data: str) -> str:
    return json.dumps(["stdin", data])


def size_message(cols: int, rows: int) -> str:
    return json.dumps(["set_size", rows or 24, cols or 80])
