"""User servers: KubeSpawner settings, profiles per node group, and the pre-spawn hook that prepares storage.

Every user server runs as uid 1000, gid 100 (no root anywhere). The shared ReadWriteMany PVC holds
home/<user>, shared/<group>, shared-readonly/ and conda-store/; each server mounts only its own home, the
folders of its groups, and the read-only parts. The hub creates the folders before the pod starts: it mounts
the same PVC at $QHUB_SHARED_DIR and is a supplementary member of every configured group, so it can give group
folders their group and the setgid bit (mode 2770) without root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qhub_hub_values import HubSettings
from tornado import web

UID = 1000
GID = 100
HOME_MODE = 0o750
GROUP_MODE = 0o2770
PORT = 8888


def _access_labels() -> dict[str, str]:
    """NetworkPolicy access of user servers: proxy (also the hub API), gateway, conda-store, NFS; not the hub."""
    return {f"qhub.dev/access-{name}": "true" for name in ("proxy", "gateway", "conda-store", "nfs")}


def dask_gateway_env(s: HubSettings) -> dict[str, str]:
    """Environment that makes dask_gateway.Gateway() work without arguments inside a user server."""
    proxy = f"{s.name('gatewayProxy')}.{s.namespace}"
    return {
        "DASK_GATEWAY__ADDRESS": f"http://{proxy}:80/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{proxy}:8786",
        "DASK_GATEWAY__PUBLIC_ADDRESS": "/services/dask-gateway/",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def allowed_groups(p: dict[str, Any], gpu_group: str) -> list[str]:
    """Groups whose members may pick a `singleuser.profiles` entry; empty: everyone. A profile that requests GPUs
    and names no groups belongs to `gpu_group` (singleuser.gpuGroup) unless its allowAll opens it to every user."""
    groups = [str(g) for g in p.get("groups") or []]
    if groups or p.get("allowAll") or not int(p.get("gpus") or 0):
        return groups
    return [gpu_group]


def profile_entry(slug: str, p: dict[str, Any], placement: dict[str, Any], gpu_group: str) -> dict[str, Any]:
    """One KubeSpawner profile: sizes, image and node-group placement of a `singleuser.profiles` entry."""
    where = placement[p["nodeGroup"]]
    override: dict[str, Any] = {
        "image": p["image"],
        "cpu_guarantee": float(p["cpu"]["guarantee"]),
        "cpu_limit": float(p["cpu"]["limit"]),
        "mem_guarantee": str(p["memory"]["guarantee"]),
        "mem_limit": str(p["memory"]["limit"]),
        "node_selector": dict(where.get("nodeSelector") or {}),
        "tolerations": list(where.get("tolerations") or []),
    }
    gpus = int(p.get("gpus") or 0)
    if gpus:
        override["extra_resource_guarantees"] = {"nvidia.com/gpu": str(gpus)}
        override["extra_resource_limits"] = {"nvidia.com/gpu": str(gpus)}
    return {
        "slug": slug,
        "display_name": p.get("displayName") or slug,
        "description": p.get("description", ""),
        "default": bool(p.get("default")),
        "kubespawner_override": override,
        "qhub_groups": allowed_groups(p, gpu_group),
    }


def build_profiles(s: HubSettings) -> list[dict[str, Any]]:
    """All enabled profiles, the default first, then by slug."""
    placement = s.get("placement") or {}
    raw = s.get("singleuser.profiles") or {}
    gpu_group = str(s.get("singleuser.gpuGroup"))
    entries = [profile_entry(slug, p, placement, gpu_group) for slug, p in raw.items()]
    return sorted(entries, key=lambda e: (not e["default"], e["slug"]))


def visible_profiles(profiles: list[dict[str, Any]], user_groups: set[str]) -> list[dict[str, Any]]:
    """Profiles a user may choose: those without a group restriction and those of the user's groups."""
    visible = []
    for entry in profiles:
        allowed = set(entry["qhub_groups"])
        if allowed and not allowed & user_groups:
            continue
        visible.append({k: v for k, v in entry.items() if k != "qhub_groups"})
    if visible and not any(e["default"] for e in visible):
        visible[0] = {**visible[0], "default": True}
    return visible


def guard_profiles(profiles: list[dict[str, Any]], hook: Any) -> Any:
    """Wrap a pre-spawn hook so that a user whom no profile is open to cannot spawn at all (KubeSpawner would start
    such a user with the class defaults). A profile the user may not see is refused by KubeSpawner itself: it picks
    the requested slug from the same per-user list, or fails with "No such profile"."""

    def pre_spawn_hook(spawner: Any) -> Any:
        user = spawner.user
        if profiles and not visible_profiles(profiles, {g.name for g in user.groups}):
            groups = sorted({g for p in profiles for g in p["qhub_groups"]})
            raise web.HTTPError(403, f"no server profile is open to {user.name}: every profile is limited to "
                                     f"groups {user.name} is not in; an admin can add {user.name} to one of "
                                     f"{', '.join(groups)}")
        return hook(spawner)

    return pre_spawn_hook


def prepare_dirs(shared: Path, user: str, groups: dict[str, int], readonly: bool) -> None:
    """Create home/<user> and shared/<group> (group-owned, setgid 2770) on the shared filesystem."""
    as_root = os.geteuid() == 0
    home = shared / "home" / user
    home.mkdir(parents=True, exist_ok=True)
    if as_root:  # only outside Kubernetes (tests on a host); the hub pod runs as uid 1000 and owns what it makes
        os.chown(home, UID, GID)
    home.chmod(HOME_MODE)
    for group, gid in groups.items():
        folder = shared / "shared" / group
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, UID if as_root else -1, gid)
        folder.chmod(GROUP_MODE)
    if readonly:
        (shared / "shared-readonly").mkdir(parents=True, exist_ok=True)


def storage_for(s: HubSettings, user: str, groups: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts of one user's server: home, group folders and the read-only shares."""
    volumes = [{"name": "shared", "persistentVolumeClaim": {"claimName": s.name("sharedPvc")}}]
    mounts = [{"name": "shared", "mountPath": f"/home/{user}", "subPath": f"home/{user}"}]
    for group in groups:
        mounts.append({"name": "shared", "mountPath": f"/shared/{group}", "subPath": f"shared/{group}"})
    readonly = s.get("singleuser.storage.sharedReadonly") or {}
    if readonly.get("enabled"):
        path = readonly.get("mountPath", "/shared-readonly")
        mounts.append({"name": "shared", "mountPath": path, "subPath": "shared-readonly", "readOnly": True})
    conda = s.get("singleuser.storage.condaStore.enabled") and s.get("hub.services.conda-store.enabled")
    if conda:
        mounts.append({"name": "shared", "mountPath": "/opt/conda-store", "subPath": "conda-store", "readOnly": True})
    return volumes, mounts


def make_pre_spawn_hook(s: HubSettings) -> Any:
    """Hook run by the hub before each spawn: folders on disk, then the matching mounts and groups in the pod."""
    gids = s.group_gids()
    readonly = bool(s.get("singleuser.storage.sharedReadonly.enabled"))

    def pre_spawn_hook(spawner: Any) -> None:
        user = spawner.user.name
        groups = sorted(g.name for g in spawner.user.groups if g.name in gids)
        mine = {g: gids[g] for g in groups}
        prepare_dirs(s.shared_dir, user, mine, readonly)
        spawner.volumes, spawner.volume_mounts = storage_for(s, user, groups)
        spawner.supplemental_gids = sorted(mine.values())
        spawner.working_dir = f"/home/{user}"
        spawner.environment = {**spawner.environment, "HOME": f"/home/{user}", "USER": user}

    return pre_spawn_hook


def configure_spawner(c: Any, s: HubSettings) -> None:
    """KubeSpawner: hardened pods in the release namespace, profiles, env, storage hook."""
    su = s.get("singleuser") or {}
    ks = c.KubeSpawner
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    ks.namespace = s.namespace
    ks.image = su["image"]
    ks.image_pull_secrets = list(su.get("imagePullSecrets") or [])
    ks.cmd = ["jupyterhub-singleuser"]
    ks.port = PORT
    ks.default_url = su.get("defaultUrl", "/lab")
    ks.start_timeout = int(su.get("startTimeout", 900))
    ks.http_timeout = int(su.get("httpTimeout", 120))
    # User servers call the hub API through the proxy: their NetworkPolicy admits the proxy, not the hub.
    ks.hub_connect_url = f"http://{s.name('proxyPublic')}.{s.namespace}:80"
    ks.uid = UID
    ks.gid = GID
    ks.fs_gid = GID
    ks.allow_privilege_escalation = False
    ks.container_security_context = {"capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    ks.pod_security_context = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    ks.automount_service_account_token = False
    ks.storage_pvc_ensure = False
    ks.component_label = "singleuser"
    ks.common_labels = {
        "app.kubernetes.io/name": "jupyterhub",
        "app.kubernetes.io/instance": s.name("release"),
        "app.kubernetes.io/part-of": "qhub",
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    ks.extra_labels = _access_labels()
    env = {str(k): str(v) for k, v in (su.get("extraEnv") or {}).items()}
    if s.get("hub.services.dask-gateway.enabled"):
        env.update(dask_gateway_env(s))
    ks.environment = env
    profiles = build_profiles(s)
    # sizes and placement even when a spawn names no profile: from a profile open to everyone (KubeSpawner merges
    # a chosen profile's dicts into these, so a group-only profile's GPU requests must never be the base)
    open_to_all = [p for p in profiles if not p["qhub_groups"]]
    default = next((p for p in open_to_all if p["default"]), open_to_all[0] if open_to_all else None)
    if default:
        for trait, value in default["kubespawner_override"].items():
            setattr(ks, trait, value)

    def profile_list(spawner: Any) -> list[dict[str, Any]]:
        return visible_profiles(profiles, {g.name for g in spawner.user.groups})

    ks.profile_list = profile_list
    ks.pre_spawn_hook = guard_profiles(profiles, make_pre_spawn_hook(s))
