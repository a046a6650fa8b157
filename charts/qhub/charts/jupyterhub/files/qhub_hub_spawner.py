"""User servers: KubeSpawner settings, profiles per node group, and the pre-spawn hook that prepares storage.

Every user's server runs as the user's own uid (allocated once and kept by qhub_hub_identities), with the uid as
primary gid and the gids of the user's configured groups as supplementary groups; no root anywhere, no fsGroup
(the kubelet would otherwise re-group the whole shared volume). The shared ReadWriteMany PVC holds home/<user>,
shared/<group>, shared-readonly/ and conda-store/; each server mounts only its own home, the folders of its
groups, and the read-only parts. Before the pod starts, the hub (uid 1000, mounting the same PVC at
$QHUB_SHARED_DIR, a supplementary member of every configured group) makes home/ (1733: anyone may add a folder,
nobody may list or remove another's), shared/ (0711) and each group folder (group gid, setgid, 2770); the pod's
first init container, running as the user, makes the home itself (0700, the user's uid), so no process ever needs
to give a file away.
"""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

from qhub_hub_identities import LEGACY_UID, IdentityStore, start_sync
from qhub_hub_setup import activity_interval
from qhub_hub_values import HubSettings
from tornado import web

# The uid the hub (and QHub's other services) run as, and so the owner of what the hub makes on the share.
SERVICE_UID = 1000
SERVICE_GID = 100
HOMES_MODE = 0o1733
SHARED_MODE = 0o711
GROUP_MODE = 0o2770
CONDA_ROOT_MODE = 0o755
CONDA_GROUP_MODE = 0o2750
PORT = 8888
SERVER_CMD = ["sh", "-c", 'umask 0002 && exec jupyterhub-singleuser "$@"', "--"]


def _access_labels() -> dict[str, str]:
    """NetworkPolicy access of user servers: proxy (also the hub API), gateway, conda-store; not the hub, and not
    the NFS server (the kubelet mounts the share; a pod never needs a network path to it)."""
    return {f"qhub.dev/access-{name}": "true" for name in ("proxy", "gateway", "conda-store")}


def dask_gateway_env(s: HubSettings) -> dict[str, str]:
    """Environment that makes dask_gateway.Gateway() work without arguments inside a user server."""
    proxy = f"{s.name('gatewayProxy')}.{s.namespace}"
    gateway = s.get("platformServices.dask-gateway") or {}  # the chart's global.services: its port and path
    port, path = gateway.get("port", 80), str(gateway.get("path", "/services/dask-gateway")).rstrip("/")
    return {
        "DASK_GATEWAY__ADDRESS": f"http://{proxy}:{port}{path}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{proxy}:8786",
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"{path}/",
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


def _own_dir(path: Path, mode: int, gid: int = -1) -> None:
    """mkdir `path` if missing, then give it `gid` and `mode` (the hub owns it, so no privilege is needed; as root
    outside Kubernetes - tests on a host - it also hands the folder to the service uid the hub runs as). A top
    folder someone else made is kept as it is when it already serves (`_serves`): the kubelet makes a subPath's
    folder, as root, for the first pod that mounts it (conda-store's pods mount conda-store/ before any spawn)."""
    path.mkdir(exist_ok=True)
    if gid == -1 and os.geteuid() not in (0, path.stat().st_uid) and _serves(path, mode):
        return
    if os.geteuid() == 0:
        os.chown(path, SERVICE_UID, SERVICE_GID if gid == -1 else gid)
    elif gid != -1:
        os.chown(path, -1, gid)
    path.chmod(mode)


def _serves(path: Path, mode: int) -> bool:
    """Whether a folder gives others at least what `mode` gives them, and lets the hub make folders in it."""
    others = mode & 0o007
    return stat.S_IMODE(path.stat().st_mode) & others == others and os.access(path, os.W_OK | os.X_OK)


def check_home(shared: Path, user: str, uid: int) -> None:
    """Refuse a spawn whose home exists but is not the user's (the pod's init container would stop it anyway,
    with less to go on)."""
    try:
        st = (shared / "home" / user).lstat()
    except FileNotFoundError:
        return  # the pod's init container makes it
    if not stat.S_ISDIR(st.st_mode):
        raise web.HTTPError(500, f"home/{user} on the shared volume is not a folder; an admin has to look at it")
    if st.st_uid == uid:
        return
    if st.st_uid == LEGACY_UID:
        raise web.HTTPError(409, f"the home folder of {user} still belongs to uid {LEGACY_UID}, which every user "
                                 f"had before QHub gave each user a uid of their own ({user}: {uid}); an admin runs "
                                 f"`qhubctl upgrade --homes` once to hand every home to its user")
    raise web.HTTPError(409, f"the home folder of {user} belongs to uid {st.st_uid}, not to {user}'s uid {uid}; an "
                             "admin has to look at it (was the identities ConfigMap restored from another backup "
                             "than the shared volume?)")


def prepare_dirs(shared: Path, user: str, uid: int, groups: dict[str, int], *, readonly: bool,
                 conda: bool) -> None:
    """The folders a user's server mounts, except the home itself: home/ (1733), shared/ (0711) and the user's
    group folders (gid, setgid 2770), conda-store/ and its group namespaces (gid, 2750: only members see a group's
    environments) when conda-store is mounted, shared-readonly/ when enabled."""
    check_home(shared, user, uid)
    _own_dir(shared / "home", HOMES_MODE)
    _own_dir(shared / "shared", SHARED_MODE)
    for group, gid in groups.items():
        _own_dir(shared / "shared" / group, GROUP_MODE, gid)
    if conda:
        _own_dir(shared / "conda-store", CONDA_ROOT_MODE)
        for group, gid in groups.items():
            _own_dir(shared / "conda-store" / group, CONDA_GROUP_MODE, gid)
    if readonly:
        (shared / "shared-readonly").mkdir(exist_ok=True)


def conda_mounted(s: HubSettings) -> bool:
    """Whether user servers mount conda-store's environments."""
    return bool(s.get("singleuser.storage.condaStore.enabled") and s.get("hub.services.conda-store.enabled"))


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
    if conda_mounted(s):
        mounts.append({"name": "shared", "mountPath": "/opt/conda-store", "subPath": "conda-store", "readOnly": True})
    return volumes, mounts


def identity_store(s: HubSettings) -> IdentityStore:
    """The record of users' uids (ConfigMap <release>-identities), with the configured groups' gids."""
    labels = {
        "app.kubernetes.io/name": "jupyterhub",
        "app.kubernetes.io/instance": s.name("release"),
        "app.kubernetes.io/component": "identities",
        "app.kubernetes.io/part-of": "qhub",
        "app.kubernetes.io/managed-by": "jupyterhub",
    }
    return IdentityStore(s.namespace, s.name("identities"), s.group_gids(), labels)


def home_init_container(s: HubSettings, user: str, uid: int, image: str) -> dict[str, Any]:
    """The chart's home init container (qhub.homeInitContainer) for one user's pod."""
    container = copy.deepcopy(s.get("homeInit"))
    container["image"] = image
    container["env"] = [{"name": "QHUB_HOME_NAME", "value": user}]
    container["securityContext"].update({"runAsUser": uid, "runAsGroup": uid})
    for mount in container["volumeMounts"]:
        mount["name"] = "shared"
    return container


def make_pre_spawn_hook(s: HubSettings, store: IdentityStore) -> Any:
    """Hook run by the hub before each spawn: the user's uid, folders on disk, then the matching identity, mounts
    and groups in the pod."""
    gids = s.group_gids()
    readonly = bool(s.get("singleuser.storage.sharedReadonly.enabled"))
    conda = conda_mounted(s)

    async def pre_spawn_hook(spawner: Any) -> None:
        user = spawner.user.name
        groups = sorted(g.name for g in spawner.user.groups if g.name in gids)
        mine = {g: gids[g] for g in groups}
        uid = (await store.ensure([user]))[user]
        try:
            prepare_dirs(s.shared_dir, user, uid, mine, readonly=readonly, conda=conda)
        except OSError as exc:
            raise web.HTTPError(500, f"cannot prepare {user}'s folders on the shared volume ({exc}); the hub (uid "
                                     f"{SERVICE_UID}) must be able to write the volume's top folder") from None
        spawner.uid = uid
        spawner.gid = uid  # a private group per user, in the user range: never a configured group's gid
        spawner.supplemental_gids = sorted(mine.values())
        spawner.volumes, spawner.volume_mounts = storage_for(s, user, groups)
        spawner.working_dir = f"/home/{user}"
        spawner.environment = {**spawner.environment, "HOME": f"/home/{user}", "USER": user}

    return pre_spawn_hook


def make_modify_pod_hook(s: HubSettings) -> Any:
    """Hook run on the finished pod manifest: the home init container goes first, made as the user with the
    server's own image (chosen by the profile, so known only here)."""

    def modify_pod_hook(spawner: Any, pod: Any) -> Any:
        from kubernetes_asyncio.client import V1Container
        from kubespawner.utils import get_k8s_model

        init = home_init_container(s, spawner.user.name, int(spawner.uid), pod.spec.containers[0].image)
        pod.spec.init_containers = [get_k8s_model(V1Container, init), *(pod.spec.init_containers or [])]
        return pod

    return modify_pod_hook


def configure_spawner(c: Any, s: HubSettings) -> None:
    """KubeSpawner: hardened pods in the release namespace, profiles, env, storage hook."""
    su = s.get("singleuser") or {}
    ks = c.KubeSpawner
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    ks.namespace = s.namespace
    ks.image = su["image"]
    ks.image_pull_secrets = list(su.get("imagePullSecrets") or [])
    # umask 0002: what a user writes in a group folder (setgid, 2770) is writable by the group; nothing else opens
    # up, since homes are 0700 and a user's primary group is their own private gid. KubeSpawner appends its
    # arguments, which "$@" passes on.
    ks.cmd = SERVER_CMD
    ks.port = PORT
    ks.default_url = su.get("defaultUrl", "/lab")
    ks.start_timeout = int(su.get("startTimeout", 900))
    ks.http_timeout = int(su.get("httpTimeout", 120))
    # User servers call the hub API through the proxy: their NetworkPolicy admits the proxy, not the hub.
    ks.hub_connect_url = f"http://{s.name('proxyPublic')}.{s.namespace}:80"
    # uid, gid and supplementary groups are the user's, set per spawn by the pre-spawn hook; no fsGroup
    ks.fs_gid = None
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
    env: dict[str, str] = {}
    if (s.get("cull") or {}).get("enabled"):
        # each server tells the hub of its activity (kernels, terminals, API calls) as often as the culler needs
        env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(activity_interval(s.get("cull") or {}))
    env.update({str(k): str(v) for k, v in (su.get("extraEnv") or {}).items()})
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
    store = identity_store(s)
    ks.pre_spawn_hook = guard_profiles(profiles, make_pre_spawn_hook(s, store))
    ks.modify_pod_hook = make_modify_pod_hook(s)
    start_sync(store)
