"""Hub-side settings: network addresses, database, authentication, users and groups, services, idle culling."""

from __future__ import annotations

import os
import sys
from typing import Any

from qhub_hub_values import SERVICES, HubSettings

AUTHENTICATORS = {
    # one shared password (DummyAuthenticator.password is deprecated since JupyterHub 5.3)
    "dummy": "jupyterhub.authenticators.shared.SharedPasswordAuthenticator",
    "native": "nativeauthenticator.NativeAuthenticator",
    "github": "oauthenticator.github.GitHubOAuthenticator",
    "generic-oauth": "oauthenticator.generic.GenericOAuthenticator",
}


def configure_hub(c: Any, s: HubSettings) -> None:
    """Where the hub listens, how it reaches the proxy, and its database."""
    ns = s.namespace
    c.JupyterHub.log_level = s.get("hub.logLevel", "INFO")
    c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
    c.JupyterHub.hub_connect_url = f"http://{s.name('hub')}.{ns}:8081"
    c.JupyterHub.cleanup_servers = False  # user servers keep running across hub restarts
    c.JupyterHub.cookie_secret = cookie_secret(s.secret("cookie-secret"))
    c.ConfigurableHTTPProxy.should_start = False  # the proxy is its own Deployment
    c.ConfigurableHTTPProxy.api_url = f"http://{s.name('proxyApi')}.{ns}:8001"
    c.ConfigurableHTTPProxy.auth_token = s.secret("proxy-token")
    public = s.name("publicUrl")
    if public:
        c.JupyterHub.public_url = public + "/"
    if s.get("hub.dbType") == "external":
        c.JupyterHub.db_url = os.environ["QHUB_HUB_DB_URL"]
    else:
        c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"  # relative to the working dir on the hub's PVC


COOKIE_SECRET_BYTES = 32  # what JupyterHub generates and expects


def cookie_secret(text: str) -> bytes:
    """The hub Secret's cookie-secret (64 hex characters, as the chart generates it) as the 32 bytes it encodes."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != COOKIE_SECRET_BYTES:
        raise ValueError(f"the hub Secret's cookie-secret must be {2 * COOKIE_SECRET_BYTES} hex characters "
                         f"({COOKIE_SECRET_BYTES} bytes); delete the key and upgrade to generate a new one")
    return key


def _oauth_common(c: Any, cls: Any, cfg: dict[str, Any], s: HubSettings) -> None:
    cls.client_id = cfg["clientId"]
    cls.client_secret = os.environ["QHUB_OAUTH_CLIENT_SECRET"]
    callback = cfg.get("callbackUrl") or (s.name("publicUrl") + "/hub/oauth_callback" if s.name("publicUrl") else "")
    if callback:
        cls.oauth_callback_url = callback


def configure_auth(c: Any, s: HubSettings) -> None:
    """Authenticator class and its settings, admins, allowed users."""
    auth = s.get("auth") or {}
    kind = auth.get("type", "dummy")
    c.JupyterHub.authenticator_class = AUTHENTICATORS[kind]
    c.Authenticator.admin_users = set(auth.get("adminUsers") or [])
    members = {u for g in (s.get("groupMembers") or {}).values() for u in ((g or {}).get("users") or [])}
    c.Authenticator.allowed_users = set(auth.get("allowedUsers") or []) | members
    c.Authenticator.allow_all = bool(auth.get("allowAll", False))
    if kind == "dummy":  # never open to any password: the chart always passes the shared trial password
        shared = c.SharedPasswordAuthenticator
        shared.user_password = os.environ["QHUB_DUMMY_PASSWORD"]
        # admins must use their own password (>= 32 characters); without one they cannot log in
        if os.environ.get("QHUB_DUMMY_ADMIN_PASSWORD"):
            shared.admin_password = os.environ["QHUB_DUMMY_ADMIN_PASSWORD"]
    elif kind == "native":
        native = auth.get("native") or {}
        c.NativeAuthenticator.open_signup = bool(native.get("openSignup"))
        c.NativeAuthenticator.minimum_password_length = int(native.get("minimumPasswordLength", 8))
    elif kind == "github":
        gh = auth.get("github") or {}
        _oauth_common(c, c.GitHubOAuthenticator, gh, s)
        c.GitHubOAuthenticator.allowed_organizations = set(gh.get("allowedOrganizations") or [])
        c.GitHubOAuthenticator.scope = ["read:org"]
    elif kind == "generic-oauth":
        oidc = auth.get("genericOAuth") or {}
        g = c.GenericOAuthenticator
        _oauth_common(c, g, oidc, s)
        g.login_service = oidc.get("loginServiceName", "OIDC")
        g.authorize_url = oidc["authorizeUrl"]
        g.token_url = oidc["tokenUrl"]
        g.userdata_url = oidc["userdataUrl"]
        g.username_claim = oidc.get("usernameClaim", "preferred_username")
        g.scope = list(oidc.get("scopes") or [])
        if oidc.get("manageGroups"):
            g.manage_groups = True
            g.auth_state_groups_key = f"oauth_user.{oidc.get('groupsClaim', 'groups')}"


def configure_groups(c: Any, s: HubSettings) -> None:
    """Configured groups with their initial members and gid (a group property, shown in the admin page)."""
    members = s.get("groupMembers") or {}
    groups = {}
    for name, gid in sorted(s.group_gids().items()):
        users = list((members.get(name) or {}).get("users") or [])
        groups[name] = {"users": users, "properties": {"gid": gid}}
    c.JupyterHub.load_groups = groups


# Services users reach with their own hub token or through hub OAuth.
USER_FACING = ("dask-gateway", "conda-store", "jitsi")


def _service_role(name: str, scopes: list[str]) -> dict[str, Any]:
    return {"name": f"{name}-service", "scopes": scopes, "services": [name]}


def configure_services(c: Any, s: HubSettings) -> None:
    """Register the enabled QHub services (token from the hub Secret) and the idle culler, with their roles."""
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    for name in SERVICES:
        spec = s.get(f"hub.services.{name}") or {}
        if not spec.get("enabled"):
            continue
        svc: dict[str, Any] = {"name": name, "api_token": s.secret(f"token-{name}"), "display": False}
        if spec.get("url"):
            svc["url"] = spec["url"]
        if spec.get("oauthRedirectUri"):
            svc["oauth_redirect_uri"] = spec["oauthRedirectUri"]
            svc["oauth_no_confirm"] = True
        services.append(svc)
        if spec.get("scopes"):
            roles.append(_service_role(name, list(spec["scopes"])))
    # Users' own tokens must carry access to the services they talk to with them (dask-gateway checks the
    # token a user's client sends against the hub); JupyterHub's default user role only has `self`.
    user_access = [f"access:services!service={svc['name']}" for svc in services if svc["name"] in USER_FACING]
    roles.append({"name": "user", "scopes": ["self", *user_access]})
    cull = s.get("cull") or {}
    if cull.get("enabled"):
        services.append({"name": "idle-culler", "command": culler_command(cull)})
        roles.append(
            _service_role("idle-culler", ["list:users", "read:users:activity", "read:servers", "delete:servers"])
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


# The hub API as the culler reaches it: the hub's own port inside the pod. The hub's Service URL (what JupyterHub
# hands to services) has no endpoint until the pod is Ready, so the culler's first call - made as soon as the hub
# starts it, before the readiness probe passed - was refused and the culler exited.
CULLER_HUB_API = "http://127.0.0.1:8081/hub/api"


def culler_command(cull: dict[str, Any]) -> list[str]:
    """jupyterhub-idle-culler, run by the hub as a managed service (it gets a token; the hub restarts it if it
    exits). It talks to the hub on localhost, which listens before the hub starts its managed services."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--url={CULLER_HUB_API}",
        f"--timeout={int(cull.get('timeout', 3600))}",
        f"--cull-every={int(cull.get('every', 300))}",
    ]
    if int(cull.get("maxAge", 0)):
        cmd.append(f"--max-age={int(cull['maxAge'])}")
    return cmd


def apply_extra_config(c: Any, s: HubSettings) -> None:
    """hub.config: {Class: {trait: value}} applied last, so it can override anything above."""
    for cls, traits in (s.get("hub.config") or {}).items():
        for trait, value in (traits or {}).items():
            setattr(getattr(c, cls), trait, value)
