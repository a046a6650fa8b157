"""The SSH host key: made once, then the same for every gateway pod, restart, upgrade and rollback.

In the cluster the key lives in a Secret that the chart creates without data (so `helm template` and GitOps
renders never contain, replace or remove it). The first gateway to start generates an ed25519 key and stores it
there with an update that carries the Secret's resourceVersion: when two pods race, the second update is refused
(409) and that pod reads the stored key instead. The gateway's ServiceAccount may only get and update that one
Secret. Outside a cluster (tests, a laptop) the key is a file, generated when missing.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
from pathlib import Path

import aiohttp
import asyncssh

log = logging.getLogger("qhub_ssh")

KEY_FIELD = "ssh_host_ed25519_key"


class HostKeyError(Exception):
    pass


def _new_key_pem() -> bytes:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh")


def from_file(path: str) -> asyncssh.SSHKey:
    """The key in `path`, generated (mode 0600) if the file does not exist yet."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(_new_key_pem())
            log.info("generated a new SSH host key in %s", p)
    return asyncssh.read_private_key(str(p))


class KubeSecret:
    """One Secret through the Kubernetes API, with the pod's ServiceAccount token (re-read on every call:
    projected tokens rotate)."""

    def __init__(self, api_url: str, sa_dir: str, name: str):
        self.sa = Path(sa_dir)
        self.namespace = (self.sa / "namespace").read_text().strip()
        self.url = f"{api_url.rstrip('/')}/api/v1/namespaces/{self.namespace}/secrets/{name}"
        self.name = name
        self.ssl = ssl.create_default_context(cafile=str(self.sa / "ca.crt"))

    def _headers(self) -> dict:
        token = (self.sa / "token").read_text().strip()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "qhub-ssh"}

    async def get(self, session: aiohttp.ClientSession) -> dict:
        async with session.get(self.url, headers=self._headers(), ssl=self.ssl) as r:
            if r.status == 404:
                raise HostKeyError(f"the Secret {self.namespace}/{self.name} does not exist; it belongs to the "
                                   "kubessh chart (`helm upgrade` recreates it)")
            if r.status != 200:
                raise HostKeyError(f"reading the Secret {self.namespace}/{self.name}: HTTP {r.status} "
                                   f"{(await r.text())[:300]}")
            return await r.json()

    async def put(self, session: aiohttp.ClientSession, obj: dict) -> bool:
        """Replace the Secret; False if someone changed it since `obj` was read (409 Conflict)."""
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
        async with session.put(self.url, headers=self._headers(), ssl=self.ssl, json=obj) as r:
            if r.status == 409:
                return False
            if r.status != 200:
                raise HostKeyError(f"storing the host key in the Secret {self.namespace}/{self.name}: HTTP "
                                   f"{r.status} {(await r.text())[:300]}")
            return True


async def from_secret(api_url: str, sa_dir: str, name: str) -> asyncssh.SSHKey:
    """The key stored in the Secret `name` of the pod's namespace, generated and stored there if it has none."""
    try:
        secret = KubeSecret(api_url, sa_dir, name)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            return await _stored_or_new(secret, session)
    except (OSError, aiohttp.ClientError) as e:  # ServiceAccount files missing, API unreachable
        raise HostKeyError(f"the Secret {name} cannot be read through the Kubernetes API {api_url}: {e}") from e


async def _stored_or_new(secret: KubeSecret, session: aiohttp.ClientSession) -> asyncssh.SSHKey:
    for _ in range(5):
        obj = await secret.get(session)
        stored = (obj.get("data") or {}).get(KEY_FIELD)
        if stored:
            return asyncssh.import_private_key(base64.b64decode(stored))
        obj["data"] = {**(obj.get("data") or {}), KEY_FIELD: base64.b64encode(_new_key_pem()).decode()}
        if await secret.put(session, obj):  # carries metadata.resourceVersion: refused if changed meanwhile
            log.info("generated a new SSH host key and stored it in the Secret %s", secret.name)
            return asyncssh.import_private_key(base64.b64decode(obj["data"][KEY_FIELD]))
    raise HostKeyError(f"the Secret {secret.namespace}/{secret.name} kept changing while storing the host key")
