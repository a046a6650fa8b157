"""Tornado app behind the hub's proxy at /services/jitsi/ (JupyterHub OAuth cookie or a hub API token in the
Authorization header; never a token in the URL).

GET  <prefix>token?room=<room>   -> {"token": <jwt>, "room": ..., "url": <room URL, no token>, "expires": ...}
GET  <prefix>room/<room>         -> a page that opens the room with a fresh token (Jitsi's IFrame API)
GET  <prefix>health              -> "ok" (no login)

Every token is for exactly one room, named by the request - there is no "*" token that opens every room - and
lives `lifetime` seconds (minutes, not hours: it is only needed to join). Rooms named `<group>.<topic>` are group
rooms: only members of <group> get a token for them; with group_rooms_only every room must be one.

Tokens stay out of URLs where QHub controls them: the JSON API returns the room URL without it, and the room page
hands the token to Jitsi's IFrame API in the page body (served with no-store and no-referrer) instead of
redirecting the browser to `<room>?jwt=...`, which would put it in the address bar, the history and the proxy's
logs. Jitsi web itself reads a token only from its own URL's query, so the embedded frame's address carries it.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

# Jitsi lower-cases room names (they become XMPP room addresses), so tokens are minted for the lower-case name.
PLAIN_ROOM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
GROUP_ROOM = re.compile(r"^(?P<group>[a-z0-9][a-z0-9_-]{0,63})\.(?P<topic>[a-z0-9][a-z0-9_-]{0,63})$")
MIN_LIFETIME, MAX_LIFETIME = 60, 900


@dataclass(frozen=True)
class Settings:
    app_id: str
    app_secret: str
    public_url: str  # where browsers reach Jitsi web, e.g. https://meet.example.org
    xmpp_domain: str = "meet.jitsi"
    lifetime: int = 300
    allowed_groups: tuple[str, ...] = ()  # empty: every hub user
    moderator_groups: tuple[str, ...] = ()  # hub admins moderate regardless
    group_rooms_only: bool = False

    def __post_init__(self) -> None:
        if not MIN_LIFETIME <= self.lifetime <= MAX_LIFETIME:
            raise ValueError(f"JITSI_TOKEN_LIFETIME must be {MIN_LIFETIME}-{MAX_LIFETIME} seconds, not "
                             f"{self.lifetime}: a token is only needed to join a room")
        if len(self.app_secret) < 32:
            raise ValueError("JITSI_APP_SECRET must have at least 32 characters")

    @classmethod
    def from_env(cls) -> Settings:
        def split(v: str) -> tuple[str, ...]:
            return tuple(g for g in (s.strip() for s in v.split(",")) if g)

        return cls(
            app_id=os.environ["JITSI_APP_ID"],
            app_secret=os.environ["JITSI_APP_SECRET"],
            public_url=os.environ["JITSI_PUBLIC_URL"].rstrip("/"),
            xmpp_domain=os.environ.get("JITSI_XMPP_DOMAIN", "meet.jitsi"),
            lifetime=int(os.environ.get("JITSI_TOKEN_LIFETIME", "300")),
            allowed_groups=split(os.environ.get("JITSI_ALLOWED_GROUPS", "")),
            moderator_groups=split(os.environ.get("JITSI_MODERATOR_GROUPS", "")),
            group_rooms_only=os.environ.get("JITSI_GROUP_ROOMS_ONLY", "false").lower() in ("1", "true", "yes"),
        )


class RoomRefused(Exception):
    """A room this user gets no token for; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_moderator(settings: Settings, user: dict[str, Any]) -> bool:
    """Hub admins (the `admin` field of the hub's user model) and members of the moderator groups."""
    return user.get("admin") is True or bool(set(user.get("groups") or []) & set(settings.moderator_groups))


def may_call(settings: Settings, user: dict[str, Any]) -> bool:
    """Whether the user gets tokens at all: a member of an allowed group, or anyone when none are set; admins."""
    groups = set(user.get("groups") or [])
    return not settings.allowed_groups or bool(groups & set(settings.allowed_groups)) or user.get("admin") is True


def check_room(settings: Settings, user: dict[str, Any], requested: str) -> str:
    """The room name a token may be minted for (lower case), or RoomRefused saying why not."""
    room = requested.strip().lower()
    group = GROUP_ROOM.match(room)
    if group:
        if group["group"] not in set(user.get("groups") or []):
            raise RoomRefused(403, f"{room} is a room of the group {group['group']}, which you are not in")
        return room
    if not PLAIN_ROOM.match(room):
        raise RoomRefused(400, "a room name is 1-64 letters, digits, '_' and '-', or <group>.<topic> for a group's "
                               "room")
    if settings.group_rooms_only:
        raise RoomRefused(403, "video calls here are group rooms only: name the room <group>.<topic>")
    return room


def mint(settings: Settings, user: dict[str, Any], room: str, now: float | None = None) -> dict[str, Any]:
    """Claims and signed token for one user and one already checked room."""
    if not (PLAIN_ROOM.match(room) or GROUP_ROOM.match(room)):
        raise ValueError(f"refusing to mint a token for the room {room!r}")  # never "*" or a pattern
    issued = int(now if now is not None else time.time())
    groups = sorted(user.get("groups") or [])
    claims = {
        "iss": settings.app_id,
        "aud": settings.app_id,
        "sub": settings.xmpp_domain,
        "room": room,
        "iat": issued,
        "nbf": issued - 10,
        "exp": issued + settings.lifetime,
        "context": {
            "user": {"id": user["name"], "name": user["name"], "moderator": is_moderator(settings, user)},
            "group": groups,
        },
    }
    return {"claims": claims, "token": jwt.encode(claims, settings.app_secret, algorithm="HS256")}


def room_page(settings: Settings, room: str, token: str, nonce: str) -> str:
    """The page that opens `room` in Jitsi's IFrame API with `token` (JSON in a script, never in our URL)."""
    public = urlsplit(settings.public_url)
    options = {"roomName": room, "jwt": token, "width": "100%", "height": "100%"}

    def js(value: Any) -> str:  # JSON that cannot close the <script> element it sits in
        return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    api = html.escape(f"{settings.public_url}/external_api.js")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(room)}</title>
<style nonce="{nonce}">html,body,#meet{{margin:0;height:100%;width:100%}}</style>
<script src="{api}"></script></head>
<body><div id="meet"></div>
<script nonce="{nonce}">
var options = {js(options)};
options.parentNode = document.getElementById("meet");
options.noSSL = {js(public.scheme == "http")};
new JitsiMeetExternalAPI({js(public.netloc)}, options);
</script></body></html>
"""


class _Base(HubOAuthenticated, web.RequestHandler):
    @property
    def qhub(self) -> Settings:
        return self.application.settings["qhub_jitsi"]

    def room_for(self, requested: str) -> tuple[dict[str, Any], str]:
        user = self.get_current_user()
        if not may_call(self.qhub, user):
            raise web.HTTPError(403, "your groups do not include video calls")
        try:
            return user, check_room(self.qhub, user, requested)
        except RoomRefused as refused:
            raise web.HTTPError(refused.status, str(refused)) from None

    def private(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors say why (our messages name the rule, never a secret), as JSON."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"status": status_code, "message": message}))


class TokenHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        requested = self.get_argument("room", "")
        if not requested:
            raise web.HTTPError(400, "name the room: token?room=<room>")
        user, room = self.room_for(requested)
        minted = mint(self.qhub, user, room)
        self.private()
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"token": minted["token"], "room": room, "expires": minted["claims"]["exp"],
                               "url": f"{self.qhub.public_url}/{quote(room)}"}))


class RoomHandler(_Base):
    @web.authenticated
    def get(self, requested: str) -> None:
        user, room = self.room_for(requested)
        token = mint(self.qhub, user, room)["token"]
        nonce = secrets.token_urlsafe(16)
        self.private()
        self.set_header("Content-Security-Policy", (
            f"default-src 'none'; script-src {self.qhub.public_url} 'nonce-{nonce}'; "
            f"style-src 'nonce-{nonce}'; frame-src {self.qhub.public_url}; base-uri 'none'; form-action 'none'"))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(room_page(self.qhub, room, token, nonce))


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
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
