"""The Jitsi token service's rules (images/jitsi-token): one named room per token, never "*"; group rooms for
members only; lifetimes of minutes; moderators from the hub's `admin` field (or listed groups), not from a group
that happens to be called "admin"; the room page carries the token in its body, never in a URL of ours.
(tests/cluster/test_jitsi.py runs the same code as a service behind a real JupyterHub.)"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jwt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "jitsi-token" / "rootfs" / "opt"
                       / "qhub-jitsi-token"))
from qhub_jitsi_token.app import (  # noqa: E402
    RoomRefused, Settings, check_room, is_moderator, may_call, mint, room_page,
)

pytestmark = pytest.mark.unit
SECRET = "s" * 64
SETTINGS = Settings(app_id="qhub", app_secret=SECRET, public_url="https://meet.example.org")
ALICE = {"name": "alice", "admin": False, "groups": ["staff"]}


def decode(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="qhub", issuer="qhub")


@pytest.mark.parametrize("room", ["*", "", "a*", "../etc", "room with space", "x" * 65, "staff.", ".staff",
                                  "a.b.c"])
def test_no_wildcard_or_malformed_room_gets_a_token(room: str) -> None:
    with pytest.raises(RoomRefused) as refused:
        check_room(SETTINGS, ALICE, room)
    assert refused.value.status in (400, 403)
    with pytest.raises(ValueError):
        mint(SETTINGS, ALICE, room)


def test_token_is_for_the_one_named_room_in_lower_case() -> None:
    room = check_room(SETTINGS, ALICE, "StandUp")
    assert room == "standup"
    claims = decode(mint(SETTINGS, ALICE, room)["token"])
    assert claims["room"] == "standup" and claims["sub"] == "meet.jitsi"
    assert claims["context"]["user"] == {"id": "alice", "name": "alice", "moderator": False}


def test_group_rooms_are_for_members_only() -> None:
    assert check_room(SETTINGS, ALICE, "staff.weekly") == "staff.weekly"
    with pytest.raises(RoomRefused, match="group students, which you are not in") as refused:
        check_room(SETTINGS, ALICE, "students.weekly")
    assert refused.value.status == 403
    only = Settings(app_id="qhub", app_secret=SECRET, public_url="https://meet.example.org", group_rooms_only=True)
    assert check_room(only, ALICE, "staff.weekly") == "staff.weekly"
    with pytest.raises(RoomRefused, match="group rooms only"):
        check_room(only, ALICE, "lobby")


def test_lifetime_is_minutes() -> None:
    claims = decode(mint(SETTINGS, ALICE, "lobby")["token"])
    assert claims["exp"] - claims["iat"] == 300, "five minutes by default"
    for hours in (3600, 86400, 30):
        with pytest.raises(ValueError, match="60-900 seconds"):
            Settings(app_id="qhub", app_secret=SECRET, public_url="https://m", lifetime=hours)


def test_moderators_are_hub_admins_and_listed_groups_only() -> None:
    admin = {"name": "root", "admin": True, "groups": []}
    named_admin = {"name": "mallory", "admin": False, "groups": ["admin"]}  # a group, not the hub's admin flag
    assert is_moderator(SETTINGS, admin) is True
    assert is_moderator(SETTINGS, named_admin) is False
    assert is_moderator(SETTINGS, {"name": "eve", "admin": "true", "groups": []}) is False, "only a real True"
    hosts = Settings(app_id="qhub", app_secret=SECRET, public_url="https://m", moderator_groups=("staff",))
    assert is_moderator(hosts, ALICE) is True
    assert decode(mint(SETTINGS, admin, "lobby")["token"])["context"]["user"]["moderator"] is True


def test_allowed_groups_limit_who_calls() -> None:
    limited = Settings(app_id="qhub", app_secret=SECRET, public_url="https://m", allowed_groups=("students",))
    assert may_call(limited, ALICE) is False
    assert may_call(limited, {"name": "root", "admin": True, "groups": []}) is True
    assert may_call(SETTINGS, ALICE) is True


def test_room_page_keeps_the_token_out_of_urls() -> None:
    token = mint(SETTINGS, ALICE, "lobby")["token"]
    page = room_page(SETTINGS, "lobby", token, nonce="n0nce")
    assert "jwt=" not in page and "?token" not in page, "no URL of the page carries the token"
    options = json.loads(re.search(r"var options = (\{.*?\});", page).group(1))
    assert options["jwt"] == token and options["roomName"] == "lobby"
    assert '<script src="https://meet.example.org/external_api.js"></script>' in page
    assert 'new JitsiMeetExternalAPI("meet.example.org", options)' in page
    assert page.count('nonce="n0nce"') == 2


def test_room_page_cannot_be_broken_out_of() -> None:
    """Values are JSON with <, > and & escaped: nothing closes the script element, whatever a value holds."""
    page = room_page(SETTINGS, "</script><script>alert(1)</script>", "t&<b>", nonce="n")
    assert page.count("</script>") == 2  # external_api.js and our own script, nothing injected
    assert "<title>&lt;/script&gt;" in page
    options = json.loads(re.search(r"var options = (\{.*?\});", page).group(1))
    assert options["jwt"] == "t&<b>"


def test_plain_http_jitsi_is_opened_without_ssl() -> None:
    local = Settings(app_id="qhub", app_secret=SECRET, public_url="http://127.0.0.1:30443")
    page = room_page(local, "lobby", "t", nonce="n")
    assert "options.noSSL = true;" in page and 'JitsiMeetExternalAPI("127.0.0.1:30443"' in page
