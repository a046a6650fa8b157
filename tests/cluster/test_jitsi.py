"""Jitsi room tokens end to end on the host: the real token service (images/jitsi-token) configured from the
chart's rendered Deployment and Secret, behind a real JupyterHub; tokens are verified with PyJWT against the app
secret prosody is given. (Jitsi's own web, prosody, jicofo and jvb are container images and do not run here.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import urljoin, urlparse

import jwt
import pytest
import requests

from jitsikit import JWT_PATTERN, container_env, verify_room_token
from servicehub import REPO, find, free_port, render, running_hub, wait_until

pytestmark = pytest.mark.cluster
# carol: hub admin in no group; mallory: in a group named "admin" but not a hub admin
USERS = {"alice": ["staff"], "bob": ["students"], "carol": [], "eve": ["visitors"], "mallory": ["admin", "staff"]}


@pytest.fixture(scope="module")
def jitsi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jitsi")
    docs = render(REPO / "ci" / "values" / "jitsi-values.yaml")
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    token_env = container_env(
        find(docs, "Deployment", "qhub-jitsi-token")["spec"]["template"]["spec"]["containers"][0], secrets.get)
    prosody_env = container_env(
        find(docs, "Deployment", "qhub-jitsi-prosody")["spec"]["template"]["spec"]["containers"][0], secrets.get)
    api_token, port = os.urandom(16).hex(), free_port()
    services = [{"name": "jitsi", "api_token": api_token, "url": f"http://127.0.0.1:{port}",
                 "oauth_redirect_uri": "/services/jitsi/oauth_callback", "oauth_no_confirm": True}]
    roles = [{"name": "user", "scopes": ["self", "access:services!service=jitsi"]}]

    def start_token_service(hub):
        env = {**os.environ, **token_env,
               "PYTHONPATH": str(REPO / "images" / "jitsi-token" / "rootfs" / "opt" / "qhub-jitsi-token"),
               "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": api_token,
               "JITSI_TOKEN_PORT": str(port), "JITSI_TOKEN_BIND": "127.0.0.1"}
        log = open(tmp / "token.log", "w")
        return [subprocess.Popen([sys.executable, "-m", "qhub_jitsi_token"], env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)]

    with running_hub(tmp / "hub", services=services, roles=roles, users=USERS, admins=("carol",),
                     pre_start=start_token_service) as hub:
        wait_until(lambda: requests.get(f"{hub.url}/services/jitsi/health", timeout=2).text == "ok", 30,
                   "jitsi token service")
        yield {"hub": hub, "token_env": token_env, "prosody_env": prosody_env}


def verify(jitsi, token: str) -> dict:
    return verify_room_token(token, jitsi["prosody_env"])


def test_prosody_and_token_service_share_the_generated_secret(jitsi):
    assert len(jitsi["prosody_env"]["JWT_APP_SECRET"]) == 64
    assert jitsi["token_env"]["JITSI_APP_SECRET"] == jitsi["prosody_env"]["JWT_APP_SECRET"]
    assert jitsi["prosody_env"]["AUTH_TYPE"] == "jwt" and jitsi["prosody_env"]["ENABLE_GUESTS"] == "0"


def test_unauthenticated_clients_get_no_token(jitsi):
    hub = jitsi["hub"]
    for path in ("/services/jitsi/token?room=standup", "/services/jitsi/room/standup"):
        r = requests.get(f"{hub.url}{path}", allow_redirects=False, timeout=10)
        assert r.status_code in (302, 401, 403), r.status_code
        assert not JWT_PATTERN.search(r.headers.get("Location", "") + r.text)
        if r.status_code == 302:
            assert "/hub/" in r.headers["Location"], "sent to the hub to log in"
        r = requests.get(f"{hub.url}{path}", headers={"Authorization": "token not-a-hub-token"},
                         allow_redirects=False, timeout=10)
        assert r.status_code in (302, 401, 403) and not JWT_PATTERN.search(r.text)
    # a token signed with any other key is not one prosody accepts
    forged = jwt.encode({"iss": "qhub", "aud": "qhub", "sub": "meet.jitsi", "room": "*", "exp": 2**31,
                         "iat": 0, "nbf": 0}, "a-guessed-secret-of-sufficient-length-0123456789", algorithm="HS256")
    with pytest.raises(jwt.InvalidSignatureError):
        verify(jitsi, forged)


def test_hub_users_get_a_valid_room_jwt(jitsi):
    hub = jitsi["hub"]
    token = hub.new_token("alice")
    r = requests.get(f"{hub.url}/services/jitsi/token", params={"room": "standup"},
                     headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    claims = verify(jitsi, body["token"])
    assert claims["room"] == "standup" and claims["sub"] == "meet.jitsi"
    assert claims["context"]["user"]["name"] == "alice" and claims["context"]["user"]["moderator"] is False
    assert claims["exp"] - claims["iat"] == 600, "token.lifetime from values"
    assert body["url"] == "https://meet.qhub.example.org/standup", "the room URL, without the token"
    assert r.headers["Cache-Control"] == "no-store"

    def ask(room: str | None, who: str = token) -> requests.Response:
        params = {"room": room} if room is not None else {}
        return requests.get(f"{hub.url}/services/jitsi/token", params=params,
                            headers={"Authorization": f"token {who}"}, timeout=10)

    for room in ("*", "../etc", None):  # no wildcard token, no malformed room, no room-less token
        r = ask(room)
        assert r.status_code == 400 and not JWT_PATTERN.search(r.text), (room, r.text)
    assert verify(jitsi, ask("staff.weekly").json()["token"])["room"] == "staff.weekly", "alice is in staff"
    r = ask("students.weekly")
    assert r.status_code == 403 and "students" in r.text, "a group's room is for its members"
    # a hub token in the URL is ignored (JUPYTERHUB_ALLOW_TOKEN_IN_URL=0): no token from ?token=
    r = requests.get(f"{hub.url}/services/jitsi/token", params={"room": "standup", "token": token},
                     allow_redirects=False, timeout=10)
    assert r.status_code in (302, 401, 403) and not JWT_PATTERN.search(r.text)


def test_moderator_is_the_hub_admin_flag_not_a_group_named_admin(jitsi):
    hub = jitsi["hub"]

    def moderator(user: str) -> bool:
        r = requests.get(f"{hub.url}/services/jitsi/token", params={"room": "allhands"},
                         headers={"Authorization": f"token {hub.new_token(user)}"}, timeout=10)
        assert r.status_code == 200, r.text
        return verify(jitsi, r.json()["token"])["context"]["user"]["moderator"]

    assert moderator("carol") is True, "hub admin (the user model's admin field), in no group"
    assert moderator("mallory") is False, "a member of a group called admin is not a hub admin"
    assert moderator("alice") is False


def test_oauth_login_opens_the_room_page_and_groups_are_enforced(jitsi):
    """A browser following the room link logs in through the hub and gets the room page: the token is in the
    page (for Jitsi's IFrame API), not in any redirect, so it never shows in the address bar or a Location."""
    hub = jitsi["hub"]

    def browser(user: str, room: str) -> tuple[requests.Response, list[str]]:
        s = requests.Session()
        url = f"{hub.url}/services/jitsi/room/{room}"
        visited = [url]
        for _ in range(10):
            r = s.get(url, allow_redirects=False, timeout=20)
            if r.status_code == 200 and "/hub/login" in url:  # the hub's login form
                import html
                xsrf = html.unescape(re.search(r'name="_xsrf" value="([^"]+)"', r.text).group(1))
                r = s.post(url, data={"username": user, "password": "x", "_xsrf": xsrf}, allow_redirects=False,
                           timeout=20)
            if r.status_code != 302:
                return r, visited
            url = urljoin(url, r.headers["Location"])
            visited.append(url)
        raise AssertionError("too many redirects")

    r, visited = browser("carol", "AllHands")
    assert r.status_code == 200 and urlparse(visited[-1]).path == "/services/jitsi/room/AllHands", visited
    assert not [u for u in visited if "jwt=" in u or JWT_PATTERN.search(u)], f"a token in a URL: {visited}"
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-src https://meet.qhub.example.org" in r.headers["Content-Security-Policy"]
    options = json.loads(re.search(r"var options = (\{.*?\});", r.text).group(1))
    claims = verify(jitsi, options["jwt"])
    assert options["roomName"] == claims["room"] == "allhands"
    assert claims["context"]["user"]["name"] == "carol" and claims["context"]["user"]["moderator"] is True
    assert browser("bob", "allhands")[0].status_code == 200, "students are an allowed group"
    r, _ = browser("eve", "allhands")
    assert r.status_code == 403 and not JWT_PATTERN.search(r.text), "groups outside token.allowedGroups get nothing"
