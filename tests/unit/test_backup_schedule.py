"""Scheduled backups without a cluster: the config's `backup:` section, the CronJobs `qhubctl deploy` applies (built
by the one-off runs' own Job builder), the agent's retention, and what `qhubctl status` says about the last runs
(tools/qhubctl/backup/schedule.py, tools/qhubctl/config/backup.py)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from qhubctl import kube
from qhubctl.backup import agent, run, schedule
from qhubctl.backup.destination import parse
from qhubctl.config import load_config, parse_config
from qhubctl.config.backup import check_cron
from qhubctl.errors import ClusterError, ConfigError, UserError

pytestmark = pytest.mark.unit
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NFS_NS = "demo-nfs"
HUB_CONTEXT = {"runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True, "fsGroup": 100,
               "supplementalGroups": [2001], "seccompProfile": {"type": "RuntimeDefault"}}


def _secret(data: dict[str, str]) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


class FakeCluster:
    """The few objects the schedule reads, and every call it makes."""

    def __init__(self, cfg: Any, *, key: str = "the-archive-key") -> None:
        ns = cfg.namespace
        hub = {"spec": {"template": {"spec": {
            "containers": [{"image": "127.0.0.1:5001/qhub/jupyterhub:0.9.0"}], "securityContext": HUB_CONTEXT,
            "nodeSelector": {"qhub.dev/node-group": "general"}, "imagePullSecrets": [{"name": "pull"}]}}}}
        self.objects: dict[str, Any] = {
            f"/apis/apps/v1/namespaces/{ns}/deployments/qhub-hub": hub,
            f"/api/v1/namespaces/{ns}/pods": {"items": [{"spec": {"nodeName": "node-a"}}]},
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims/qhub-hub-db": {"metadata": {}},
            f"/api/v1/namespaces/{NFS_NS}/pods/qhub-nfs-0": {"spec": {"nodeName": "node-b"}},
            f"/api/v1/namespaces/{ns}/secrets/backup-s3": _secret({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                                                   "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI"}),
            f"/api/v1/namespaces/{ns}/secrets/qhub-backup-key": _secret({"key": key}),
        }
        self.calls: list[tuple[str, str, Any]] = []

    def rest(self, api: Any, method: str, path: str, *, query: Any = None, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, body if body is not None else query))
        if method == "GET":
            return self.objects.get(path)
        if method == "PATCH":
            self.objects[path] = body
        if method == "DELETE":
            self.objects.pop(path, None)
        return {}

    def applied(self, kind: str) -> dict[str, dict[str, Any]]:
        return {body["metadata"]["name"]: body for method, _, body in self.calls
                if method == "PATCH" and (body or {}).get("kind") == kind}


@pytest.fixture
def cfg() -> Any:
    return load_config(CONFIGS / "local.ok.backup-schedule.yaml", environ={})


@pytest.fixture
def cluster(cfg: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    fake = FakeCluster(cfg)
    monkeypatch.setattr(kube, "_rest", fake.rest)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path))
    return fake


def test_schedules_kubernetes_accepts_and_the_ones_it_refuses_name_the_fix() -> None:
    for good in ("0 3 * * *", "*/15 1-5 * JAN-MAR MON-FRI", "0 0 1,15 * ?", "5 4 * * sun", "@daily", "@hourly",
                 "@midnight", "0  3 * * *"):
        assert check_cron(good) == " ".join(good.split())
    for bad, words in (("0 3 * *", "has 4 fields, a schedule has five"), ("60 3 * * *", "minute 60 is outside 0-59"),
                       ("0 3 * * 7", "day of week 7 is outside 0-6"), ("@nightly", "@daily"),
                       ("0 3 * FOO *", "not a month"), ("0 5-2 * * *", "lower value first"),
                       ("*/0 * * * *", "step of 0"), ("CRON_TZ=UTC 0 3 * * *", "backup.time_zone"),
                       ("0 3 ** * *", "not a valid day of month")):
        with pytest.raises(ValueError, match=words):
            check_cron(bad)


def _problems(backup: dict[str, Any], **extra: Any) -> str:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"}, "backup": backup, **extra}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})
    return "\n".join(caught.value.problems)


def test_config_refusals_name_the_field_and_the_fix() -> None:
    ref = {"secretRef": {"name": "backup-s3", "key": "AWS_ACCESS_KEY_ID"}}
    full = {"schedule": "@daily", "destination": "s3://qhub-backups/demo", "access_key_id": ref,
            "secret_access_key": ref}
    text = _problems({"schedule": "@daily"})
    for field, fix in (("destination", "s3://<bucket>/<prefix>"),
                       ("access_key_id", "QHUB_SECRET__backup__access_key_id"),
                       ("secret_access_key", "QHUB_SECRET__backup__secret_access_key")):
        assert f"backup.{field}: a schedule needs it" in text and fix in text, text
    text = _problems({**full, "destination": "/srv/backups"})
    assert "backup.destination:" in text and "CronJob in the cluster cannot reach" in text, text
    assert "qhubctl backup -o DIR" in text, text
    text = _problems({**full, "endpoint": "minio:9000"})
    assert "backup.endpoint:" in text and "http(s) URL" in text, text
    text = _problems(full, components={"jupyterhub": False, "dask_gateway": False, "conda_store": False,
                                       "kubessh": False})
    assert "backup.schedule:" in text and "components.jupyterhub: true" in text, text
    text = _problems({**full, "keep": 0})
    assert "backup.keep:" in text, text
    no_schedule = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                                "backup": {"destination": "s3://qhub-backups/demo"}}, environ={})
    assert no_schedule.backup.schedule is None, "the rest of the section may stay while the schedule is off"


def test_credentials_may_come_from_the_environment_and_never_reach_the_dump() -> None:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
           "backup": {"schedule": "@daily", "destination": "s3://qhub-backups/demo"}}
    cfg = parse_config(raw, environ={"QHUB_SECRET__backup__access_key_id": "AKIDFROMENV",
                                     "QHUB_SECRET__backup__secret_access_key": "secret-from-env"})
    assert schedule.credentials(None, cfg) == {"AWS_ACCESS_KEY_ID": "AKIDFROMENV",
                                               "AWS_SECRET_ACCESS_KEY": "secret-from-env"}
    assert "secret-from-env" not in json.dumps(cfg.redacted())


def test_deploy_applies_one_cronjob_per_part_where_its_volume_is(cfg: Any, cluster: FakeCluster,
                                                                  tmp_path: Path) -> None:
    said: list[str] = []
    lines = schedule.sync(None, cfg, "project_name: demo\n", said.append)
    assert "30 2 * * MON-FRI (Europe/Berlin)" in lines[0] and "keeping the newest 14" in lines[0], lines
    crons = cluster.applied("CronJob")
    assert set(crons) == {"qhub-backup-cron-meta", "qhub-backup-cron-files"}
    for cron in crons.values():
        spec = cron["spec"]
        assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("30 2 * * MON-FRI",
                                                                                   "Europe/Berlin", "Forbid")
        assert spec["startingDeadlineSeconds"] == 3600
        assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
        job = spec["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] == 360 * 60 and job["backoffLimit"] == 0
        assert "ttlSecondsAfterFinished" not in job, "the history limits keep the last runs for `qhubctl status`"
        assert len(cron["metadata"]["name"]) <= 52, "the controller adds 11 characters for its Jobs' names"
    meta, files = crons["qhub-backup-cron-meta"], crons["qhub-backup-cron-files"]
    assert meta["metadata"]["namespace"] == cfg.namespace and files["metadata"]["namespace"] == NFS_NS

    meta_pod = meta["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert meta_pod["securityContext"] == {k: v for k, v in HUB_CONTEXT.items() if k != "supplementalGroups"}
    assert meta_pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert meta_pod["nodeSelector"] == {"qhub.dev/node-group": "general"}
    assert meta_pod["affinity"] == {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "qhub",
                                          "app.kubernetes.io/component": "hub"}},
        "topologyKey": "kubernetes.io/hostname"}]}}, "beside the hub's pod, wherever it is then (not node-a)"
    source = next(v for v in meta_pod["volumes"] if v["name"] == "source")
    assert source["projected"]["sources"] == [
        {"configMap": {"name": "qhub-backup-cron-meta"}},
        {"configMap": {"name": "qhub-identities", "optional": True,
                       "items": [{"key": "identities.json", "path": "identities.json"}]}}], \
        "the hub's live uid record, read when the run starts"
    assert {"name": "hub-db", "persistentVolumeClaim": {"claimName": "qhub-hub-db"}} in meta_pod["volumes"]

    files_pod = files["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert files_pod["securityContext"]["runAsUser"] == 0
    assert files_pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"],
                                                                             "add": ["DAC_OVERRIDE"]}
    assert files_pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nfs"
    assert "nodeSelector" not in files_pod and "nodeName" not in files_pod
    share = next(m for m in files_pod["containers"][0]["volumeMounts"] if m["name"] == "share")
    assert share == {"name": "share", "mountPath": "/share", "readOnly": True, "subPath": "export"}
    assert next(v for v in files_pod["volumes"] if v["name"] == "source") == {
        "name": "source", "configMap": {"name": "qhub-backup-cron-files"}}

    for part, cron in (("meta", meta), ("files", files)):
        container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "127.0.0.1:5001/qhub/backup:0.9.0"
        env = {e["name"]: e for e in container["env"]}
        assert json.loads(env["QHUB_JOB"]["value"]) == {"release": "qhub", "hold": False, "condaStore": True,
                                                         "keep": 14, "expect": ["identities.json"]}
        assert env["RESTIC_REPOSITORY"]["value"] == f"s3:https://minio.example:9000/qhub-backups/demo/{part}"
        assert env["QHUB_JOB_NAME"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}
        assert container["envFrom"] == [{"secretRef": {"name": f"qhub-backup-cron-{part}"}}]
        assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
        labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "backup" and labels["qhub.dev/backup-cron"] == part
    assert "PGPASSWORD" in {e["name"] for e in meta["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"][0]["env"]}

    secrets = cluster.applied("Secret")
    assert secrets["qhub-backup-cron-files"]["metadata"]["namespace"] == NFS_NS
    assert secrets["qhub-backup-cron-meta"]["stringData"] == {
        "RESTIC_PASSWORD": "the-archive-key", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "AWS_DEFAULT_REGION": "us-east-1"}
    maps = cluster.applied("ConfigMap")
    assert set(maps["qhub-backup-cron-meta"]["data"]) == {"agent.py", "qhub-config.yaml", "values.yaml"}
    assert set(maps["qhub-backup-cron-files"]["data"]) == {"agent.py"}
    assert (tmp_path / "backup-keys" / "demo.key").read_text().strip() == "the-archive-key", \
        "the local key file is kept, as a one-off backup keeps it"
    assert any("written to" in line for line in said), said


def test_network_policies_let_a_run_reach_dns_the_bucket_and_the_database_only(cfg: Any,
                                                                             cluster: FakeCluster) -> None:
    schedule.sync(None, cfg, "", lambda _: None)
    policies = cluster.applied("NetworkPolicy")
    for part, namespace in (("meta", cfg.namespace), ("files", NFS_NS)):
        policy = policies[f"qhub-backup-cron-{part}"]
        assert policy["metadata"]["namespace"] == namespace
        assert policy["spec"]["podSelector"]["matchLabels"]["qhub.dev/backup-cron"] == part
        assert policy["spec"]["ingress"] == [] and policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        egress = policy["spec"]["egress"]
        assert egress[0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        assert egress[1]["ports"] == [{"protocol": "TCP", "port": 9000}]
        assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}} in egress[1]["to"]
    meta_egress = policies["qhub-backup-cron-meta"]["spec"]["egress"]
    assert meta_egress[2] == {"to": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/instance": "qhub", "app.kubernetes.io/component": "conda-store-postgresql"}}}],
        "ports": [{"protocol": "TCP", "port": 5432}]}
    assert len(policies["qhub-backup-cron-files"]["spec"]["egress"]) == 2
    assert schedule.endpoint_egress("http://10.244.0.1:5000") == {
        "to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 5000}]}


def test_scheduled_and_one_off_runs_share_one_job_builder(cfg: Any, cluster: FakeCluster) -> None:
    """The CronJob's Job is the one-off Job but for its source folder, placement, deadline and name."""
    schedule.sync(None, cfg, "", lambda _: None)
    cron = cluster.applied("CronJob")["qhub-backup-cron-files"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    hub = run.hub_deployment(None, cfg)
    part = next(p for p in run.parts(None, cfg, hub, "backup", staging=False) if p.name == "files")
    one_off = run.job_manifest("qhub-backup-files", "127.0.0.1:5001/qhub/backup:0.9.0", part, "backup",
                               schedule.params(cfg), "qhub-backup-cron-files",
                               "s3:https://minio.example:9000/qhub-backups/demo/files")["spec"]["template"]["spec"]
    assert one_off["affinity"]["nodeAffinity"], "a one-off run goes to the node the NFS server is on now"
    for key in ("securityContext", "containers", "restartPolicy", "automountServiceAccountToken"):
        assert cron[key] == one_off[key], key


def test_a_config_without_schedule_removes_the_cronjobs(cfg: Any, cluster: FakeCluster) -> None:
    schedule.sync(None, cfg, "", lambda _: None)
    off = cfg.model_copy(update={"backup": cfg.backup.model_copy(update={"schedule": None})})
    lines = schedule.sync(None, off, "", lambda _: None)
    assert lines == [f"scheduled backups removed ({cfg.namespace}/qhub-backup-cron-meta, "
                     f"{NFS_NS}/qhub-backup-cron-files)"]
    deleted = {path for method, path, _ in cluster.calls if method == "DELETE"}
    for part, namespace in (("meta", cfg.namespace), ("files", NFS_NS)):
        for kind in ("cronjobs", "configmaps", "secrets", "networkpolicies"):
            assert any(p.endswith(f"/namespaces/{namespace}/{kind}/qhub-backup-cron-{part}") for p in deleted), kind
    assert schedule.sync(None, off, "", lambda _: None) == [], "nothing left to remove"


def test_a_missing_credential_names_the_field_and_the_secret(cfg: Any, cluster: FakeCluster) -> None:
    cluster.objects.pop(f"/api/v1/namespaces/{cfg.namespace}/secrets/backup-s3")
    with pytest.raises(UserError) as caught:
        schedule.sync(None, cfg, "", lambda _: None)
    assert "backup.access_key_id" in caught.value.message and f"{cfg.namespace}/backup-s3" in caught.value.message
    assert "kubectl -n qhub create secret generic backup-s3" in caught.value.hint


def _job(part: str, minute: int, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": f"qhub-backup-cron-{part}-{minute}", "namespace": "ns",
                         "creationTimestamp": f"2026-11-30T0{minute % 10}:00:00Z"}, "status": status}


def test_status_says_when_the_last_runs_started_and_how_they_ended(cfg: Any, cluster: FakeCluster) -> None:
    assert schedule.last_runs(None, cfg)[1:] == [
        f"  meta: no CronJob {cfg.namespace}/qhub-backup-cron-meta; `qhubctl deploy` creates it",
        f"  files: no CronJob {NFS_NS}/qhub-backup-cron-files; `qhubctl deploy` creates it"]
    schedule.sync(None, cfg, "", lambda _: None)
    cluster.objects[f"/apis/batch/v1/namespaces/{cfg.namespace}/jobs"] = {"items": [
        _job("meta", 1, {"succeeded": 1, "startTime": "2026-11-30T01:00:01Z",
                         "completionTime": "2026-11-30T01:02:00Z"}),
        _job("meta", 2, {"failed": 1, "startTime": "2026-11-30T02:00:01Z", "conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"}]})]}
    lines = schedule.last_runs(None, cfg)
    assert lines[0] == "scheduled backup: 30 2 * * MON-FRI (Europe/Berlin) to s3://qhub-backups/demo"
    assert lines[1] == ("  meta: last run started 2026-11-30T02:00:01Z: FAILED (DeadlineExceeded: Job was active "
                        "longer than specified deadline); its log: kubectl -n ns logs job/qhub-backup-cron-meta-2")
    assert lines[2] == "  files: no run yet"
    cluster.objects[f"/apis/batch/v1/namespaces/{NFS_NS}/jobs"] = {"items": [
        _job("files", 1, {"succeeded": 1, "startTime": "2026-11-30T01:00:01Z",
                          "completionTime": "2026-11-30T01:09:00Z"})]}
    assert schedule.last_runs(None, cfg)[2] == ("  files: last run started 2026-11-30T01:00:01Z: succeeded, "
                                                "finished 2026-11-30T01:09:00Z")
    selectors = {q["labelSelector"] for m, p, q in cluster.calls if m == "GET" and p.endswith("/jobs")}
    assert "qhub.dev/backup-cron=files" in next(s for s in selectors if p_in(s, "files")), selectors


def p_in(selector: str, part: str) -> bool:
    return f"qhub.dev/backup-cron={part}" in selector and "app.kubernetes.io/instance=qhub" in selector


def test_agent_names_a_scheduled_run_after_its_minute_and_forgets_with_restic() -> None:
    minute = int(datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc).timestamp() // 60)
    assert agent.run_id(f"qhub-backup-cron-meta-{minute}") == "20261130T030000Z"
    assert agent.run_id(f"qhub-backup-cron-files-{minute}") == "20261130T030000Z", "both parts: one run"
    started = datetime(2026, 11, 30, 9, 15, 7, tzinfo=timezone.utc)
    assert agent.run_id("a-manual-run", started) == agent.run_id("", started) == "20261130T091507Z"
    assert agent.forget_args("files", 3) == ["forget", "--json", "--tag", "part=files", "--group-by", "host",
                                             "--keep-last", "3", "--prune"]


def test_agent_counts_what_forget_kept_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    report = [{"host": "qhub", "keep": [{"id": "c"}], "remove": [{"id": "a"}, {"id": "b"}]}]

    def restic(*args: str, capture: bool = False) -> str:
        calls.append(args)
        return json.dumps(report) + "\nloading indexes...\nremoved 2 packs\n"

    monkeypatch.setattr(agent, "restic", restic)
    assert agent.forget("meta", 1) == {"kept": 1, "forgot": 2}
    assert calls == [tuple(agent.forget_args("meta", 1))]


def test_agent_refuses_a_scheduled_meta_run_without_the_uid_record(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "SOURCE", tmp_path)
    monkeypatch.setattr(agent, "ensure_repository", lambda: False)
    with pytest.raises(agent.Refused, match="qhub-identities"):
        agent.backup({"release": "qhub", "run": "r", "expect": ["identities.json"]}, "meta")


def test_one_off_keep_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        run.backup(None, load_config(CONFIGS / "local.ok.minimal.yaml", environ={}), parse(str(tmp_path)),
                   config_text="", key_path=tmp_path / "k", say=print, progress=print, keep=2)
    assert "--keep needs an s3:// destination" in caught.value.message and "--keep" in caught.value.hint


def test_with_existing_storage_the_files_part_has_a_namespace_and_a_volume_of_its_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The release namespace enforces restricted; the files part runs in <namespace>-backup (baseline) on a second
    PersistentVolume with the shared volume's source, which never deletes the data."""
    cfg = load_config(CONFIGS / "existing.ok.backup-schedule.yaml", environ={})
    fake = FakeCluster(cfg)
    shared = {"spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                       "csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1::fsap-2"},
                       "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "efs",
                       "claimRef": {"namespace": cfg.namespace, "name": "qhub-shared"}, "volumeMode": "Filesystem"}}
    fake.objects[f"/api/v1/namespaces/{cfg.namespace}/persistentvolumeclaims/qhub-shared"] = {
        "spec": {"volumeName": "pvc-123"}}
    fake.objects["/api/v1/persistentvolumes/pvc-123"] = shared
    monkeypatch.setattr(kube, "_rest", fake.rest)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path))
    schedule.sync(None, cfg, "", lambda _: None)
    namespace = f"{cfg.namespace}-backup"
    created = next(body for method, path, body in fake.calls if method == "POST" and path == "/api/v1/namespaces")
    assert created["metadata"]["name"] == namespace
    assert created["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    volume = fake.applied("PersistentVolume")["qhub-backup-qhub-shared"]
    assert volume["spec"]["csi"] == shared["spec"]["csi"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain", "deleting it leaves the data"
    assert volume["spec"]["claimRef"] == {"namespace": namespace, "name": "qhub-shared"}
    claim = fake.applied("PersistentVolumeClaim")["qhub-shared"]
    assert claim["metadata"]["namespace"] == namespace, "never a claim in the release namespace"
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName":
                             "qhub-backup-qhub-shared", "resources": {"requests": {"storage": "100Gi"}},
                             "volumeMode": "Filesystem"}
    files = fake.applied("CronJob")["qhub-backup-cron-files"]
    assert files["metadata"]["namespace"] == namespace
    pod = files["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "share", "persistentVolumeClaim": {"claimName": "qhub-shared"}} in pod["volumes"]
    assert "affinity" not in pod and pod["nodeSelector"] == {"qhub.dev/node-group": "general"}, \
        "a ReadWriteMany volume: anywhere the general group runs"
    assert fake.applied("Secret")["qhub-backup-cron-files"]["metadata"]["namespace"] == namespace
    assert fake.applied("CronJob")["qhub-backup-cron-meta"]["metadata"]["namespace"] == cfg.namespace

    schedule.remove(None, cfg)
    deleted = [path for method, path, _ in fake.calls if method == "DELETE"]
    assert f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/qhub-shared" in deleted
    assert "/api/v1/persistentvolumes/qhub-backup-qhub-shared" in deleted
    assert not any(f"/namespaces/{cfg.namespace}/persistentvolumeclaims" in p for p in deleted), deleted
    assert "/api/v1/persistentvolumes/pvc-123" not in deleted


def test_an_unbound_shared_volume_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "existing.ok.backup-schedule.yaml", environ={})
    monkeypatch.setattr(kube, "_rest", FakeCluster(cfg).rest)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path))
    with pytest.raises(ClusterError, match="is not bound to a PersistentVolume yet"):
        schedule.sync(None, cfg, "", lambda _: None)


def test_deploy_keeps_the_schedule_in_step_also_when_the_release_is_unchanged(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CronJobs are not part of the Helm release: an unchanged release still gets them, a dry run does not."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from qhubctl.cli import app
    from qhubctl.commands import deploy as command

    synced: list[str] = []
    plan = SimpleNamespace(changed=False, release="qhub", chart_version="1.0.0",
                           deployed=SimpleNamespace(revision=4))
    monkeypatch.setattr(command, "kube_target", lambda cfg, kubeconfig: (None, None))
    monkeypatch.setattr(command, "Helm", lambda path, context: None)
    monkeypatch.setattr(command.kube, "api_client", lambda path, context: None)
    monkeypatch.setattr(command, "make_plan", lambda cfg, helm, api: plan)
    monkeypatch.setattr(command.schedule, "sync", lambda api, cfg, text, say: synced.append(text) or ["synced"])
    config = tmp_path / "qhub-config.yaml"
    config.write_text((CONFIGS / "local.ok.backup-schedule.yaml").read_text())
    dry = CliRunner().invoke(app, ["deploy", "-c", str(config), "--dry-run"])
    assert dry.exit_code == 0 and synced == [], dry.output
    result = CliRunner().invoke(app, ["deploy", "-c", str(config), "--yes"])
    assert result.exit_code == 0 and "no changes" in result.output and "synced" in result.output, result.output
    assert synced == [config.read_text()], "the ConfigMap gets the config file as written"


@pytest.mark.parametrize("fixture", ["local.ok.backup-schedule.yaml", "existing.ok.backup-schedule.yaml"])
def test_every_object_is_valid_kubernetes_and_the_meta_pod_meets_restricted(
        fixture: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chart.manifests import kube_versions, pod_problems, validation_errors

    cfg = load_config(CONFIGS / fixture, environ={})
    fake = FakeCluster(cfg)
    fake.objects[f"/api/v1/namespaces/{cfg.namespace}/persistentvolumeclaims/qhub-shared"] = {
        "spec": {"volumeName": "pvc-1"}}
    fake.objects["/api/v1/persistentvolumes/pvc-1"] = {"spec": {
        "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"], "hostPath": {"path": "/srv/shared"},
        "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path"}}
    monkeypatch.setattr(kube, "_rest", fake.rest)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path))
    schedule.sync(None, cfg, "", lambda _: None)
    objects = [body for method, _, body in fake.calls if method == "PATCH"]
    assert {o["kind"] for o in objects} >= {"CronJob", "ConfigMap", "Secret", "NetworkPolicy"}
    for version in kube_versions():
        assert validation_errors(objects, version) == [], version
    meta = [o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"].endswith("-meta")]
    assert pod_problems(meta) == []


def test_destroy_removes_the_schedule_before_the_release(cfg: Any, cluster: FakeCluster) -> None:
    from qhubctl.deploy import destroy

    class Helm:
        async def deployed(self, release: str, namespace: str) -> object:
            return object()

        async def uninstall(self, release: str, namespace: str) -> None:
            cluster.calls.append(("UNINSTALL", release, None))

    schedule.sync(None, cfg, "", lambda _: None)
    destroy(cfg, Helm(), None)  # type: ignore[arg-type]
    after = [(method, path) for method, path, _ in cluster.calls]
    uninstalled = after.index(("UNINSTALL", "qhub"))
    for part, namespace in (("meta", cfg.namespace), ("files", NFS_NS)):
        gone = after.index(("DELETE", f"/apis/batch/v1/namespaces/{namespace}/cronjobs/qhub-backup-cron-{part}"))
        assert gone < uninstalled, "no scheduled run starts against a release being removed"
