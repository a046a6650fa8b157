"""Tornado app behind the hub's proxy at /services/jitsi/ (JupyterHub OAuth or a hub API token).

GET  <prefix>token?room=<room>   -> {"token": <jwt>, "room": ..., "url": <jitsi url with jwt>, "expires": ...}
GET  <prefix>room/<room>         -> redirect into the room with a fresh token
GET  <prefix>health              -> "ok" (no login)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import jwt
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

ROOM = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class Settings:
    app_id: str
    app_secret: str
    public_url: str  # where browsers reach Jitsi web, e.g. https://meet.example.org
    xmpp_domain: str = "meet.jitsi"
    lifetime: int = 3600
    allowed_groups: tuple[str, ...] = ()  # empty: every hub user
    moderator_groups: tuple[str, ...] = ("admin",)

    @classmethod
    def from_env(cls) -> "Settings":
        split = lambda v: tuple(g for g in (s.strip() for s in v.split(",")) if g)  # noqa: E731
        return cls(
            app_id=os.environ["JITSI_APP_ID"],
            app_secret=os.environ["JITSI_APP_SECRET"],
            public_url=os.environ["JITSI_PUBLIC_URL"].rstrip("/"),
            xmpp_domain=os.environ.get("JITSI_XMPP_DOMAIN", "meet.jitsi"),
            lifetime=int(os.environ.get("JITSI_TOKEN_LIFETIME", "3600")),
            allowed_groups=split(os.environ.get("JITSI_ALLOWED_GROUPS", "")),
            moderator_groups=split(os.environ.get("JITSI_MODERATOR_GROUPS", "admin")),
        )


def mint(settings: Settings, user: dict, room: str, now: float | None = None) -> dict:
    """Claims and signed token for one user and one room (or "*")."""
    now = int(now if now is not None else time.time())
    groups = set(user.get("groups") or [])
    claims = {
        "iss": settings.app_id,
        "aud": settings.app_id,
        "sub": settings.xmpp_domain,
        "room": room,
        "iat": now,
        "nbf": now - 10,
        "exp": now + settings.lifetime,
        "context": {
            "user": {
                "id": user["name"],
                "name": user["name"],
                "moderator": bool(user.get("admin")) or bool(groups & set(settings.moderator_groups)),
            },
            "group": sorted(groups),
        },
    }
    return {"claims": claims, "token": jwt.encode(claims, settings.app_secret, algorithm="HS256")}


class _Base(HubOAuthenticated, web.RequestHandler):
    @property
    def settings_(self) -> Settings:
        return self.application.settings["qhub_jitsi"]

    def allowed(self, user: dict) -> bool:
        groups = self.settings_.allowed_groups
        return not groups or bool(set(user.get("groups") or []) & set(groups)) or bool(user.get("admin"))

    def room_arg(self, room: str) -> str:
        if room != "*" and not ROOM.match(room):
            raise web.HTTPError(400, "room names are letters, digits, '.', '_' and '-'")
        return room


class TokenHandler(_Base):
    @web.authenticated
    def get(self):
        user = self.get_current_user()
        if not self.allowed(user):
            raise web.HTTPError(403, "your groups do not include video calls")
        room = self.room_arg(self.get_argument("room", "*"))
        minted = mint(self.settings_, user, room)
        url = f"{self.settings_.public_url}/{quote(room)}?jwt={minted['token']}" if room != "*" else None
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps({"token": minted["token"], "room": room, "url": url,
                               "expires": minted["claims"]["exp"]}))


class RoomHandler(_Base):
    @web.authenticated
    def get(self, room: str):
        user = self.get_current_user()
        if not self.allowed(user):
            raise web.HTTPError(403, "your groups do not include video calls")
        room = self.room_arg(room)
        self.set_header("Cache-Control", "no-store")
        self.redirect(f"{self.settings_.public_url}/{quote(room)}?jwt={mint(self.settings_, user, room)['token']}")


class HealthHandler(web.RequestHandler):
    def get(self):
        self.write("ok")


def make_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings.from_env()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/jitsi/")
    return web.Application(
        [
            (url_path_join(prefix, "token"), TokenHandler),
            (url_path_join(prefix, r"room/([^/]+)"), RoomHandler),
            (url_path_join(prefix, "health"), HealthHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.environ.get("JITSI_COOKIE_SECRET", "").encode() or os.urandom(32),
        qhub_jitsi=settings,
    )


def main() -> None:
    port = int(os.environ.get("JITSI_TOKEN_PORT", "8000"))
    app = make_app()
    app.listen(port, os.environ.get("JITSI_TOKEN_BIND", "0.0.0.0"))
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
