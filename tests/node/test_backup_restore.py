"""Backup and restore on the real node (`qhubctl backup`, `qhubctl restore`, qhub/backup image built here).

QHub deployed by `qhubctl deploy`; alice (group analysts) writes files through her own JupyterLab kernel: her home,
the group folder (setgid, group-writable), a private file, a symlink, a file with an unusual mode, many small files.
The admin adds a user and a group through the hub's API (they live only in the hub's database) and alice has a
token. The platform is backed up to a local directory (twice: the second run stores only what changed) and to an S3
bucket (moto server on the node's bridge address, reached by the Job itself); `qhubctl destroy --delete-data`
removes everything and a fresh deploy starts empty. A damaged copy of the archive is refused and changes nothing;
the restore from the directory brings back every file bit for bit with owners and modes, the hub's users and groups,
alice's uid and her old token; a restore over a non-empty platform is refused without --force, and the S3 archive
restores with --force.

Then scheduled backups on the same platform (storage.type existing, so the files part runs in <namespace>-backup on
a second volume of the shared storage): a `backup:` section with keep 1 deployed, one Job of each CronJob started
at once as the controller would start them (`kubectl create job --from=cronjob/...`, named after one minute, so
both parts' runs share a name), a snapshot per part in the bucket, a second run leaving one snapshot per part, a
file restored from the scheduled snapshot, `qhubctl status` telling how the runs ended, and no schedule again
removing it all."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import qhubkit
from providers.emulators import Emulator, start_moto, stop
from qhubkit import Platform
from typer.testing import CliRunner

from nodekit import wait_for
from qhubctl import realnode
from qhubctl.backup import run
from qhubctl.config import load_config
from qhubctl.cli import app
from qhubctl.localcluster import LocalCluster

pytestmark = [pytest.mark.node, pytest.mark.long_journey]  # run_tests.py: a session of their own

NS = "qhub-backup"
RELEASE = "qbak"
IMAGES = ("jupyterhub", "jupyterlab", "backup")
GID = 3101
BUCKET = "qhub-backups"
SCHEDULED = "scheduled"  # the schedule's prefix in the bucket
PROJECT = "qbak-node"  # its own key file under $QHUB_CACHE/backup-keys/, which the schedule's deploy uses
SMALL_FILES = 2000

WRITE = f"""
import os, pathlib
home = pathlib.Path.home()
(home / "notes.txt").write_text("alice's notes\\n")
private = home / "private.key"
private.write_bytes(os.urandom(4096)); private.chmod(0o600)
odd = home / "odd-mode.sh"
odd.write_text("#!/bin/sh\\necho hi\\n"); odd.chmod(0o751)
(home / "link-to-notes").symlink_to("notes.txt")
many = home / "many"
many.mkdir(exist_ok=True)
for i in range({SMALL_FILES}):
    (many / f"f{{i:05d}}.bin").write_bytes(os.urandom(8192))
(home / "big.bin").write_bytes(os.urandom(24 << 20))
shared = pathlib.Path("/shared/analysts/report")
shared.mkdir(exist_ok=True)
(shared / "result.csv").write_text("a,b\\n1,2\\n")
print("written")
"""

# What a person would check after a restore: content, owner, group, mode (with setgid) and link targets.
SURVEY = """
import hashlib, json, os, stat
out = {}
for top in (os.path.expanduser("~"), "/shared/analysts"):
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") or d == ".ssh")
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            entry = [st.st_uid, st.st_gid, oct(st.st_mode)]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode) and not name.startswith("."):
                entry.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
            out[path] = entry
print(json.dumps(out))
"""


def _config() -> dict[str, Any]:
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["project_name"] = PROJECT
    cfg["components"] = {"dask_gateway": False, "kubessh": False, "conda_store": False}
    cfg["auth"]["users"] = {"alice": {"groups": ["analysts"]}, "bob": {"groups": ["analysts"]}, "admin": {}}
    cfg["auth"]["groups"] = {"analysts": {"gid": GID, "description": "shares /shared/analysts"}}
    return cfg


def qhubctl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    begun = time.monotonic()
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output, time.monotonic() - begun


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An S3 endpoint on the node's bridge address: this machine and the pods reach it alike."""
    server = start_moto(tmp_path_factory.mktemp("moto"), host=realnode.NODE_IP)
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qhub-backup")


@pytest.fixture(scope="module")
def deployed(cluster: LocalCluster, work: Path) -> Iterator[Platform]:
    with qhubkit.deployed(cluster, work, NS, RELEASE, _config(), IMAGES) as platform:
        yield platform


@pytest.fixture(autouse=True)
def artifacts(deployed: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(deployed, request)


def _s3_env(moto: Emulator) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": moto.url,
            "AWS_DEFAULT_REGION": "us-east-1"}


def _common(platform: Platform, work: Path) -> list[str]:
    return ["-c", str(platform.config), "--kubeconfig", str(platform.cluster.kubeconfig),
            "--key-file", str(work / "backup.key")]


def _hub_state(platform: Platform) -> dict[str, Any]:
    admin = platform.token("admin")
    users = {u["name"]: sorted(u["groups"]) for u in platform.hub_api("GET", "/users", admin).json()}
    groups = sorted(g["name"] for g in platform.hub_api("GET", "/groups", admin).json())
    return {"users": users, "groups": groups}


def _damage(source: Path, target: Path) -> str:
    """A copy of the archive with one byte of one data pack flipped; the pack's name."""
    shutil.copytree(source, target)
    pack = max((p for p in (target / "files" / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    return pack.name


def test_backup_destroy_deploy_restore_brings_everything_back(cluster: LocalCluster, deployed: Platform,
                                                               work: Path, moto: Emulator) -> None:
    alice = deployed.kernel("alice")
    assert alice.run(WRITE).strip() == "written"
    before_files = json.loads(alice.run(SURVEY))
    assert any(v[2].startswith("0o42") for k, v in before_files.items() if k.endswith("/report")), \
        "the group folder's subfolder inherits setgid"
    admin = deployed.token("admin")
    assert deployed.hub_api("POST", "/users/erin", admin).status_code == 201
    assert deployed.hub_api("POST", "/groups/reviewers", admin).status_code == 201
    assert deployed.hub_api("POST", "/groups/reviewers/users", admin, json={"users": ["erin"]}).status_code == 200
    alice_token = deployed.token("alice")
    before_hub = _hub_state(deployed)
    before_ids = deployed.identities()
    deployed.hub_api("DELETE", "/users/alice/server", alice_token)
    deployed.kernels.pop("alice").stop()

    archive = work / "archive"
    code, output, seconds = qhubctl("backup", "-o", str(archive), *_common(deployed, work))
    assert code == 0, output
    manifest = json.loads(next((archive / "manifests").iterdir()).read_text())
    files = manifest["parts"]["files"]
    assert files["files"] >= SMALL_FILES + 5 and files["bytes"] >= 24 << 20, files
    assert set(manifest["parts"]["meta"]["staged"]) >= {"jupyterhub.sqlite", "identities.json",
                                                        "qhub-config.yaml", "values.yaml"}
    mb = files["bytes"] / 1e6
    print(f"\n[backup] first backup to a directory: {mb:.1f} MB in {files['files']} files, {seconds:.1f}s "
          f"({mb / seconds:.1f} MB/s end to end, restic {files['seconds']:.1f}s)")

    code, output, seconds = qhubctl("backup", "-o", str(archive), *_common(deployed, work))
    assert code == 0, output
    again = json.loads(sorted((archive / "manifests").iterdir())[-1].read_text())["parts"]["files"]
    assert again["unchangedFiles"] == again["files"] and again["addedBytes"] < 1 << 20, again
    print(f"[backup] second backup, nothing changed: {seconds:.1f}s, {again['addedBytes']} bytes added")

    code, output, seconds = qhubctl("backup", "-o", f"s3://{BUCKET}/platform", *_common(deployed, work),
                                    env=_s3_env(moto))
    assert code == 0, output
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="platform/files/")["Contents"]]
    assert any(k.startswith("platform/files/data/") for k in keys), keys
    print(f"[backup] backup to S3 (moto on {moto.url}, written by the Jobs): {seconds:.1f}s")

    code, output, _ = qhubctl("destroy", "-c", str(deployed.config), "--kubeconfig", str(cluster.kubeconfig),
                              "--delete-data", "--yes")
    assert code == 0, output
    # destroy keeps the namespace; the volumes go once their pods have
    wait_for("the platform's volumes to go", lambda: not json.loads(cluster.kubectl(
        "get", "pvc", "-n", NS, "-o", "json"))["items"], timeout=180, interval=2)
    result, _ = qhubkit.qhubctl_deploy(cluster, deployed.config)
    assert result.returncode == 0, result.stdout
    deployed.read_access()
    fresh = _hub_state(deployed)
    assert "erin" not in fresh["users"] and "reviewers" not in fresh["groups"], fresh
    assert deployed.hub_api("GET", "/user", alice_token).status_code == 403

    damaged = work / "damaged"
    pack = _damage(archive, damaged)
    code, output, _ = qhubctl("restore", str(damaged), *_common(deployed, work), "--yes")
    assert code != 0 and "damaged" in output and pack[:12] in output, output
    assert _hub_state(deployed) == fresh, "a refused restore changed nothing"

    code, output, seconds = qhubctl("restore", str(archive), *_common(deployed, work), "--yes")
    assert code == 0, output
    print(f"[restore] from the directory onto a fresh platform: {seconds:.1f}s "
          f"({files['bytes'] / 1e6 / seconds:.1f} MB/s end to end)")
    assert deployed.hub_api("GET", "/user", alice_token).json()["name"] == "alice", "alice's old token works"
    deployed.tokens.pop("admin")  # made in the fresh platform's database, which the restore replaced
    assert _hub_state(deployed) == before_hub
    # the hub gives new users their uid in the background: erin's may have been recorded only after it was read
    restored_ids = deployed.identities()["users"]
    assert {u: restored_ids.get(u) for u in before_ids["users"]} == before_ids["users"], restored_ids
    assert set(restored_ids) <= set(before_hub["users"]), restored_ids
    deployed.tokens["alice"] = alice_token
    after_files = json.loads(deployed.kernel("alice").run(SURVEY))
    assert after_files == before_files

    code, output, _ = qhubctl("restore", f"s3://{BUCKET}/platform", *_common(deployed, work), "--yes",
                              env=_s3_env(moto))
    assert code != 0 and "not empty" in output and "--force" in output, output
    code, output, seconds = qhubctl("restore", f"s3://{BUCKET}/platform", *_common(deployed, work), "--yes",
                                    "--force", env=_s3_env(moto))
    assert code == 0, output
    print(f"[restore] from S3 with --force over the restored platform: {seconds:.1f}s")
    deployed.kernels.pop("alice").stop()
    assert json.loads(deployed.kernel("alice").run(SURVEY)) == after_files


def _scheduled(moto: Emulator, schedule: str | None) -> dict[str, Any]:
    secret = {"name": "backup-s3"}
    return {"schedule": schedule, "keep": 1, "destination": f"s3://{BUCKET}/{SCHEDULED}", "endpoint": moto.url,
            "access_key_id": {"secretRef": {**secret, "key": "AWS_ACCESS_KEY_ID"}},
            "secret_access_key": {"secretRef": {**secret, "key": "AWS_SECRET_ACCESS_KEY"}}}


def _trigger(cluster: LocalCluster, where: dict[str, str], minute: int) -> dict[str, str]:
    """A Job of each part's CronJob, started at once and named as the controller names the Jobs it starts for
    `minute`; the Jobs' names by part."""
    jobs = {}
    for part, namespace in where.items():
        jobs[part] = f"{RELEASE}-backup-cron-{part}-{minute}"
        cluster.kubectl("create", "job", jobs[part], f"--from=cronjob/{RELEASE}-backup-cron-{part}", "-n", namespace)
    return jobs


def _reports(cluster: LocalCluster, where: dict[str, str], jobs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Wait for the Jobs to end; each part's report (the agent's last log line)."""
    def ended(part: str) -> dict[str, Any] | None:
        job = json.loads(cluster.kubectl("get", "job", jobs[part], "-n", where[part], "-o", "json"))
        status = job.get("status") or {}
        return job if status.get("succeeded") or status.get("failed") else None

    reports = {}
    for part in jobs:
        job = wait_for(f"the scheduled {part} Job {jobs[part]}", lambda: ended(part), timeout=900, interval=3)
        log = cluster.kubectl("logs", f"job/{jobs[part]}", "-n", where[part])
        assert (job.get("status") or {}).get("succeeded"), f"{part}: {log[-3000:]}"
        reports[part] = json.loads(log.strip().splitlines()[-1])
    return reports


def _snapshots(moto: Emulator, part: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{SCHEDULED}/{part}/snapshots/")
    return [o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])]


@pytest.fixture
def schedule_cleanup(cluster: LocalCluster) -> Iterator[None]:
    """What a failed run would leave outside the release namespace: the backup namespace and the second volume."""
    yield
    cluster.kubectl("delete", "namespace", f"{NS}-backup", "--ignore-not-found", "--wait=false")
    cluster.kubectl("delete", "pv", f"{NS}-backup-{RELEASE}-shared", "--ignore-not-found", "--wait=false")


def test_scheduled_backups_run_keep_one_snapshot_and_restore(cluster: LocalCluster, deployed: Platform, work: Path,
                                                             moto: Emulator, schedule_cleanup: None) -> None:
    cluster.kubectl("create", "secret", "generic", "backup-s3", "-n", NS, "--from-literal=AWS_ACCESS_KEY_ID=test",
                    "--from-literal=AWS_SECRET_ACCESS_KEY=test")
    key = run.key_file(load_config(deployed.config, environ={}), None)
    key.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "backup.key", key)  # the platform's key (in its Secret too); a stale file is refused
    config = deployed.config_dict()
    config["backup"] = _scheduled(moto, "0 3 * * *")  # never at 03:00 during the test: the Jobs are started here
    result, _ = deployed.redeploy(config)
    assert result.returncode == 0 and "scheduled backups: 0 3 * * *" in result.stdout, result.stdout
    where = {"meta": NS, "files": f"{NS}-backup"}
    for part, namespace in where.items():
        cron = json.loads(cluster.kubectl("get", "cronjob", f"{RELEASE}-backup-cron-{part}", "-n", namespace,
                                          "-o", "json"))
        assert cron["spec"]["concurrencyPolicy"] == "Forbid", cron["spec"]

    minute = int(time.time() // 60)
    begun = time.monotonic()
    first = _reports(cluster, where, _trigger(cluster, where, minute))
    print(f"\n[schedule] first scheduled run of both parts to S3: {time.monotonic() - begun:.1f}s")
    assert first["meta"]["run"] == first["files"]["run"] == time.strftime("%Y%m%dT%H%M00Z", time.gmtime(minute * 60))
    assert "identities.json" in first["meta"]["staged"], "the hub's live uid record"
    for part in where:
        assert [s[:8] for s in _snapshots(moto, part)] == [first[part]["snapshot"][:8]], part

    alice = deployed.kernel("alice")
    assert alice.run("import pathlib; (pathlib.Path.home() / 'scheduled.txt').write_text('kept by the schedule');"
                     "print('ok')").strip() == "ok"
    second = _reports(cluster, where, _trigger(cluster, where, minute + 1))
    for part in where:
        assert (second[part]["kept"], second[part]["forgot"]) == (1, 1), second[part]
        assert [s[:8] for s in _snapshots(moto, part)] == [second[part]["snapshot"][:8]], "keep 1: the newest"
    _, output, _ = qhubctl("status", "-c", str(deployed.config), "--kubeconfig", str(cluster.kubeconfig))
    assert "scheduled backup: 0 3 * * *" in output and output.count("succeeded, finished") == 2, output

    assert alice.run("import pathlib; (pathlib.Path.home() / 'scheduled.txt').unlink(); print('gone')").strip() \
        == "gone"
    code, output, seconds = qhubctl("restore", f"s3://{BUCKET}/{SCHEDULED}", "--run", second["meta"]["run"],
                                    *_common(deployed, work), "--yes", "--force", env=_s3_env(moto))
    assert code == 0, output
    print(f"[schedule] restore of the scheduled run {second['meta']['run']}: {seconds:.1f}s")
    deployed.kernels.pop("alice").stop()
    assert deployed.kernel("alice").run("import pathlib; print((pathlib.Path.home() / 'scheduled.txt')"
                                        ".read_text())").strip() == "kept by the schedule"

    config["backup"] = _scheduled(moto, None)
    result, _ = deployed.redeploy(config)
    assert result.returncode == 0 and "scheduled backups removed" in result.stdout, result.stdout
    for namespace in where.values():
        assert not json.loads(cluster.kubectl("get", "cronjobs", "-n", namespace, "-o", "json"))["items"]
    wait_for("the second volume to go", lambda: not cluster.kubectl(
        "get", "pv", f"{NS}-backup-{RELEASE}-shared", "--ignore-not-found").strip(), timeout=120, interval=2)
