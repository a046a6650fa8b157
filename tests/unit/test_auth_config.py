"""Logins in the config and in the values qhubctl maps them to: nothing open unless the config says allow_all,
native admins approved by nobody's name, OIDC names from a stable claim, admin passwords never in a file qhubctl
writes and shown only on a terminal. (tests/configs/*.error.auth-*.yaml check the messages field by field.)"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from qhubctl.commands.deploy import show_new_logins
from qhubctl.config import parse_config
from qhubctl.deploy import check_immutable
from qhubctl.errors import ImmutableFieldError
from qhubctl.scaffold import config_text
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit
OIDC = {"type": "oidc", "client_id": "q", "client_secret": {"secretRef": {"name": "o", "key": "k"}},
        "authorize_url": "https://id.example.org/a", "token_url": "https://id.example.org/t",
        "userdata_url": "https://id.example.org/u"}


def cfg(auth: dict[str, Any]) -> Any:
    return parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                         "auth": auth}, environ={})


def hub_auth(auth: dict[str, Any]) -> dict[str, Any]:
    return chart_values(cfg(auth))["jupyterhub"]["auth"]


@pytest.mark.parametrize(("auth", "open_"), [
    ({"type": "dummy", "users": {"demo": {}}}, False),
    ({"type": "dummy", "allow_all": True}, True),
    ({"type": "github", "client_id": "x", "client_secret": {"secretRef": {"name": "g", "key": "k"}},
      "allowed_organizations": ["my-org"]}, False),
    ({"type": "github", "client_id": "x", "client_secret": {"secretRef": {"name": "g", "key": "k"}},
      "allow_all": True}, True),
    ({**OIDC, "groups_claim": "groups", "allowed_groups": ["staff"]}, False),
    ({"type": "native", "users": {"ann": {}}, "admins": ["ann"]}, False),
])
def test_allow_all_is_only_what_the_config_says(auth: dict[str, Any], open_: bool) -> None:
    assert hub_auth(auth)["allowAll"] is open_


def test_default_login_is_native_with_an_admin_and_no_password_anywhere() -> None:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"}}
    values = chart_values(parse_config(raw, environ={}))["jupyterhub"]["auth"]
    assert (values["type"], values["adminUsers"], values["allowAll"]) == ("native", ["admin"], False)
    assert values["native"] == {"openSignup": False}


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "digitalocean", "existing", "local"])
def test_init_configs_name_who_logs_in_and_hold_no_password(provider: str) -> None:
    text = config_text(provider)
    parsed = parse_config(yaml.safe_load(text), environ={})
    assert parsed.auth.admins, "someone can approve or is admin from the start"
    assert "password" not in {k.lower() for k in yaml.safe_load(text)["auth"]}
    if provider != "local":  # the local demo is dummy with a generated shared password
        assert parsed.auth.type == "native" and not parsed.auth.open_signup
        assert "shows it once" in text


def test_oidc_names_come_from_sub_unless_configured() -> None:
    values = hub_auth({**OIDC, "users": {"ann": {}}})["genericOAuth"]
    assert values["usernameClaim"] == "sub" and values["allowedGroups"] == []
    values = hub_auth({**OIDC, "username_claim": "oid", "groups_claim": "roles", "allowed_groups": ["staff"]})
    assert values["genericOAuth"]["usernameClaim"] == "oid"
    assert values["genericOAuth"]["allowedGroups"] == ["staff"] and values["genericOAuth"]["groupsClaim"] == "roles"


def test_deploy_refuses_renaming_every_oidc_user() -> None:
    old = cfg({**OIDC, "username_claim": "preferred_username", "users": {"ann": {}}})
    stored = old.redacted()
    with pytest.raises(ImmutableFieldError, match="username_claim: 'preferred_username' -> 'sub'") as refused:
        check_immutable(stored, cfg({**OIDC, "users": {"ann": {}}}))
    assert "username_claim: preferred_username" in refused.value.hint
    check_immutable(stored, old)  # unchanged: fine
    check_immutable(stored, cfg({"type": "dummy", "users": {"ann": {}}}))  # another login type: names change anyway


def test_new_admin_passwords_are_shown_on_a_terminal_only(capsys: pytest.CaptureFixture[str]) -> None:
    config = cfg({"type": "native", "users": {"ann": {}}, "admins": ["ann"]})
    show_new_logins({"ann": "Pw0rdPw0rdPw0rdPw0rdPw0rdPw0rdPw"}, config, terminal=True)
    shown = capsys.readouterr().out
    assert "user ann  password Pw0rdPw0rdPw0rdPw0rdPw0rdPw0rdPw" in shown and "shown once" in shown
    show_new_logins({"ann": "Pw0rdPw0rdPw0rdPw0rdPw0rdPw0rdPw"}, config, terminal=False)
    hidden = capsys.readouterr().out
    assert "Pw0rd" not in hidden and "not a terminal" in hidden
    assert "get secret qhub-hub -o jsonpath='{.data.native-admin-passwords}' | base64 -d" in hidden
    show_new_logins({}, config, terminal=True)
    assert capsys.readouterr().out == "", "nothing new, nothing said"
