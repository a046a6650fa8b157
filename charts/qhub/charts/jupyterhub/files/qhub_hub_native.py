"""QHubNativeAuthenticator: nativeauthenticator without the claimable admin.

Plain nativeauthenticator approves a sign-up at once when the name is an admin or an allowed user, so whoever
reaches /hub/signup first with the admin's name becomes admin. Here:

- Every name in admin_users has an account from the hub's start, with the password the chart generated into the
  hub Secret (admin_passwords). At each start the stored password is set back to the Secret's when it differs, so
  the Secret is where admin passwords live (change one there and restart the hub); that also takes back an admin
  name someone claimed through sign-up on an older version.
- Sign-up refuses admin names, and no sign-up is approved by its name: unless open_signup, an admin authorizes
  each new account at /hub/authorize.
- The change-password pages refuse admin accounts (their password is the Secret's).

nativeauthenticator 1.3 predates JupyterHub 6: its login page times logins with the `statsd` client JupyterHub 6
removed (every login failed with a 500) and renders errors without JupyterHub 6's `sync` argument.
QHubNativeLoginHandler keeps its page and flow and fills those two gaps.
"""

from __future__ import annotations

from typing import Any

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Dict, Unicode


class _NoTimer:
    """Stands where nativeauthenticator expects JupyterHub's statsd client (gone in JupyterHub 6); times nothing."""

    def timer(self, name: str) -> _NoTimer:
        return self

    def start(self) -> _NoTimer:
        return self

    def stop(self, send: bool = True) -> None:
        return None


class QHubNativeLoginHandler(NativeLoginHandler):
    """nativeauthenticator's login page and form handling, runnable on JupyterHub 6."""

    statsd = _NoTimer()

    def _render(self, login_error: str | None = None, username: str | None = None, **kwargs: Any) -> Any:
        # JupyterHub renders a failed form post through _render, synchronously when asked (sync=True)
        following = self.get_argument("next", default="")
        return self.render_template(
            "native-login.html", sync=bool(kwargs.get("sync")), next=url_escape(following), username=username,
            login_error=login_error, custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"], enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(self.authenticator.login_url(self.hub.base_url), {"next": following}),
        )


class QHubNativeAuthenticator(NativeAuthenticator):
    admin_passwords = Dict(
        key_trait=Unicode(), value_trait=Unicode(), config=True,
        help="Password of every admin account, {name: password}, from the hub Secret (key native-admin-passwords).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync_admin_accounts()

    def sync_admin_accounts(self) -> None:
        """Create or correct the account of every admin: authorized, with the Secret's password."""
        for name in sorted(self.admin_users):
            password = self.admin_passwords.get(name)
            if not password:
                self.log.error("admin %s has no password in the hub Secret (native-admin-passwords): the account "
                               "is locked; upgrade the release to generate one", name)
            info = self.get_user(name)
            hashed = bcrypt.hashpw((password or bcrypt.gensalt().decode()).encode(), bcrypt.gensalt())
            if info is None:
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
                self.log.info("created the admin account %s", name)
                continue
            if not password or not info.is_valid_password(password):
                info.password = hashed
                self.log.warning("reset the password of admin %s to the one in the hub Secret", name)
            info.is_authorized = True
        self.db.commit()

    def create_user(self, username: str, password: str, **kwargs: Any) -> Any:
        name = self.normalize_username(username)
        if name in self.admin_users:
            self.log.warning("refused a sign-up as the admin %s", name)
            return None
        info = super().create_user(username, password, **kwargs)
        if info is not None and info.is_authorized and not self.open_signup:
            info.is_authorized = False  # approved by an admin, never by the name alone
            self.db.commit()
        return info

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [(path, QHubNativeLoginHandler if handler is NativeLoginHandler else handler)
                for path, handler in super().get_handlers(app)]

    def change_password(self, username: str, new_password: str) -> Any:
        if self.normalize_username(username) in self.admin_users:
            self.log.warning("refused to change the password of admin %s here: it lives in the hub Secret",
                             username)
            return None
        return super().change_password(username, new_password)
