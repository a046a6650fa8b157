"""`qhubctl upgrade --homes`: the program its Job runs (qhubctl.migrate_homes, on real folders given to real uids, so
it needs root like `make test`) and the Job qhubctl builds for it (qhubctl.homes). The Job itself runs on the real
node in tests/node/test_files_groups.py."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from qhubctl import homes, migrate_homes

pytestmark = pytest.mark.unit

UIDS = {"alice": 100000, "bob": 100001, "dave": 100003}
GIDS = {"analysts": 3001}


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def legacy(path: Path) -> Path:
    os.chown(path, 1000, 100, follow_symlinks=False)
    return path


def hub_file(share: Path) -> Path:
    """A file of the hub's on the share (uid 1000 then and now), 0600."""
    db = share / "hub" / "jupyterhub.sqlite"
    db.parent.mkdir()
    db.write_text("the hub's database")
    db.chmod(0o600)
    legacy(db.parent)
    return legacy(db)


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """A shared filesystem as it was before per-user uids: everything of uid 1000 (gid 100)."""
    if os.geteuid() != 0:
        pytest.fail("these tests give files to other uids: run them as root (make test does)", pytrace=False)
    root = tmp_path / "share"
    files = ["home/alice/notes.ipynb", "home/alice/deep/er/still/data.csv", "home/alice/.ssh/id_ed25519",
             "home/bob/x.py", "home/ghost/secret.txt", "home/dave/mine.txt", "shared/analysts/report.md",
             "shared/analysts/sub/table.csv"]
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "home" / "alice" / ".ssh" / "id_ed25519").chmod(0o600)
    (root / "home" / "alice" / "to-ghost").symlink_to(root / "home" / "ghost")  # must not be followed
    (root / "home" / "alice" / "etc").symlink_to("/etc")
    (root / "home" / "stray-file").write_text("not a home")
    for path in [root, *root.rglob("*")]:
        os.chown(path, 1000, 100, follow_symlinks=False)
    os.chown(root / "home" / "alice" / "notes.ipynb", 5000, 5000)  # not from the shared uid: left alone
    os.chown(root / "home" / "dave", 100003, 100003)  # a home already its user's
    os.chown(root / "shared" / "analysts", 1000, 3001)
    (root / "shared" / "analysts" / "report.md").chmod(0o644)
    return root


def test_homes_go_to_their_users_and_nothing_else_moves(share: Path) -> None:
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    alice = share / "home" / "alice"
    assert owner(alice) == (100000, 100000) and stat.S_IMODE(alice.stat().st_mode) == 0o700
    for rel in ("deep/er/still/data.csv", "deep/er", ".ssh/id_ed25519", "to-ghost", "etc"):
        assert owner(alice / rel) == (100000, 100000), rel
    assert stat.S_IMODE((alice / ".ssh" / "id_ed25519").stat().st_mode) == 0o600, "modes are kept"
    assert owner(alice / "notes.ipynb") == (5000, 5000), "only what uid 1000 owned changes hands"
    assert owner(share / "home" / "bob" / "x.py") == (100001, 100001)
    # ghost has no uid: its home stays as it was, even though alice's symlink points into it
    ghost = share / "home" / "ghost"
    assert owner(ghost) == (1000, 100) and owner(ghost / "secret.txt") == (1000, 100)
    assert owner(Path("/etc/passwd")) == (0, 0)
    assert stat.S_IMODE((share / "home").stat().st_mode) == 0o1733
    assert report["migrated"] == {"alice": {"uid": 100000, "entries": 9}, "bob": {"uid": 100001, "entries": 2}}
    assert report["noUid"] == ["ghost"] and report["already"] == ["dave"] and report["notFolder"] == ["stray-file"]
    assert report["multiLink"] == {"count": 0, "paths": []} and report["devices"] == {"count": 0, "paths": []}
    # group folders: what the shared uid wrote stays its, but every member may now write it
    shared = share / "shared" / "analysts"
    assert owner(shared / "report.md") == (1000, 3001) and stat.S_IMODE((shared / "report.md").stat().st_mode) == 0o664
    assert stat.S_IMODE((shared / "sub").stat().st_mode) & 0o2070 == 0o2070
    assert report["groups"] == {"analysts": 3}
    # a second run has nothing left to do
    again = migrate_homes.migrate(str(share), UIDS, GIDS)
    assert again["migrated"] == {} and sorted(again["already"]) == ["alice", "bob", "dave"]


def test_a_home_owned_by_someone_else_is_reported_not_taken(share: Path) -> None:
    os.chown(share / "home" / "bob", 100007, 100007)
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    assert report["otherOwner"] == {"bob": 100007}
    assert owner(share / "home" / "bob" / "x.py") == (1000, 100)


def test_the_jobs_script_runs_on_its_own(share: Path, tmp_path: Path) -> None:
    """What the Job gets: the module's source and the record, runnable with nothing but Python's standard library."""
    cm = homes.script_configmap("qhub-migrate-homes", {"users": UIDS, "groups": GIDS})
    script, record = tmp_path / "migrate_homes.py", tmp_path / "identities.json"
    script.write_text(cm["data"]["migrate_homes.py"])
    record.write_text(cm["data"]["identities.json"])
    out = subprocess.run([sys.executable, "-I", "-S", str(script), "--root", str(share), "--identities", str(record)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    reported = json.loads(out.stdout.strip().splitlines()[-1])
    assert reported["migrated"]["alice"]["uid"] == 100000 and reported["multiLink"] == {"count": 0, "paths": []}
    assert owner(share / "home" / "alice") == (100000, 100000)


@pytest.mark.parametrize("nfs", [False, True])
def test_the_job_is_root_with_four_capabilities_and_no_token(nfs: bool) -> None:
    where = (homes.Target("qhub", "qhub-nfs-data", sub_path="export", node="node-7") if nfs else
             homes.Target("qhub", "qhub-shared", placement={"nodeSelector": {"qhub.dev/node-group": "general"}}))
    job = homes.job_manifest("qhub-migrate-homes", "reg/qhub/jupyterhub:1", where)
    kubernetes_validate.validate({**job, "metadata": {**job["metadata"], "namespace": "qhub"}}, "1.35.0", strict=True)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]
    share = next(m for m in c["volumeMounts"] if m["name"] == "share")
    claim = next(v for v in pod["volumes"] if v["name"] == "share")["persistentVolumeClaim"]["claimName"]
    if nfs:  # on the NFS server's own disk, next to the server (ReadWriteOnce)
        assert (claim, share["subPath"], pod["nodeName"]) == ("qhub-nfs-data", "export", "node-7")
    else:
        assert claim == "qhub-shared" and "subPath" not in share and "nodeName" not in pod
        assert pod["nodeSelector"] == {"qhub.dev/node-group": "general"}


NOTHING_LEFT = {"multiLink": {"count": 0, "paths": []}, "devices": {"count": 0, "paths": []}}


def test_summary_names_what_was_left() -> None:
    lines = homes.summary({"migrated": {"alice": {"uid": 100000, "entries": 4}}, "already": ["dave"],
                           "noUid": ["ghost"], "otherOwner": {"bob": 7}, "notFolder": [], "groups": {"analysts": 2},
                           **NOTHING_LEFT})
    assert lines == ["home/alice: given to uid 100000 (4 entries)", "home/dave: already its user's",
                     "home/ghost: left owned by 1000 - no hub user of that name has a uid",
                     "home/bob: left alone - owned by uid 7, not 1000",
                     "shared/analysts: 2 entries from before opened to the group"]
    empty = {"migrated": {}, "already": [], "noUid": [], "otherOwner": {}, "notFolder": [], "groups": {},
             **NOTHING_LEFT}
    assert homes.summary(empty) == ["nothing to migrate: no home or group folder from before per-user uids"]


def test_summary_says_what_was_left_to_check_and_how() -> None:
    report = {"migrated": {"alice": {"uid": 100000, "entries": 4}}, "already": [], "noUid": [], "otherOwner": {},
              "notFolder": [], "groups": {},
              "multiLink": {"count": 3, "paths": ["home/alice/bobs", "home/bob/x.py"]},
              "devices": {"count": 1, "paths": ["home/alice/null"]}}
    lines = homes.summary(report)
    assert lines[0] == "home/alice: given to uid 100000 (4 entries)"
    assert lines[1] == ("3 names of files with a link outside their home or group folder were left to you to check "
                        "(still uid 1000's, mode unchanged): home/alice/bobs, home/bob/x.py and 1 more")
    assert lines[2].startswith("why and what to do: ")
    assert "a file whose links are all inside one home (or one group folder) was handed over" in lines[2]
    assert "`find home/<user> -links +1 -user 1000 -ls`" in lines[2] and "-inum <inode>" in lines[2]
    assert lines[3].startswith("1 device files of uid 1000 were left as they were") and lines[3].endswith(
        ": home/alice/null")
    assert len(lines) == 4


@pytest.mark.parametrize("attacker", ["alice", "zoe"])  # her home walked before bob's, and after
def test_a_hard_link_to_another_users_or_the_hubs_file_is_never_handed_over(share: Path, attacker: str) -> None:
    """Before per-user uids anyone could link anything of uid 1000 into their home; the migration must not give
    bob's file or the hub's to whoever linked it: it leaves them at 1000, modes unchanged, and names every link.
    Next to them in the same home, a file and a symlink whose links are all in that home are hers."""
    home = share / "home" / attacker
    home.mkdir(exist_ok=True)
    legacy(home)
    bobs, db = share / "home" / "bob" / "x.py", hub_file(share)
    bobs.chmod(0o640)
    os.link(bobs, home / "bobs.py")
    os.link(db, home / "db")
    (home / "mine.txt").write_text("hers")
    legacy(home / "mine.txt")
    (home / "twice").write_text("one file, two names in one home")
    os.link(legacy(home / "twice"), home / "twice-too")
    os.symlink("/etc/shadow", home / "ln")
    os.link(legacy(home / "ln"), home / "ln-too", follow_symlinks=False)  # a symlink's inode hard-linked

    report = migrate_homes.migrate(str(share), {**UIDS, "zoe": 100009}, GIDS)

    uid = {"alice": 100000, "zoe": 100009}[attacker]
    for path in (bobs, home / "bobs.py"):
        assert owner(path) == (1000, 100) and mode(path) == 0o640, path
    for path in (db, home / "db"):
        assert owner(path) == (1000, 100) and mode(path) == 0o600, path
    for name in ("twice", "twice-too", "ln", "ln-too"):
        assert owner(home / name) == (uid, uid), name
    assert mode(home / "twice") == 0o644
    assert owner(home / "mine.txt") == (uid, uid) and owner(home) == (uid, uid) and mode(home) == 0o700
    assert owner(share / "home" / "alice" / "deep" / "er" / "still" / "data.csv") == (100000, 100000)
    assert owner(share / "home" / "bob") == (100001, 100001), "bob's home is still handed over"
    assert report["multiLink"]["count"] == 3
    assert sorted(report["multiLink"]["paths"]) == sorted([f"home/{attacker}/bobs.py", f"home/{attacker}/db",
                                                           "home/bob/x.py"])
    # what was handed over before (9 entries in alice's home, the home alone in zoe's), mine.txt, twice and ln
    assert report["migrated"][attacker]["entries"] == {"alice": 12, "zoe": 4}[attacker]


def test_links_all_inside_one_home_are_handed_over_and_not_reported(share: Path) -> None:
    """What a conda environment or `git clone --local` leaves in a home: files with several names, all in it."""
    bob = share / "home" / "bob"
    pkg = bob / "conda" / "pkgs" / "lib-1.0" / "lib.so"
    pkg.parent.mkdir(parents=True)
    pkg.write_text("a library")
    pkg.chmod(0o755)
    for env in ("a", "b"):
        (bob / "conda" / "envs" / env / "lib").mkdir(parents=True)
        os.link(pkg, bob / "conda" / "envs" / env / "lib" / "lib.so")
    os.link(bob / "x.py", bob / "x-clone.py")
    for path in [bob / "conda", *(bob / "conda").rglob("*")]:
        legacy(path)
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    names = [pkg, bob / "conda" / "envs" / "a" / "lib" / "lib.so", bob / "conda" / "envs" / "b" / "lib" / "lib.so",
             bob / "x.py", bob / "x-clone.py"]
    for path in names:
        assert owner(path) == (100001, 100001), path
    assert mode(pkg) == 0o755 and pkg.stat().st_nlink == 3
    assert report["multiLink"] == {"count": 0, "paths": []}
    # x.py, the home, conda/{pkgs,pkgs/lib-1.0,envs,envs/a,envs/a/lib,envs/b,envs/b/lib} and lib.so once
    assert report["migrated"]["bob"]["entries"] == 11


def test_a_file_linked_inside_its_home_and_from_another_is_left_with_every_name(share: Path) -> None:
    """Two of its three names are in bob's home, one in alice's: neither home holds them all."""
    bob, alice = share / "home" / "bob", share / "home" / "alice"
    os.link(bob / "x.py", bob / "x-too.py")
    os.link(bob / "x.py", alice / "bobs.py")
    (bob / "y.py").write_text("bob's alone, twice")
    os.link(legacy(bob / "y.py"), bob / "y-too.py")
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    for path in (bob / "x.py", bob / "x-too.py", alice / "bobs.py"):
        assert owner(path) == (1000, 100), path
    assert owner(bob / "y.py") == owner(bob / "y-too.py") == (100001, 100001)
    assert sorted(report["multiLink"]["paths"]) == ["home/alice/bobs.py", "home/bob/x-too.py", "home/bob/x.py"]
    assert report["multiLink"]["count"] == 3 and owner(bob) == (100001, 100001)


def test_a_hard_link_in_a_group_folder_is_not_opened_to_the_group(share: Path) -> None:
    """The hub's file linked into the group folder stays as it was; a file whose links are all in the folder is
    opened to the group like any other."""
    db = hub_file(share)
    group = share / "shared" / "analysts"
    os.link(db, group / "db")
    os.link(group / "sub" / "table.csv", group / "table.csv")
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    for path in (db, group / "db"):
        assert owner(path) == (1000, 100) and mode(path) == 0o600, path
    assert owner(group / "report.md") == (1000, 3001) and mode(group / "report.md") == 0o664
    assert owner(group / "table.csv") == (1000, 3001) and mode(group / "sub" / "table.csv") == 0o664
    assert report["groups"] == {"analysts": 4} and report["multiLink"] == {"count": 1, "paths": ["shared/analysts/db"]}


def test_links_across_group_folders_are_left(share: Path) -> None:
    """The same rule within one group folder: a file linked into another group's folder is opened to neither."""
    other = share / "shared" / "engineers"
    other.mkdir()
    os.chown(other, 1000, 3002)
    report_md = share / "shared" / "analysts" / "report.md"
    os.link(report_md, other / "report.md")
    report = migrate_homes.migrate(str(share), UIDS, {**GIDS, "engineers": 3002})
    assert owner(report_md) == (1000, 100) and mode(report_md) == 0o644
    assert sorted(report["multiLink"]["paths"]) == ["shared/analysts/report.md", "shared/engineers/report.md"]
    assert report["groups"] == {"analysts": 2, "engineers": 0}


@pytest.mark.parametrize("names_in_home", [1, 2])
def test_a_link_made_while_it_runs_is_left_too(share: Path, monkeypatch: pytest.MonkeyPatch,
                                               names_in_home: int) -> None:
    """Linked from outside the home between the look at an entry and the check through its own descriptor: that
    check sees one link more than the home holds (whether the entry had one name before, or two in the home)."""
    db = hub_file(share)
    target = share / "home" / "bob" / "x.py"
    if names_in_home == 2:
        os.link(target, target.parent / "x-too.py")
    reopen = migrate_homes._reopen

    def linked_meanwhile(parent: int, name: str, st: os.stat_result) -> tuple[int, os.stat_result] | None:
        if name == "x.py":
            os.link(target, db.parent / "x-too")
        return reopen(parent, name, st)

    monkeypatch.setattr(migrate_homes, "_reopen", linked_meanwhile)
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    names = ["home/bob/x.py", "home/bob/x-too.py"][:names_in_home]
    assert owner(target) == (1000, 100) and report["multiLink"] == {"count": names_in_home, "paths": names}
    assert owner(share / "home" / "bob") == (100001, 100001)


def test_devices_are_left_fifos_and_sockets_handed_over(share: Path) -> None:
    alice = share / "home" / "alice"
    try:
        os.mknod(alice / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no CAP_MKNOD here to make a device file")
    (alice / "null").chmod(0o666)  # mknod's mode goes through the umask
    os.mkfifo(alice / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(alice / "sock"))
    for name in ("null", "fifo", "sock"):
        legacy(alice / name)
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    assert owner(alice / "null") == (1000, 100) and mode(alice / "null") == 0o666
    assert report["devices"] == {"count": 1, "paths": ["home/alice/null"]}
    assert owner(alice / "fifo") == (100000, 100000) and owner(alice / "sock") == (100000, 100000)


def test_the_list_is_capped_the_count_is_not(share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate_homes, "LIST_CAP", 2)
    bob = share / "home" / "bob"
    os.link(bob / "x.py", hub_file(share).parent / "bobs.py")  # a name outside: all four in bob's home are left
    for n in range(3):
        os.link(bob / "x.py", bob / f"x{n}.py")
    report = migrate_homes.migrate(str(share), UIDS, GIDS)
    assert report["multiLink"]["count"] == 4 and len(report["multiLink"]["paths"]) == 2
