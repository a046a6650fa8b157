"""Native login (the chart's default) in a real JupyterHub with nativeauthenticator, running the chart's own
rendered hub config and Secret behind configurable-http-proxy, driven over HTTP as a browser would.

It proves the claimable-admin path is closed: nobody can sign up as the admin, the admin logs in with the password
generated into the hub Secret (and with nothing else, even when an older version let someone sign up as admin
first), and a sign-up - also under a name listed in the config - logs in only after an admin authorized it. The
chart's generated admin password is also kept across a real `helm upgrade`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from jhrender import HUB_ONLY, REPO, find, merge, render, secret_text, write_hub_files
from servicehub import Fatal, chp_command, free_port, wait_until

from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run

pytestmark = pytest.mark.cluster
VALUES = {"jupyterhub": {"auth": {"adminUsers": ["admin"]}, "groups": {"staff": {"users": ["alice"]}}}}
ATTACKER = "attacker-chosen-password"


def claim_admin(db: Path) -> None:
    """The state an older chart could leave: someone signed up as `admin` first, approved by the name alone."""
    with sqlite3.connect(db) as conn:
        changed = conn.execute("UPDATE users_info SET password = ?, is_authorized = 1 WHERE username = 'admin'",
                               (bcrypt.hashpw(ATTACKER.encode(), bcrypt.gensalt()),)).rowcount
    assert changed == 1, "the hub created the admin's account at its first start"


class Browser:
    """A requests session that fills the hub's forms with their XSRF token."""

    def __init__(self, base: str) -> None:
        self.base, self.session = base, requests.Session()

    def form(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.session.get(f"{self.base}{path}", timeout=30)
        found = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        xsrf = html.unescape(found.group(1)) if found else self.session.cookies.get("_xsrf", "")
        return self.session.post(f"{self.base}{path}", data={**data, "_xsrf": xsrf}, allow_redirects=False,
                                 timeout=30)

    def login(self, user: str, password: str) -> bool:
        done = self.form("/hub/login", {"username": user, "password": password})
        return done.status_code == 302 and "/hub/login" not in done.headers.get("Location", "")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    work = tmp_path_factory.mktemp("native")
    objs = render(VALUES)
    config_dir, secret_dir = write_hub_files(objs, work)
    passwords = json.loads(secret_text(find(objs, "Secret", "qhub-hub"))["native-admin-passwords"])
    ports = {"hub": free_port(), "public": free_port(), "api": free_port()}
    proxy_token = (secret_dir / "proxy-token").read_text()
    db = work / "jupyterhub.sqlite"
    wrapper = work / "test_config.py"
    # the chart's config unchanged, then only addresses on loopback and a local spawner (no server is started)
    wrapper.write_text(f"""
c = get_config()  # noqa: F821
load_subconfig({str(config_dir / "jupyterhub_config.py")!r})  # noqa: F821
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{ports['hub']}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{ports['hub']}"
c.JupyterHub.bind_url = "http://127.0.0.1:{ports['public']}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports['api']}"
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.spawner_class = "simple"
""")
    shared = work / "shared"
    shared.mkdir()
    log = work / "hub.log"
    chp = subprocess.Popen(
        [*chp_command(), "--ip", "127.0.0.1", "--port", str(ports["public"]), "--api-ip", "127.0.0.1",
         "--api-port", str(ports["api"]), "--default-target", f"http://127.0.0.1:{ports['hub']}"],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": proxy_token}, stdout=(work / "chp.log").open("wb"),
        stderr=subprocess.STDOUT)
    env = {**os.environ, "QHUB_HUB_SECRET_DIR": str(secret_dir), "QHUB_SHARED_DIR": str(shared),
           "POD_NAMESPACE": "qhub", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    base = f"http://127.0.0.1:{ports['public']}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(wrapper)], cwd=work,
                                env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)

        def up() -> bool:
            if proc.poll() is not None:
                raise Fatal(f"jupyterhub exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            return requests.get(f"{base}/hub/login", timeout=5).status_code == 200

        wait_until(up, 90, "the hub's login page")
        return proc

    procs = [chp]
    try:
        procs.append(start())
        stop(procs.pop())
        claim_admin(db)  # then the hub restarts, as after an upgrade
        procs.append(start())
        yield {"base": base, "passwords": passwords, "log": log}
    finally:
        for proc in reversed(procs):
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_admin_logs_in_only_with_the_generated_password(hub: dict[str, object]) -> None:
    """An older chart let the first visitor sign up as admin; the hub now sets the admin's password back to the
    Secret's at start, so that claim is void."""
    base, password = str(hub["base"]), hub["passwords"]["admin"]  # type: ignore[index]
    assert not Browser(base).login("admin", ATTACKER), "the claimed admin password no longer works"
    admin = Browser(base)
    assert admin.login("admin", password), Path(str(hub["log"])).read_text()[-3000:]
    model = admin.session.get(f"{base}/hub/api/user", timeout=30,
                              headers={"Referer": f"{base}/hub/home", "X-XSRFToken": admin.session.cookies.get(
                                  "_xsrf", "")})
    assert model.status_code == 200 and model.json()["admin"] is True, model.text


def test_nobody_can_sign_up_as_the_admin(hub: dict[str, object]) -> None:
    base = str(hub["base"])
    Browser(base).form("/hub/signup", {"username": "admin", "signup_password": "mallory-password-1",
                                       "signup_password_confirmation": "mallory-password-1"})
    assert not Browser(base).login("admin", "mallory-password-1")
    assert Browser(base).login("admin", hub["passwords"]["admin"])  # type: ignore[index]


def test_admin_password_is_changed_in_the_secret_not_on_the_page(hub: dict[str, object]) -> None:
    base, password = str(hub["base"]), hub["passwords"]["admin"]  # type: ignore[index]
    admin = Browser(base)
    assert admin.login("admin", password)
    admin.form("/hub/change-password", {"old_password": password, "new_password": "a-new-admin-password",
                                        "new_password_confirmation": "a-new-admin-password"})
    assert not Browser(base).login("admin", "a-new-admin-password"), "the page cannot move it off the Secret's"
    assert Browser(base).login("admin", password)
    # the same page does change an ordinary account's password (so the refusal above is the admin rule)
    Browser(base).form("/hub/signup", {"username": "carol", "signup_password": "carol-password-1",
                                       "signup_password_confirmation": "carol-password-1"})
    admin.session.get(f"{base}/hub/authorize/carol", timeout=30)
    carol = Browser(base)
    assert carol.login("carol", "carol-password-1")
    carol.form("/hub/change-password", {"old_password": "carol-password-1", "new_password": "carol-password-2",
                                        "new_password_confirmation": "carol-password-2"})
    assert Browser(base).login("carol", "carol-password-2")


@pytest.mark.parametrize("user", ["alice", "newcomer"])  # alice: named in the config (group staff)
def test_a_sign_up_logs_in_only_after_an_admin_authorized_it(hub: dict[str, object], user: str) -> None:
    base, password = str(hub["base"]), f"{user}-password-{uuid.uuid4().hex[:6]}"
    done = Browser(base).form("/hub/signup", {"username": user, "signup_password": password,
                                              "signup_password_confirmation": password})
    assert done.status_code in (200, 302), done.text[:300]
    assert not Browser(base).login(user, password), "approved by its name alone"
    admin = Browser(base)
    assert admin.login("admin", hub["passwords"]["admin"])  # type: ignore[index]
    assert admin.session.get(f"{base}/hub/authorize/{user}", timeout=30).status_code in (200, 302)
    assert wait_until(lambda: Browser(base).login(user, password), 10, f"{user} to log in once authorized")


def test_admin_password_is_generated_once_and_kept_on_upgrade(cluster: LocalCluster, tmp_path: Path) -> None:
    ns = f"native-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(merge(HUB_ONLY, {"sharedStorage": {"existingStorageClass": "standard"}})))
    base = [str(REPO / "charts" / "qhub"), "-n", ns, "-f", str(REPO / "ci" / "local-cluster-values.yaml"),
            "-f", str(values)]

    def stored() -> dict[str, str]:
        data = json.loads(cluster.kubectl("get", "secret", "qhub-hub", "-n", ns, "-o", "json"))["data"]
        return json.loads(base64.b64decode(data["native-admin-passwords"]))

    try:
        run(["helm", "install", "qhub", *base, "--create-namespace"], env=cluster.env, timeout=300)
        first = stored()
        run(["helm", "upgrade", "qhub", *base, "--set", "jupyterhub.auth.adminUsers={admin,ann}"], env=cluster.env,
            timeout=300)
        second = stored()
        assert second["admin"] == first["admin"], "the admin's password survives upgrades"
        assert sorted(second) == ["admin", "ann"] and second["ann"] != second["admin"]
    finally:
        run(["helm", "uninstall", "qhub", "-n", ns], env=cluster.env, check=False, timeout=180)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
