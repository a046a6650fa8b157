"""Step-by-step migrations of older config files to the current schema_version.

Each step rewrites the ruamel round-trip data in place (comments stay where their keys stay) and returns one
line per change for the user. Add a step `_vN_to_vN1` and register it in STEPS when the format changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruamel.yaml.comments import CommentedMap

from qhubctl.config.model import SCHEMA_VERSION
from qhubctl.errors import ConfigError

Step = Callable[[CommentedMap], list[str]]


def _rename(data: CommentedMap, old: str, new: str) -> bool:
    """Rename a key keeping its position and comments."""
    if old not in data:
        return False
    pos = list(data.keys()).index(old)
    value = data.pop(old)
    data.insert(pos, new, value)
    return True


def _move_provider_block(data: CommentedMap, changes: list[str]) -> None:
    provider = data.get("provider")
    if not isinstance(provider, str):
        raise ConfigError("provider: missing in a schema_version 1 file", hint="add provider: aws|gcp|azure|...")
    aliases = {"do": "digitalocean", "kind": "local", "azure": "azure"}
    provider = aliases.get(provider, provider)
    block = data.pop(f"{data['provider']}", None)
    if block is None:
        block = data.pop(provider, None)
    cluster = block if isinstance(block, CommentedMap) else CommentedMap(block or {})
    cluster.insert(0, "provider", provider)  # the old block itself, so its comments stay
    pos = list(data.keys()).index("provider")
    del data["provider"]
    data.insert(pos, "cluster", cluster)
    changes.append(f"provider: {provider} and its `{provider}:` block moved into `cluster:` (cluster.provider)")


def _node_groups(data: CommentedMap, changes: list[str]) -> None:
    for name, group in (data.get("node_groups") or {}).items():
        if isinstance(group, dict) and _rename(group, "instance", "instance_type"):
            changes.append(f"node_groups.{name}.instance renamed to instance_type")


def _security(data: CommentedMap, changes: list[str]) -> None:
    security = data.pop("security", None)
    if security is None:
        return
    auth = CommentedMap()
    authn = dict(security.get("authentication") or {"type": "password"})
    kind = {"password": "native", "GitHub": "github", "github": "github", "custom": "oidc", "oidc": "oidc"}.get(
        str(authn.get("type")), None)
    if kind is None:
        raise ConfigError(f"security.authentication.type: {authn.get('type')!r} has no equivalent",
                          hint="use password, github or oidc before upgrading")
    auth["type"] = kind
    config = authn.get("config") or {}
    for key in ("client_id", "issuer_url", "allowed_organizations"):
        if key in config:
            auth[key] = config[key]
    if kind in ("github", "oidc"):
        auth["client_secret"] = {"secretRef": {"name": f"{data.get('project_name', 'qhub')}-auth", "key": "client-secret"}}
        changes.append("auth.client_secret now comes from a Secret (or QHUB_SECRET__auth__client_secret); "
                       "create it before deploying - the old in-file secret was dropped")
    for key in ("users", "groups", "admins"):
        if key in security:
            auth[key] = security[key]
    for user in (auth.get("users") or {}).values():
        if isinstance(user, dict):
            groups = [user.get("primary_group"), *(user.get("secondary_groups") or [])]
            for old in ("uid", "password", "primary_group", "secondary_groups"):
                user.pop(old, None)
            if any(groups):
                user["groups"] = [g for g in groups if g]
    data["auth"] = auth
    changes.append(f"security moved to auth (authentication type {authn.get('type')} -> {kind})")


def _profiles(data: CommentedMap, changes: list[str]) -> None:
    profiles = data.get("profiles") or {}
    lab = profiles.get("jupyterlab") or []
    for i, prof in enumerate(lab):
        over = prof.pop("kubespawner_override", None) or {}
        prof.insert(0, "name", _slug(prof.get("display_name", f"profile-{i}")))
        if over:
            prof["cpu"] = {"guarantee": over.get("cpu_guarantee", 1), "limit": over.get("cpu_limit", 2)}
            prof["memory"] = {"guarantee": _binary(over.get("mem_guarantee", "4G")),
                              "limit": _binary(over.get("mem_limit", "8G"))}
            if "image" in over:
                prof["image"] = over["image"]
    if lab:
        changes.append("profiles.jupyterlab: kubespawner_override became cpu/memory/image and each got a name")
    dask = profiles.get("dask_worker")
    if isinstance(dask, dict):
        items = []
        for display, spec in dask.items():
            items.append({
                "name": _slug(display), "display_name": display,
                "cores": spec.get("worker_cores_limit", spec.get("worker_cores", 1)),
                "memory": _binary(spec.get("worker_memory_limit", spec.get("worker_memory", "4G"))),
                "threads": spec.get("worker_threads", 1),
            })
        profiles["dask_worker"] = items
        changes.append("profiles.dask_worker: the mapping by display name became a list of named profiles "
                       "(cores/memory from the *_limit values; per-worker images were dropped)")


def _storage_and_tls(data: CommentedMap, changes: list[str]) -> None:
    storage = data.get("storage")
    if isinstance(storage, dict) and _rename(storage, "shared_filesystem", "size"):
        changes.append("storage.shared_filesystem renamed to storage.size")
    cert = data.pop("certificate", None)
    if cert is not None:
        kind = cert.get("type")
        tls: dict[str, Any] = {"type": "none"}
        if kind == "existing":
            tls = {"type": "secret", "secret_name": cert.get("secret_name")}
        elif kind in ("lets-encrypt", "cert-manager"):
            tls = {"type": "cert-manager", "issuer": cert.get("issuer", "letsencrypt")}
        data["tls"] = tls
        changes.append(f"certificate ({kind}) became tls ({tls['type']})")


def _binary(quantity: Any) -> Any:
    """Old KubeSpawner sizes ('8G' meant GiB) as Kubernetes binary quantities ('8Gi')."""
    text = str(quantity)
    return text + "i" if re.fullmatch(r"[0-9.]+[KMGT]", text) else quantity


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:32].strip("-")
    return slug if slug and slug[0].isalpha() else f"p-{slug}"[:32]


def _v1_to_v2(data: CommentedMap) -> list[str]:
    changes: list[str] = []
    _move_provider_block(data, changes)
    _node_groups(data, changes)
    _security(data, changes)
    _profiles(data, changes)
    _storage_and_tls(data, changes)
    for old in ("qhub_version", "default_images", "ci_cd", "terraform_state"):
        if data.pop(old, None) is not None:
            changes.append(f"{old} removed (no longer used)")
    return changes


STEPS: dict[int, Step] = {1: _v1_to_v2}


def migrate(data: CommentedMap) -> tuple[int, list[str]]:
    """Bring `data` to SCHEMA_VERSION in place. Returns the starting version and the change lines."""
    start = data.get("schema_version", 1)
    if not isinstance(start, int) or start < 1:
        raise ConfigError(f"schema_version: {start!r} is not a version number", hint="set it to 1 or later")
    if start > SCHEMA_VERSION:
        raise ConfigError(f"schema_version: {start} is newer than this qhubctl ({SCHEMA_VERSION})",
                          hint="upgrade qhubctl")
    changes: list[str] = []
    for version in range(start, SCHEMA_VERSION):
        step_changes = STEPS[version](data)
        changes += [f"[{version} -> {version + 1}] {line}" for line in step_changes]
        if "schema_version" in data:
            data["schema_version"] = version + 1
        else:
            data.insert(0, "schema_version", version + 1)
    return start, changes


def upgrade_file(path: Any) -> tuple[int, list[str], Any]:
    """Migrate the file at `path` in place, keeping a backup `<file>.v<old>.backup`.

    Returns (old version, change lines, backup path or None when the file was already current). The result is
    validated before anything is written, so a failed migration leaves the file untouched.
    """
    from pathlib import Path

    from qhubctl.config.loader import dump_yaml, load_raw, parse_config

    path = Path(path)
    data = load_raw(path)  # a missing, unreadable or empty file is a ConfigError naming it
    original = path.read_text()
    start, changes = migrate(data)
    if start == SCHEMA_VERSION:
        return start, [], None
    parse_config(data, source=f"{path} (migrated)", environ={})
    backup = path.with_name(f"{path.name}.v{start}.backup")
    backup.write_text(original)
    path.write_text(dump_yaml(data))
    return start, changes, backup

