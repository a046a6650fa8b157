"""Files and groups on the real node: QHub deployed by `qhubctl deploy` (images built here, homes and group folders on
the real node's local-path class), users alice and bob in group analysts, carol in none, each working through
their own running JupyterLab server - a kernel reached through the proxy with the user's own token, never kubectl
exec. Every user runs as the uid the hub gave them, with analysts' gid only where they are members; alice writes
/shared/analysts/x, bob reads and edits it, carol cannot list the folder; alice's home is hers alone. Probe pods
running as those same uids over the whole volume show the Linux permissions hold even without the mounts that keep
users apart; SSH commands and SFTP act as the user too. uids survive a deploy that restarts the hub, and `qhubctl
upgrade --homes` gives a home from before per-user uids (owned by 1000) to its user."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest
import qhubkit
from qhubkit import Platform
from typer.testing import CliRunner

from nodekit import wait_for
from qhubctl import realnode
from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.node

NS = "qhub-files"
RELEASE = "qfiles"
IMAGES = ("jupyterhub", "jupyterlab", "kubessh")
GID = 3001
GROUPS = {"alice": ["analysts"], "bob": ["analysts"], "carol": [], "dave": []}


def _config() -> dict[str, Any]:
    """`qhubctl init local`'s config in its own namespace and release, with the users and group of this journey."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["auth"]["users"] = {name: {"groups": groups} for name, groups in GROUPS.items()} | {"admin": {}}
    cfg["auth"]["groups"] = {"analysts": {"gid": GID, "description": "shares /shared/analysts"}}
    return cfg


@pytest.fixture(scope="module")
def deployed(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Images pushed to the node's registry, QHub deployed with this journey's users."""
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("qhub-files"), NS, RELEASE, _config(),
                          IMAGES) as platform:
        yield platform


@pytest.fixture(autouse=True)
def artifacts(deployed: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    """A failing test leaves the namespace's pods, events and logs under build/test-artifacts/node/."""
    yield from qhubkit.report_on_failure(deployed, request)


ID = """
import json, os, subprocess
print(json.dumps({"id": subprocess.run(["id"], capture_output=True, text=True, check=True).stdout.strip(),
                  "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}))
"""


def test_each_user_runs_as_their_own_uid_with_their_groups_gids(cluster: LocalCluster, deployed: Platform) -> None:
    seen = {user: json.loads(deployed.kernel(user).run(ID)) for user in ("alice", "bob", "carol")}
    record = deployed.identities()
    assert record["groups"] == {"analysts": GID}
    for user, got in seen.items():
        uid = record["users"][user]
        assert uid >= 100000, (user, uid)
        assert (got["uid"], got["gid"]) == (uid, uid), (user, got)
        assert re.match(rf"uid={uid}\b.* gid={uid}\b", got["id"]), got["id"]
        in_group = f"{GID}" in re.sub(r"\(.*?\)", "", got["id"].split("groups=", 1)[1]).split(",")
        assert in_group == ("analysts" in GROUPS[user]), (user, got["id"])
        assert (GID in got["groups"]) == ("analysts" in GROUPS[user]), (user, got)
    assert len({got["uid"] for got in seen.values()}) == 3, "every user has a uid of their own"
    pod = json.loads(cluster.kubectl("get", "pod", "jupyter-alice", "-n", NS, "-o", "json"))
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert "fsGroup" not in pod["spec"]["securityContext"]
    assert pod["spec"]["initContainers"][0]["name"] == "home"
    print(f"[node] uids: { {u: record['users'][u] for u in seen} }, analysts gid {GID}")


def test_a_group_folder_is_shared_by_its_members_only(deployed: Platform) -> None:
    alice, bob, carol = (deployed.kernel(u) for u in ("alice", "bob", "carol"))
    uids = deployed.identities()["users"]
    folder = json.loads(alice.run(
        "import json, os\n"
        "with open('/shared/analysts/x', 'w') as f:\n"
        "    f.write('written by alice\\n')\n"
        "st, top = os.stat('/shared/analysts/x'), os.stat('/shared/analysts')\n"
        "print(json.dumps({'file': [st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)],"
        " 'folder': [top.st_uid, top.st_gid, oct(top.st_mode & 0o7777)]}))"))
    assert folder["file"] == [uids["alice"], GID, "0o664"], "alice's file: hers, the group's, group-writable"
    assert folder["folder"][1:] == [GID, "0o2770"], "the folder: the group's, setgid, closed to others"
    edited = bob.run(
        "print(open('/shared/analysts/x').read(), end='')\n"
        "with open('/shared/analysts/x', 'a') as f:\n"
        "    f.write('edited by bob\\n')")
    assert edited == "written by alice\n"
    assert alice.run("print(open('/shared/analysts/x').read(), end='')") == "written by alice\nedited by bob\n"
    refused = carol.run(
        "import os\n"
        "try:\n"
        "    print(os.listdir('/shared/analysts'))\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)")
    assert refused.strip() in ("PermissionError", "FileNotFoundError"), refused


def test_a_home_is_its_users_alone(deployed: Platform) -> None:
    alice, bob = deployed.kernel("alice"), deployed.kernel("bob")
    uids = deployed.identities()["users"]
    home = json.loads(alice.run(
        "import json, os\n"
        "open(os.path.expanduser('~/private.txt'), 'w').write('alice only')\n"
        "st = os.stat(os.path.expanduser('~'))\n"
        "print(json.dumps([os.path.expanduser('~'), st.st_uid, oct(st.st_mode & 0o7777)]))"))
    assert home == ["/home/alice", uids["alice"], "0o700"]
    refused = bob.run(
        "try:\n"
        "    print(open('/home/alice/private.txt').read())\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)")
    assert refused.strip() in ("PermissionError", "FileNotFoundError"), refused


def finished(cluster: LocalCluster, pod: str) -> str:
    """Wait until `pod` has run to its end; its phase."""
    def phase() -> str:
        found = json.loads(cluster.kubectl("get", "pod", pod, "-n", NS, "-o", "json"))["status"].get("phase", "")
        return found if found in ("Succeeded", "Failed") else ""

    return str(wait_for(f"pod {pod} to finish", phase, timeout=120))


def probe(cluster: LocalCluster, name: str, uid: int, gids: list[int], script: str) -> str:
    """What `script` prints in a pod running as `uid` with `gids` over the whole shared volume (the same identity
    the hub gives that user, without the mounts that keep users apart): Linux permissions alone decide."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeSelector": {realnode.REAL_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "supplementalGroups": gids,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "probe", "image": realnode.image_ref("busybox"), "command": ["sh", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "share", "mountPath": "/share", "readOnly": True}],
            }],
            "volumes": [{"name": "share", "persistentVolumeClaim": {"claimName": f"{RELEASE}-shared"}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        finished(cluster, name)
        return cluster.kubectl("logs", "-n", NS, name)
    finally:
        cluster.kubectl("delete", "pod", name, "-n", NS, "--wait=false")


def test_permissions_hold_without_the_mounts(cluster: LocalCluster, deployed: Platform) -> None:
    """Every user's pod mounts only their own home and their groups' folders; below that, the files' owners and
    modes alone keep bob out of alice's home and carol out of analysts' folder."""
    deployed.kernel("alice").run("open('/shared/analysts/y', 'w').write('for analysts')\n"
                                 "open('/home/alice/z', 'w').write('alice only')")
    uids = deployed.identities()["users"]
    ls = "ls {0} >/dev/null 2>&1 && echo {1}:listed || echo {1}:refused; "
    cat = "cat {0} >/dev/null 2>&1 && echo {1}:read || echo {1}:refused; "
    as_bob = probe(cluster, "probe-bob", uids["bob"], [GID],
                   ls.format("/share/home/alice", "alice-home") + cat.format("/share/home/alice/z", "alice-file")
                   + ls.format("/share/shared/analysts", "analysts") + cat.format("/share/shared/analysts/y", "y")
                   + ls.format("/share/home", "homes"))
    assert as_bob.split() == ["alice-home:refused", "alice-file:refused", "analysts:listed", "y:read",
                              "homes:refused"], as_bob
    as_carol = probe(cluster, "probe-carol", uids["carol"], [],
                     ls.format("/share/shared/analysts", "analysts") + cat.format("/share/shared/analysts/y", "y"))
    assert as_carol.split() == ["analysts:refused", "y:refused"], as_carol


def test_ssh_and_sftp_act_as_the_user(deployed: Platform) -> None:
    """The SSH gateway runs commands and SFTP inside the user's own server, so they carry the user's uid and groups:
    bob's SFTP upload to the group folder is bob's and analysts', carol's is refused."""
    uids = deployed.identities()["users"]
    alice = deployed.kernel("alice")
    for user in ("bob", "carol"):
        deployed.kernel(user)
    ssh_port = int(deployed.access["ssh"].split("-p ", 1)[1].split()[0])

    def connect(user: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", ssh_port, username=user, password=deployed.token(user),
                       look_for_keys=False, allow_agent=False, timeout=30, auth_timeout=60, banner_timeout=60)
        return client

    bob = connect("bob")
    try:
        _, out, _ = bob.exec_command("id -u; id -G", timeout=120)
        uid, groups = out.read().decode().split("\n")[:2]
        assert int(uid) == uids["bob"] and str(GID) in groups.split(), (uid, groups)
        with bob.open_sftp() as sftp:
            with sftp.open("/shared/analysts/from-bob.txt", "w") as f:
                f.write("uploaded by bob")
    finally:
        bob.close()
    seen = json.loads(alice.run("import json, os\n"
                                "st = os.stat('/shared/analysts/from-bob.txt')\n"
                                "print(json.dumps([open('/shared/analysts/from-bob.txt').read(), st.st_uid,"
                                " st.st_gid]))"))
    assert seen == ["uploaded by bob", uids["bob"], GID]
    carol = connect("carol")
    try:
        with carol.open_sftp() as sftp, pytest.raises(OSError):
            sftp.listdir("/shared/analysts")
    finally:
        carol.close()


def test_uids_survive_an_upgrade_that_restarts_the_hub(cluster: LocalCluster, deployed: Platform) -> None:
    """A `qhubctl deploy` of a changed config restarts the hub: every uid stays, a new user gets the next one, and
    a server that kept running still runs as its user."""
    before = deployed.identities()
    cfg = deployed.config_dict()
    cfg["auth"]["users"]["erin"] = {}
    hub_before = deployed.pods("app.kubernetes.io/component=hub")[0]["metadata"]["uid"]
    result, _ = deployed.redeploy(cfg)
    assert result.returncode == 0, result.stdout
    hubs = deployed.pods("app.kubernetes.io/component=hub")
    assert hub_before not in [p["metadata"]["uid"] for p in hubs], "the config change restarted the hub"
    after = wait_for("the restarted hub to give erin a uid", lambda: (r := deployed.identities())["users"].get("erin")
                     and r, timeout=120, interval=2)
    assert {u: after["users"][u] for u in before["users"]} == before["users"]
    assert after["users"]["erin"] == max(before["users"].values()) + 1 == after["nextUid"] - 1
    cm = json.loads(cluster.kubectl("get", "configmap", f"{RELEASE}-identities", "-n", NS, "-o", "json"))
    assert "meta.helm.sh/release-name" not in (cm["metadata"].get("annotations") or {}), "Helm must never own it"
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jupyterhub"
    uid = json.loads(deployed.kernel("alice").run("import os; print(os.getuid())"))
    assert uid == before["users"]["alice"]


def test_upgrade_homes_gives_a_home_from_before_to_its_user(cluster: LocalCluster, deployed: Platform) -> None:
    """dave's home as it was before per-user uids (everything uid 1000): the hub refuses his server and says what to
    run; `qhubctl upgrade --homes` runs its one-shot Job and hands the home over; then his server starts and his
    files are his."""
    uid = deployed.identities()["users"]["dave"]  # the hub gave every user it knows a uid at start
    legacy_home(cluster)
    refused = deployed.post_start("dave")
    assert refused is not None and refused.status_code >= 400, refused.status_code if refused else None
    assert "qhubctl upgrade --homes" in refused.text, refused.text[:500]
    started = time.monotonic()
    result = CliRunner().invoke(app, ["upgrade", "--homes", "-c", str(deployed.config), "--kubeconfig",
                                      str(cluster.kubeconfig), "--yes"], catch_exceptions=False)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert f"home/dave: given to uid {uid} (4 entries)" in result.output, result.output
    assert "lowered from restricted to baseline" in result.output and "back to restricted" in result.output
    ns = json.loads(cluster.kubectl("get", "namespace", NS, "-o", "json"))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert not json.loads(cluster.kubectl("get", "jobs", "-n", NS, "-o", "json"))["items"], "the Job is cleaned up"
    seen = json.loads(deployed.kernel("dave").run(
        "import json, os\n"
        "print(json.dumps({'uid': os.getuid(), 'notes': open('/home/dave/notes.txt').read(),"
        " 'owners': sorted({os.lstat(os.path.join(d, n)).st_uid for d, ds, fs in os.walk('/home/dave')"
        " for n in ds + fs})}))"))
    assert seen == {"uid": uid, "notes": "from before", "owners": [uid]}
    print(f"[node] qhubctl upgrade --homes: {seconds:.0f}s")


def legacy_home(cluster: LocalCluster) -> None:
    """Lay out home/dave as a release before per-user uids left it: folder and files of uid 1000, gid 100, 0750.
    Only root can, and the namespace enforces `restricted`: lowered for this one setup pod, as an admin would."""
    label = "pod-security.kubernetes.io/enforce"
    cluster.kubectl("label", "namespace", NS, f"{label}=baseline", "--overwrite")
    script = ("set -e; mkdir -p /share/home/dave/sub; echo -n 'from before' > /share/home/dave/notes.txt; "
              "echo data > /share/home/dave/sub/data.csv; chown -R 1000:100 /share/home/dave; "
              "chmod 0750 /share/home/dave")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "legacy-home", "namespace": NS},
        "spec": {
            "nodeSelector": {realnode.REAL_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "containers": [{
                "name": "setup", "image": realnode.image_ref("busybox"), "command": ["sh", "-c", script],
                "securityContext": {"runAsUser": 0,
                                    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "share", "mountPath": "/share"}],
            }],
            "volumes": [{"name": "share", "persistentVolumeClaim": {"claimName": f"{RELEASE}-shared"}}],
        },
    }
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        phase = finished(cluster, "legacy-home")
        assert phase == "Succeeded", cluster.kubectl("logs", "-n", NS, "legacy-home")
    finally:
        cluster.kubectl("delete", "pod", "legacy-home", "-n", NS, "--wait=false")
        cluster.kubectl("label", "namespace", NS, f"{label}=restricted", "--overwrite")
