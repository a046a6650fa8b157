"""Logins of the jupyterhub subchart, rendered with `helm template` and loaded as the hub loads them: the default is
native accounts with generated admin passwords (nothing open), allowAll only when the values say so, OAuth user
names from a stable claim. tests/cluster/test_native_login.py runs the rendered config in a real JupyterHub."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jhrender import CHART, HUB_ONLY, find, helm_template, merge, render, secret_text, write_hub_files
from traitlets.config.loader import PyFileConfigLoader

from qhubctl.proc import run

pytestmark = pytest.mark.chart
HUB_MODULES = ("qhub_hub_values", "qhub_hub_identities", "qhub_hub_setup", "qhub_hub_spawner", "qhub_hub_auth",
               "qhub_hub_native")


def hub_config(objs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               env: dict[str, str] | None = None) -> Any:
    """The chart's jupyterhub_config.py loaded as the hub loads it, with the rendered Secret mounted."""
    config_dir, secret_dir = write_hub_files(objs, tmp_path)
    monkeypatch.setenv("QHUB_HUB_SECRET_DIR", str(secret_dir))
    monkeypatch.setenv("POD_NAMESPACE", "qhub")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    for mod in HUB_MODULES:
        monkeypatch.delitem(sys.modules, mod, raising=False)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(config_dir)).load_config()


def hub_values(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(secret_text(find(objs, "Secret", "qhub-hub"))["values.yaml"])


def test_default_is_native_with_a_generated_admin_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render()
    data = secret_text(find(objs, "Secret", "qhub-hub"))
    passwords = json.loads(data["native-admin-passwords"])
    assert list(passwords) == ["admin"] and re.fullmatch(r"[A-Za-z0-9]{32}", passwords["admin"])
    auth = hub_values(objs)["auth"]
    assert (auth["type"], auth["adminUsers"], auth["allowAll"]) == ("native", ["admin"], False)
    others = yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"]) + data["values.yaml"]
    assert passwords["admin"] not in others, "the password lives in the Secret's own key only"
    again = json.loads(secret_text(find(render(), "Secret", "qhub-hub"))["native-admin-passwords"])
    assert again["admin"] != passwords["admin"], "random per install (kept on upgrade through lookup)"

    c = hub_config(objs, tmp_path, monkeypatch)
    assert c.JupyterHub.authenticator_class == "qhub_hub_native.QHubNativeAuthenticator"
    assert c.QHubNativeAuthenticator.admin_passwords == passwords
    assert c.Authenticator.admin_users == {"admin"}
    # nativeauthenticator's approval is the gate: nobody is pre-approved by name at sign-up
    assert c.Authenticator.allowed_users == set() and c.Authenticator.allow_all is True
    assert c.NativeAuthenticator.open_signup is False


def test_admin_passwords_follow_the_admin_list() -> None:
    objs = render({"jupyterhub": {"auth": {"adminUsers": ["ann", "bob@example.org"]}}})
    passwords = json.loads(secret_text(find(objs, "Secret", "qhub-hub"))["native-admin-passwords"])
    assert sorted(passwords) == ["ann", "bob@example.org"] and passwords["ann"] != passwords["bob@example.org"]
    other = render({"jupyterhub": {"auth": {"type": "github", "github": {"existingSecret": "gh"},
                                            "allowedUsers": ["ann"]}}})
    assert "native-admin-passwords" not in secret_text(find(other, "Secret", "qhub-hub"))


@pytest.mark.parametrize(("auth", "message"), [
    ({"adminUsers": []}, "jupyterhub.auth.adminUsers is empty: with auth.type native an admin authorizes"),
    ({"adminUsers": ["bad name"]}, 'jupyterhub.auth.adminUsers: "bad name" cannot be a native account name'),
])
def test_native_without_a_usable_admin_fails(auth: dict[str, Any], message: str) -> None:
    result = helm_template(merge(HUB_ONLY, {"jupyterhub": {"auth": auth}}), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    opened = render({"jupyterhub": {"auth": {"adminUsers": [], "native": {"openSignup": True}}}})
    assert json.loads(secret_text(find(opened, "Secret", "qhub-hub"))["native-admin-passwords"]) == {}


def test_notes_tell_how_the_first_login_works(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(HUB_ONLY))
    notes = run(["helm", "install", "qhub", str(CHART), "-n", "qhub", "--dry-run=client", "-f", str(values)],
                timeout=120).stdout
    text = notes[notes.index("Log in:"):]
    assert "kubectl --namespace qhub get secret qhub-hub -o jsonpath='{.data.native-admin-passwords}'" in text
    assert "an admin authorizes new accounts at /hub/authorize" in text and "Admins: admin" in text


def test_dummy_is_open_only_when_the_values_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render({"jupyterhub": {"auth": {"type": "dummy", "allowedUsers": ["demo"]}}})
    data = secret_text(find(objs, "Secret", "qhub-hub"))
    env = {"QHUB_DUMMY_PASSWORD": data["dummy-password"], "QHUB_DUMMY_ADMIN_PASSWORD": data["dummy-admin-password"]}
    c = hub_config(objs, tmp_path, monkeypatch, env)
    assert c.Authenticator.allow_all is False and c.Authenticator.allowed_users == {"demo"}
    opened = render({"jupyterhub": {"auth": {"type": "dummy", "allowAll": True}}})
    assert hub_config(opened, tmp_path / "o", monkeypatch, env).Authenticator.allow_all is True


def test_oauth_user_names_come_from_a_stable_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oidc = {"type": "generic-oauth", "adminUsers": ["ann"], "genericOAuth": {
        "clientId": "qhub", "existingSecret": "oidc", "authorizeUrl": "https://id.example.org/a",
        "tokenUrl": "https://id.example.org/t", "userdataUrl": "https://id.example.org/u"}}
    env = {"QHUB_OAUTH_CLIENT_SECRET": "x"}
    c = hub_config(render({"jupyterhub": {"auth": oidc}}), tmp_path, monkeypatch, env)
    assert c.GenericOAuthenticator.username_claim == "sub"
    assert c.Authenticator.allow_all is False, "only the admin; nobody else unless listed"
    grouped = merge(oidc, {"genericOAuth": {"usernameClaim": "oid", "allowedGroups": ["staff"],
                                            "groupsClaim": "roles"}})
    c = hub_config(render({"jupyterhub": {"auth": grouped}}), tmp_path / "g", monkeypatch, env)
    assert c.GenericOAuthenticator.username_claim == "oid"
    assert c.GenericOAuthenticator.allowed_groups == {"staff"}
    assert c.GenericOAuthenticator.auth_state_groups_key == "oauth_user.roles"
