"""Jitsi room tokens as prosody would take them, for the cluster tier (chart rendered, token service on the host)
and the node tier (chart installed, token service in its container): a container's environment resolved the way
the kubelet resolves it, and a token verified with the secret, audience and issuer prosody is given."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import jwt

# a JWT in a page or a redirect: header and claims both start with '{"', which base64url writes as eyJ
JWT_PATTERN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.")


def container_env(container: dict[str, Any], secret: Callable[[str], dict[str, Any] | None]) -> dict[str, str]:
    """`container`'s environment: its values, and its secretKeyRefs read from the Secret `secret(name)` returns
    (None: a Secret that does not exist, whose variables are left out)."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            found = secret(ref["name"])
            if found is not None:
                env[item["name"]] = base64.b64decode(found["data"][ref["key"]]).decode()
    return env


def verify_room_token(token: str, prosody_env: dict[str, str]) -> dict[str, Any]:
    """The token's claims, checked as prosody checks them: HS256 with its app secret, its accepted audience and
    issuer, and every claim a room token must carry."""
    return dict(jwt.decode(token, prosody_env["JWT_APP_SECRET"], algorithms=["HS256"],
                           audience=prosody_env["JWT_ACCEPTED_AUDIENCES"], issuer=prosody_env["JWT_ACCEPTED_ISSUERS"],
                           options={"require": ["exp", "iat", "nbf", "room", "sub", "aud", "iss"]}))
