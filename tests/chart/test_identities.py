"""Per-user uids and per-group gids as the chart's hub code computes them: the identities record, the folders the
hub prepares before a spawn, and the home init container each user pod gets (rendered with `helm template`; the
same code runs against the real API server in tests/cluster/test_jupyterhub_spawn.py and on the real node in
tests/node/test_files_groups.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jhrender import HUB_ONLY, find, helm_template, import_hub_modules, merge, render, secret_text, write_hub_files

pytestmark = pytest.mark.chart

GROUPS = {"analysts": {"gid": 3001, "users": ["alice"]}, "ops": {"gid": 3002}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    objs = render({"jupyterhub": {"groups": GROUPS}})
    tmp = tmp_path_factory.mktemp("hub")
    config_dir, secret_dir = write_hub_files(objs, tmp)
    mods = import_hub_modules(config_dir)
    values = yaml.safe_load((secret_dir / "values.yaml").read_text())
    settings = mods["qhub_hub_values"].HubSettings(values, secret_dir, tmp / "shared", "qhub")
    return {"objs": objs, "mods": mods, "settings": settings}


def test_uids_are_allocated_in_order_and_never_reused(hub: dict[str, Any]) -> None:
    ids = hub["mods"]["qhub_hub_identities"]
    first = ids.Record().with_users(["alice", "bob"], {"analysts": 3001})
    assert first is not None
    assert (first.users, first.serial, first.next_uid) == ({"alice": 100000, "bob": 100001}, 1, 100002)
    assert first.with_users(["bob", "alice"], {"analysts": 3001}) is None, "nothing new: no write"
    # a uid deleted from the record by hand is not handed out again
    record = ids.Record.parse(first.dump())
    del record.users["bob"]
    again = record.with_users(["carol", "bob"], {"analysts": 3001})
    assert again is not None and again.users == {"alice": 100000, "carol": 100002, "bob": 100003}
    # a record whose nextUid lags behind its users (edited by hand) still never repeats a uid
    lagging = json.dumps({"nextUid": 100000, "users": {"alice": 100000, "bob": 100007}})
    assert ids.Record.parse(lagging).next_uid == 100008
    # a changed group list is a change (serial bumped), user uids stay
    moved = first.with_users([], {"analysts": 3001, "ops": 3002})
    assert moved is not None and moved.serial == 2 and moved.users == first.users
    assert json.loads(moved.dump())["groups"] == {"analysts": 3001, "ops": 3002}


def test_user_and_group_ids_never_meet(hub: dict[str, Any]) -> None:
    """Group gids (explicit or derived) stay at or below 65000; user uids (and their private gids) start above."""
    ids = hub["mods"]["qhub_hub_identities"]
    assert ids.FIRST_UID > ids.MAX_GROUP_GID == 65000
    gids = hub["settings"].group_gids()
    assert gids["analysts"] == 3001 and all(1000 <= g <= ids.MAX_GROUP_GID for g in gids.values())
    derived = render({"jupyterhub": {"groups": {f"group-{i}": {} for i in range(50)}}})
    values = yaml.safe_load(secret_text(find(derived, "Secret", "qhub-hub"))["values.yaml"])
    assert all(10000 <= gid < 60000 for gid in values["groups"].values()) and len(values["groups"]) == 50
    refused = helm_template(merge(HUB_ONLY, {"jupyterhub": {"groups": {"big": {"gid": 100000}}}}), check=False)
    assert refused.returncode != 0 and "/groups/big/gid" in refused.stderr and "want 65,000" in refused.stderr


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y"])
def test_names_that_cannot_be_folders_are_refused(hub: dict[str, Any], name: str) -> None:
    ids = hub["mods"]["qhub_hub_identities"]
    with pytest.raises(ids.IdentityError):
        ids.check_name(name)


def test_hub_prepares_shared_folders_but_never_a_home(hub: dict[str, Any], tmp_path: Path) -> None:
    spawner = hub["mods"]["qhub_hub_spawner"]
    shared = tmp_path / "shared"
    shared.mkdir()
    spawner.prepare_dirs(shared, "alice", 100000, {"analysts": 3001}, readonly=True, conda=True)
    modes = {p: stat.S_IMODE((shared / p).stat().st_mode) for p in
             ("home", "shared", "shared/analysts", "conda-store", "conda-store/analysts")}
    assert modes == {"home": 0o1733, "shared": 0o711, "shared/analysts": 0o2770, "conda-store": 0o755,
                     "conda-store/analysts": 0o2750}
    assert (shared / "shared" / "analysts").stat().st_gid == 3001
    assert (shared / "conda-store" / "analysts").stat().st_gid == 3001
    assert not (shared / "home" / "alice").exists(), "the user's pod makes the home, as the user"
    assert (shared / "shared-readonly").is_dir()


def _as_uid(uid: int, gid: int, call: Any) -> int:
    """Run `call()` in a child process with `uid`/`gid` (as the hub's pod runs); its exit status (1: it raised)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            call()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_hub_keeps_a_conda_store_folder_the_kubelet_made(hub: dict[str, Any], tmp_path_factory: Any) -> None:
    """conda-store's pods mount conda-store/ before any spawn, so the kubelet makes it, as root: the hub (uid 1000)
    cannot chmod it, and keeps it when it lets everyone read it and the hub write in it; not when it is closed."""
    if os.geteuid() != 0:
        pytest.fail("this test makes folders as root for the hub's uid: run it as root (make test does)", pytrace=False)
    spawner = hub["mods"]["qhub_hub_spawner"]
    shared = Path(tempfile.mkdtemp(prefix="qhub-kubelet-"))  # pytest's own tmp folders are closed to uid 1000
    try:
        shared.chmod(0o777)
        (shared / "conda-store").mkdir(mode=0o777)
        (shared / "conda-store").chmod(0o777)  # what local-path's volume gives a subPath folder

        def prepare() -> None:
            spawner.prepare_dirs(shared, "alice", 100000, {"analysts": 3001}, readonly=False, conda=True)

        assert _as_uid(1000, 3001, prepare) == 0
        assert stat.S_IMODE((shared / "conda-store").stat().st_mode) == 0o777, "not the hub's to change"
        made = (shared / "conda-store" / "analysts").stat()
        assert (made.st_gid, stat.S_IMODE(made.st_mode)) == (3001, 0o2750)
        (shared / "conda-store").chmod(0o750)  # closed to the users' servers: the spawn must not go on
        assert _as_uid(1000, 3001, prepare) == 1
    finally:
        shutil.rmtree(shared)


def test_a_home_that_is_not_the_users_refuses_the_spawn(hub: dict[str, Any], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test gives folders to other uids: run it as root (make test does)", pytrace=False)
    spawner = hub["mods"]["qhub_hub_spawner"]
    from tornado import web

    shared = tmp_path / "shared"
    (shared / "home" / "alice").mkdir(parents=True)
    os.chown(shared / "home" / "alice", 1000, 100)  # a home from before per-user uids
    with pytest.raises(web.HTTPError) as legacy:
        spawner.prepare_dirs(shared, "alice", 100000, {}, readonly=False, conda=False)
    assert "qhubctl upgrade --homes" in legacy.value.log_message and legacy.value.status_code == 409
    os.chown(shared / "home" / "alice", 100005, 100005)
    with pytest.raises(web.HTTPError) as foreign:
        spawner.prepare_dirs(shared, "alice", 100000, {}, readonly=False, conda=False)
    assert "belongs to uid 100005" in foreign.value.log_message
    os.chown(shared / "home" / "alice", 100000, 100000)
    spawner.prepare_dirs(shared, "alice", 100000, {}, readonly=False, conda=False)


def test_home_init_container_runs_as_the_user_with_the_servers_image(hub: dict[str, Any]) -> None:
    spawner = hub["mods"]["qhub_hub_spawner"]
    init = spawner.home_init_container(hub["settings"], "alice", 100004, "reg/lab:1")
    assert init["name"] == "home" and init["image"] == "reg/lab:1"
    assert init["command"][:2] == ["python3", "-c"]
    sc = init["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (100004, 100004, True)
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert init["env"] == [{"name": "QHUB_HOME_NAME", "value": "alice"}]
    assert init["volumeMounts"] == [{"name": "shared", "mountPath": "/mnt/home", "subPath": "home"}]
    assert init["resources"]["requests"] and init["resources"]["limits"]
    # a copy per call: one user's settings never leak into the next pod
    assert spawner.home_init_container(hub["settings"], "bob", 100005, "x")["securityContext"]["runAsUser"] == 100005
    assert sc["runAsUser"] == 100004


def test_user_pods_have_no_fs_group_and_no_nfs_access_label(hub: dict[str, Any]) -> None:
    from traitlets.config import Config

    c = Config()
    hub["mods"]["qhub_hub_spawner"].configure_spawner(c, hub["settings"])
    ks = c.KubeSpawner
    assert ks.fs_gid is None, "an fsGroup would make the kubelet re-group the shared volume"
    assert "uid" not in ks and "gid" not in ks, "uid and gid are the user's, set per spawn"
    assert "qhub.dev/access-nfs" not in ks.extra_labels
    # files written in a group folder are the group's to edit: the server starts with umask 0002
    assert ks.cmd[:3] == ["sh", "-c", 'umask 0002 && exec jupyterhub-singleuser "$@"'] and ks.cmd[3] == "--"
    hub_pod = find(hub["objs"], "Deployment", "qhub-hub")["spec"]["template"]
    assert "qhub.dev/access-nfs" not in hub_pod["metadata"]["labels"]


def test_the_record_is_never_a_helm_object(hub: dict[str, Any]) -> None:
    """Helm must never own the uids: an upgrade with --force, a rollback or an uninstall would take them away."""
    everything = render({"jupyterhub": {"groups": GROUPS}}, base=merge(HUB_ONLY, {
        "dask-gateway": {"enabled": True}, "global": {"daskClusters": {"enabled": True}},
        "jupyterhub": {"hub": {"services": {"dask-gateway": {"enabled": True}}}}}))
    assert not [o for o in everything if o["metadata"]["name"] == "qhub-identities"]
    names = yaml.safe_load(secret_text(find(everything, "Secret", "qhub-hub"))["values.yaml"])["names"]
    assert names["identities"] == "qhub-identities"
    gateway = json.loads(find(everything, "ConfigMap", "qhub-dask-gateway-config")["data"]["gateway.json"])
    assert gateway["identities"] == {"configMap": "qhub-identities", "key": "identities.json"}
