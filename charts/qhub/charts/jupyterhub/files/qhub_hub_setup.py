"""Hub-side settings: network addresses, database, groups, services, idle culling and how soon activity reaches
the hub (login: qhub_hub_auth.py)."""

from __future__ import annotations

import os
import sys
from typing import Any

from qhub_hub_values import HubSettings

def configure_hub(c: Any, s: HubSettings) -> None:
    """Where the hub listens, how it reaches the proxy, and its database."""
    ns = s.namespace
    c.JupyterHub.log_level = s.get("hub.logLevel", "INFO")
    c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
    c.JupyterHub.hub_connect_url = f"http://{s.name('hub')}.{ns}:{s.name('hubPort')}"  # the hub Service
    c.JupyterHub.cleanup_servers = False  # user servers keep running across hub restarts
    c.JupyterHub.cookie_secret = cookie_secret(s.secret("cookie-secret"))
    c.ConfigurableHTTPProxy.should_start = False  # the proxy is its own Deployment
    c.ConfigurableHTTPProxy.api_url = f"http://{s.name('proxyApi')}.{ns}:8001"
    c.ConfigurableHTTPProxy.auth_token = s.secret("proxy-token")
    # The proxy keeps its routes in memory: a new proxy pod (rescheduled, evicted, or changed by an upgrade that
    # leaves the hub alone) sends every user to the hub - "Redirect loop detected" - until the hub puts the routes
    # back, which it does each time it reads the proxy's activity: every minute, not JupyterHub's 5.
    c.JupyterHub.last_activity_interval = ROUTE_CHECK_INTERVAL
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
# What JupyterHub's default `server` role grants a server's own token: report activity, accept its user's requests.
SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")


def _service_role(name: str, scopes: list[str]) -> dict[str, Any]:
    return {"name": f"{name}-service", "scopes": scopes, "services": [name]}


def configure_services(c: Any, s: HubSettings) -> None:
    """Register the enabled QHub services (token from the hub Secret) and the idle culler, with their roles."""
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    for name in s.get("hub.services") or {}:
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
    # The token a user's server gets (JUPYTERHUB_API_TOKEN, what a notebook's Gateway() sends): JupyterHub's own
    # server scopes, plus the same service access, so that code in the lab reaches those services as its user.
    roles.append({"name": "server", "scopes": [*SERVER_TOKEN_SCOPES, *user_access]})
    cull = s.get("cull") or {}
    if cull.get("enabled"):
        services.append({"name": "idle-culler", "command": culler_command(cull)})
        roles.append(
            _service_role("idle-culler", ["list:users", "read:users:activity", "read:servers", "delete:servers"])
        )
        # a short timeout reads the proxy's record of each route's traffic more often still
        c.JupyterHub.last_activity_interval = min(ROUTE_CHECK_INTERVAL, activity_interval(cull))
        c.JupyterHub.activity_resolution = min(ACTIVITY_RESOLUTION, activity_interval(cull))
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    c.Proxy.extra_routes = platform_routes(services, s.get("platformServices") or {})


def platform_routes(services: list[dict[str, Any]], platform: dict[str, Any]) -> dict[str, str]:
    """Proxy.extra_routes for the registered services served on a path of the platform's host other than
    /services/<name> (`platform`: the chart's global.services, e.g. conda-store on /conda-store): the proxy routes
    that path to the service's host, path kept, so it answers on the proxy too (the Ingress sends it there
    directly). Only when the service's URL ends in that path."""
    paths = {name: str(spec["path"]).rstrip("/") + "/" for name, spec in platform.items()
             if spec.get("path") not in ("/", f"/services/{name}")}
    routes = {}
    for svc in services:
        path = paths.get(svc["name"])
        url = svc.get("url", "").rstrip("/") + "/"
        if path and url.endswith(path):
            routes[path] = url[: -len(path)]
    return routes


# The hub API as the culler reaches it: the hub's own port inside the pod. The hub's Service URL (what JupyterHub
# hands to services) has no endpoint until the pod is Ready, so the culler's first call - made as soon as the hub
# starts it, before the readiness probe passed - was refused and the culler exited.
CULLER_HUB_API = "http://127.0.0.1:8081/hub/api"


# JupyterHub's own periods: activity is read from the proxy (and reported by each server) every 5 minutes, and
# a newer time within 30 seconds of the stored one is not written.
ACTIVITY_INTERVAL = 300
ACTIVITY_RESOLUTION = 30
# Seconds between two checks of the proxy's routes (JupyterHub.last_activity_interval): at most this long after a
# proxy restart until users reach their servers again.
ROUTE_CHECK_INTERVAL = 60


def activity_interval(cull: dict[str, Any]) -> int:
    """Seconds between activity updates reaching the hub: a quarter of the cull timeout, at most JupyterHub's 5
    minutes. The culler judges by the activity the hub has heard of; with a timeout under the update period it
    would stop servers in use."""
    if not cull.get("enabled"):
        return ACTIVITY_INTERVAL
    return min(ACTIVITY_INTERVAL, max(10, int(cull.get("timeout", 3600)) // 4))


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
