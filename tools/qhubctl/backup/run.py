"""`qhubctl backup`, and the Jobs every backup or restore runs (qhubctl.backup.restore drives a restore): one Job per
part of the platform, each with a restic repository.

- part `meta`, in the release namespace as the hub's uid under Pod Security `restricted`: the hub's database (its
  PVC), conda-store's database (over the network; the PostgreSQL NetworkPolicy admits pods labelled
  component=backup), the uid record, the config file and the chart values, given to the Job in a ConfigMap.
- part `files`, as root with only the capabilities the work needs (backup: DAC_OVERRIDE on a read-only mount;
  restore: CHOWN, DAC_OVERRIDE, FOWNER, FSETID) where the shared filesystem is reachable as root (see
  qhubctl.homes.target).

The archive is encrypted with a key kept in the Secret <release>-backup-key and in a file on this machine
(--key-file, default $QHUB_CACHE/backup-keys/<project>.key): a platform destroyed with its data loses the Secret,
and only the file opens the archive then.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from qhubctl import homes, kube, oneshot
from qhubctl.backup import transfer
from qhubctl.backup.destination import Destination, s3_settings
from qhubctl.config.model import QHubConfig
from qhubctl.errors import ClusterError, RefusedError, UserError

AGENT = Path(__file__).with_name("agent.py")
SOURCE_DIR = "/etc/qhub-backup"
LABELS = {"app.kubernetes.io/part-of": "qhub", "app.kubernetes.io/component": "backup",
          "app.kubernetes.io/managed-by": "qhubctl"}
# Pod Security `baseline` (what a restricted namespace is lowered to for the files Job) admits DAC_OVERRIDE but not
# DAC_READ_SEARCH; a backup mounts the share read-only, so DAC_OVERRIDE only lets it read every file.
CAPABILITIES = {"backup": ["DAC_OVERRIDE"], "restore": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
                "verify": []}
# what the terminal is told runs while a restricted namespace is lowered to baseline for a files Job
JOB_WHY = {mode: f"the {mode} Job (root, {', '.join(caps)})" for mode, caps in CAPABILITIES.items()}
KEY_NAME = "backup-key"
# the label the Job controller gives its pods: the agent names a scheduled run after its Job (see agent.run_id)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
STAGING_SIZE = "20Gi"
Say = Callable[[str], None]


@dataclass
class Part:
    """Where one part's Job runs, what it mounts and as whom."""

    name: str
    namespace: str
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    pod_security: dict[str, Any]
    root: bool
    env: list[dict[str, Any]] = field(default_factory=list)
    node: str = ""
    placement: dict[str, Any] = field(default_factory=dict)
    # labels of a pod whose node the Job must share (a scheduled run: which node that is is known only then)
    beside: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    run: str
    reports: dict[str, dict[str, Any]]
    seconds: float
    transferred: dict[str, int] = field(default_factory=dict)  # bytes copied to or from a local directory


def key_file(cfg: QHubConfig, given: Path | None) -> Path:
    base = Path(os.environ.get("QHUB_CACHE") or Path.home() / ".cache" / "qhub")
    return given or base / "backup-keys" / f"{cfg.project_name}.key"


def resolve_key(api: Any, cfg: QHubConfig, path: Path, *, create: bool, say: Say) -> str:
    """The archive's key: the file, else the cluster's Secret (then written to the file), else a new one (backup)."""
    secret = f"{cfg.release_name}-{KEY_NAME}"
    stored = kube.read_secret(api, cfg.namespace, secret) or {}
    if path.is_file():
        key = path.read_text().strip()
        if not key:
            raise UserError(f"the key file {path} is empty", hint="give the file the first backup wrote (--key-file)")
        if stored.get("key") and stored["key"] != key:
            raise UserError(f"the key in {path} differs from the cluster's Secret {cfg.namespace}/{secret}",
                            hint="pass the key file of this platform's archive with --key-file")
    elif stored.get("key"):
        key = stored["key"]
        _write_key(path, key)
        say(f"key of the archive written to {path}: keep it safe, without it the archive cannot be read")
    elif create:
        key = secrets.token_urlsafe(32)
        _write_key(path, key)
        say(f"new archive key written to {path}: keep a copy somewhere safe, without it the archive cannot be read")
    else:
        raise UserError(f"no key to open the archive: {path} does not exist and the cluster has no Secret "
                        f"{cfg.namespace}/{secret}", hint="pass the key file the backup wrote with --key-file")
    if stored.get("key") != key:
        kube.write_secret(api, cfg.namespace, secret, {"key": key})
    return key


def _write_key(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")


def sibling_image(hub_image: str, name: str) -> str:
    """qhub/backup next to the hub's qhub/jupyterhub: same registry, same tag."""
    path, _, tag = hub_image.rpartition(":")
    if "/" in tag or not path:
        path, tag = hub_image, ""
    base = path.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f":{tag}" if tag else "")


def hub_deployment(api: Any, cfg: QHubConfig) -> dict[str, Any]:
    hub = kube._rest(api, "GET", f"/apis/apps/v1/namespaces/{cfg.namespace}/deployments/{cfg.release_name}-hub")
    if hub is None:
        raise ClusterError(f"no hub Deployment {cfg.release_name}-hub in namespace {cfg.namespace}",
                           hint="deploy first: `qhubctl deploy`")
    return dict(hub)


def backup_image(hub: dict[str, Any]) -> str:
    """qhub/backup from the deployed hub Deployment's registry and tag."""
    return sibling_image(str(hub["spec"]["template"]["spec"]["containers"][0]["image"]), "backup")


def parts(api: Any, cfg: QHubConfig, hub: dict[str, Any], mode: str, staging: bool,
          scheduled: bool = False) -> list[Part]:
    """The two parts of this platform (`hub`: its hub Deployment); `staging` mounts a volume for a local
    directory's repository at /repo. A `scheduled` part runs beside the pod whose ReadWriteOnce volume it mounts
    (the hub's, the NFS server's) instead of on the node that pod is on now."""
    spec = hub["spec"]["template"]["spec"]
    placement = {k: spec[k] for k in ("nodeSelector", "tolerations", "imagePullSecrets") if spec.get(k)}
    hub_pods = kube._items(api, f"/api/v1/namespaces/{cfg.namespace}/pods",
                           labelSelector=f"app.kubernetes.io/instance={cfg.release_name},"
                                         "app.kubernetes.io/component=hub")
    hub_node = next((p["spec"].get("nodeName", "") for p in hub_pods if p["spec"].get("nodeName")), "")
    common_volumes = [{"name": "source", "configMap": {"name": ""}}, {"name": "work", "emptyDir": {}},
                      {"name": "tmp", "emptyDir": {}}]
    common_mounts = [{"name": "source", "mountPath": SOURCE_DIR, "readOnly": True},
                     {"name": "work", "mountPath": "/work"}, {"name": "tmp", "mountPath": "/tmp"}]
    meta_volumes, meta_mounts = list(common_volumes), list(common_mounts)
    db_claim = f"{cfg.release_name}-hub-db"
    if kube._rest(api, "GET", f"/api/v1/namespaces/{cfg.namespace}/persistentvolumeclaims/{db_claim}"):
        meta_volumes.append({"name": "hub-db", "persistentVolumeClaim": {"claimName": db_claim}})
        meta_mounts.append({"name": "hub-db", "mountPath": "/srv/hub-db"})
    meta = Part("meta", cfg.namespace, meta_volumes, meta_mounts, dict(spec.get("securityContext") or {}),
                root=False, env=_postgres_env(cfg), node=hub_node if mode == "backup" and not scheduled else "",
                placement=placement, beside=_selector(cfg, "hub") if scheduled else {})
    meta.pod_security.pop("supplementalGroups", None)
    where = homes.target(api, cfg, placement)
    if scheduled and where.node:
        where = replace(where, node="")
        beside_files = _selector(cfg, "nfs")
    else:
        beside_files = {}
    share_mount: dict[str, Any] = {"name": "share", "mountPath": "/share", "readOnly": mode != "restore"}
    if where.sub_path:
        share_mount["subPath"] = where.sub_path
    files = Part("files", where.namespace,
                 [*common_volumes, {"name": "share", "persistentVolumeClaim": {"claimName": where.claim}}],
                 [*common_mounts, share_mount],
                 {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}},
                 root=True, node=where.node, placement=where.placement, beside=beside_files)
    out = [meta, files]
    if staging:
        for part in out:
            part.volumes.append({"name": "repo", "persistentVolumeClaim": {"claimName": staging_claim(cfg, part.name)}})
            part.mounts.append({"name": "repo", "mountPath": "/repo"})
    return out


def _selector(cfg: QHubConfig, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": cfg.release_name, "app.kubernetes.io/component": component}


def _postgres_env(cfg: QHubConfig) -> list[dict[str, Any]]:
    if not cfg.components.conda_store:
        return []
    secret = f"{cfg.release_name}-conda-store"
    return [{"name": "PGHOST", "value": f"{cfg.release_name}-conda-store-postgresql"},
            {"name": "PGUSER", "value": "conda-store"}, {"name": "PGDATABASE", "value": "conda-store"},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "postgresql-password"}}}]


def staging_claim(cfg: QHubConfig, part: str) -> str:
    return f"{cfg.release_name}-backup-{part}"


def job_name(cfg: QHubConfig, mode: str, part: str) -> str:
    return f"{cfg.release_name}-{mode}-{part}"


def job_spec(image: str, part: Part, mode: str, params: dict[str, Any], secret: str, repository: str,
             source: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The spec of a Job running the agent for one part: a one-off run's (job_manifest) and a scheduled run's
    (qhubctl.backup.schedule). `source` is the volume the agent and its texts come from, `secret` the Secret with
    RESTIC_PASSWORD and the bucket's credentials."""
    caps = CAPABILITIES[mode] if part.root else []
    env = [{"name": "QHUB_JOB", "value": json.dumps(params)}, {"name": "QHUB_PART", "value": part.name},
           {"name": "QHUB_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}},
           {"name": "RESTIC_REPOSITORY", "value": repository}, {"name": "HOME", "value": "/work"}, *part.env]
    volumes = [dict(v) for v in part.volumes]
    volumes[0] = {"name": "source", **source}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": part.pod_security,
        "containers": [{
            "name": "agent",
            "image": image,
            "command": ["python3", f"{SOURCE_DIR}/agent.py", mode],
            "env": env,
            "envFrom": [{"secretRef": {"name": secret}}],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "privileged": False,
                                "capabilities": {"drop": ["ALL"], **({"add": caps} if caps else {})}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            "volumeMounts": part.mounts,
        }],
        "volumes": volumes,
        **part.placement,
    }
    if part.node:  # through the scheduler (not nodeName), so a new staging volume is provisioned on that node
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [part.node]}]}]}}}
    elif part.beside:  # a ReadWriteOnce volume is mounted on one node at a time: the one its pod runs on
        pod["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": part.beside}, "topologyKey": "kubernetes.io/hostname"}]}}
    return {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod}}


def job_manifest(name: str, image: str, part: Part, mode: str, params: dict[str, Any], secret: str,
                 repository: str) -> dict[str, Any]:
    """A one-off run's Job, its agent and texts from the ConfigMap of the same name."""
    labels = {**LABELS, "app.kubernetes.io/instance": params["release"]}
    spec = job_spec(image, part, mode, params, secret, repository, {"configMap": {"name": name}}, labels)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
            "spec": {**spec, "ttlSecondsAfterFinished": 3600}}


def source_configmap(name: str, texts: dict[str, str], release: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {**LABELS, "app.kubernetes.io/instance": release}},
            "data": {"agent.py": AGENT.read_text(), **texts}}


def run_secret(name: str, key: str, s3_env: dict[str, str], release: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": {**LABELS, "app.kubernetes.io/instance": release}},
            "stringData": {"RESTIC_PASSWORD": key, **s3_env}}


def ensure_claim(api: Any, namespace: str, name: str, size: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    if kube._rest(api, "GET", f"{path}/{name}"):
        return
    kube._rest(api, "POST", path, body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "labels": LABELS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})


class Runner:
    """Runs one part's Job: ConfigMap, Secret, Job; follows its log; cleans up."""

    def __init__(self, api: Any, cfg: QHubConfig, image: str, dest: Destination, key: str, say: Say,
                 progress: Say, timeout: float) -> None:
        self.api, self.cfg, self.image, self.dest, self.key = api, cfg, image, dest, key
        self.say, self.progress, self.timeout = say, progress, timeout
        self.endpoint, self.s3_env = s3_settings() if dest.is_s3 else ("", {})

    def repository(self, part: str) -> str:
        return self.dest.s3_repository(part, self.endpoint) if self.dest.is_s3 else "/repo"

    def start(self, part: Part, mode: str, params: dict[str, Any], texts: dict[str, str]) -> str:
        name = job_name(self.cfg, mode, part.name)
        base = f"/api/v1/namespaces/{part.namespace}"
        jobs = f"/apis/batch/v1/namespaces/{part.namespace}/jobs"
        self.cleanup(part, mode)
        oneshot.gone(self.api, f"{jobs}/{name}")
        kube._rest(self.api, "POST", f"{base}/configmaps",
                   body=source_configmap(name, texts, self.cfg.release_name))
        kube._rest(self.api, "POST", f"{base}/secrets",
                   body=run_secret(name, self.key, self.s3_env, self.cfg.release_name))
        kube._rest(self.api, "POST", jobs, body=job_manifest(name, self.image, part, mode, params, name,
                                                             self.repository(part.name)))
        return name

    def cleanup(self, part: Part, mode: str) -> None:
        name = job_name(self.cfg, mode, part.name)
        for path in (f"/apis/batch/v1/namespaces/{part.namespace}/jobs/{name}",
                     f"/api/v1/namespaces/{part.namespace}/configmaps/{name}",
                     f"/api/v1/namespaces/{part.namespace}/secrets/{name}"):
            kube._rest(self.api, "DELETE", path, query={"propagationPolicy": "Background"})

    def report(self, part: Part, name: str, *, until_report: bool = False) -> dict[str, Any]:
        """Follow the Job's log until its report line (or the Job's end); the report."""
        deadline = time.monotonic() + self.timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = oneshot.log(self.api, part.namespace, name).splitlines()
            for line in lines[seen:]:
                event = _event(line)
                if event.get("event") == "progress":
                    self.progress(f"{part.name}: {event['percent']}% ({event['files']} files, "
                                  f"{event['bytes'] / 1e6:.1f} of {event['totalBytes'] / 1e6:.1f} MB)")
                elif event.get("event") == "warning":
                    self.say(f"{part.name}: {event['message']}")
                elif event.get("event") == "report":
                    return event
            seen = len(lines)
            job = oneshot.finished(self.api, part.namespace, name)
            if job is not None:
                lines = oneshot.log(self.api, part.namespace, name).splitlines()
                for line in reversed(lines):
                    if _event(line).get("event") == "report":
                        return _event(line)
                pod = oneshot.pod_of(self.api, part.namespace, name) or {}
                raise ClusterError(f"the {part.name} Job {part.namespace}/{name} ended without a report: "
                                   f"{_why(pod)}\n{chr(10).join(lines[-20:])}",
                                   hint=f"kubectl -n {part.namespace} describe job {name}")
            self._check_pod(part, name)
            time.sleep(2 if not until_report else 1)
        raise ClusterError(f"the {part.name} Job {part.namespace}/{name} did not report within {self.timeout:.0f}s",
                           hint=f"kubectl -n {part.namespace} logs job/{name}")

    def _check_pod(self, part: Part, name: str) -> None:
        pod = oneshot.pod_of(self.api, part.namespace, name)
        if pod is None:
            refused = oneshot.create_failures(self.api, part.namespace, name)
            if refused:
                raise ClusterError(f"the {part.name} Job {part.namespace}/{name} cannot create its pod: {refused}",
                                   hint=f"kubectl -n {part.namespace} describe job {name}")
        for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in kube.WAITING_ERRORS:
                raise ClusterError(f"the {part.name} Job cannot start: {waiting['reason']}: "
                                   f"{waiting.get('message', '')}",
                                   hint="the qhub/backup image must be in the registry the hub's image comes from "
                                        "(`make images`)")

    def running_pod(self, part: Part, name: str) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            pod = oneshot.pod_of(self.api, part.namespace, name) or {}
            if (pod.get("status") or {}).get("phase") == "Running":
                return str(pod["metadata"]["name"])
            if oneshot.finished(self.api, part.namespace, name):
                raise ClusterError(f"the {part.name} Job {name} ended before the transfer: "
                                   f"{oneshot.log(self.api, part.namespace, name)[-1500:]}")
            self._check_pod(part, name)
            time.sleep(1)
        raise ClusterError(f"the {part.name} Job {name} did not start within {self.timeout:.0f}s")


def _event(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _why(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (status.get("state") or {}).get("terminated") or {}
        if term:
            return f"{term.get('reason', '')} (exit {term.get('exitCode')})"
    return (pod.get("status") or {}).get("phase", "no pod")


def refuse(report: dict[str, Any]) -> None:
    if report.get("refused"):
        raise RefusedError(report["message"])
    raise ClusterError(f"{report.get('part')}: {report['message']}")


def backup(api: Any, cfg: QHubConfig, dest: Destination, *, config_text: str, key_path: Path, say: Say,
           progress: Say, timeout: float = 3600, staging_size: str = STAGING_SIZE, keep: int | None = None) -> Outcome:
    """One run of both parts; `keep`: then forget all but the newest `keep` snapshots of each part and prune."""
    if keep is not None and not dest.is_s3:
        raise UserError(f"--keep needs an s3:// destination; {dest.describe()} is a local directory, a copy that "
                        "only ever gains files (restic's pruning would delete files in the staging volume, not "
                        "there)", hint="leave out --keep, or back up to s3://bucket/prefix")
    started = time.monotonic()
    run = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    hub = hub_deployment(api, cfg)
    image = backup_image(hub)
    key = resolve_key(api, cfg, key_path, create=True, say=say)
    runner = Runner(api, cfg, image, dest, key, say, progress, timeout)
    identities = homes.identities(api, cfg) if cfg.components.jupyterhub else {}
    from qhubctl.values import chart_values  # imported here: it reads the chart

    texts = {"identities.json": json.dumps(identities, indent=1, sort_keys=True),
             "qhub-config.yaml": config_text,
             "values.yaml": yaml.safe_dump(chart_values(cfg), sort_keys=True)}
    params = {"run": run, "release": cfg.release_name, "hold": not dest.is_s3,
              "condaStore": cfg.components.conda_store, "keep": keep or 0}
    reports: dict[str, dict[str, Any]] = {}
    moved: dict[str, int] = {}
    todo = parts(api, cfg, hub, "backup", staging=not dest.is_s3)
    with ExitStack() as lowered:
        running: dict[str, tuple[Part, str]] = {}
        current = ""  # the part being followed: on failure its Job stays for its log, the others go
        try:
            for part in todo:  # both parts run at once: a snapshot closer in time, and half the waiting
                if not dest.is_s3:
                    ensure_claim(api, part.namespace, staging_claim(cfg, part.name), staging_size)
                lowered.enter_context(oneshot.pod_security_lowered(api, part.namespace, JOB_WHY["backup"], say,
                                                                   needed=part.root))
                name = runner.start(part, "backup", params, texts if part.name == "meta" else {})
                running[part.name] = (part, name)
                say(f"{part.name}: Job {part.namespace}/{name} started")
            for part, name in list(running.values()):
                current = part.name
                report = runner.report(part, name)
                if not report.get("ok"):
                    refuse(report)
                if not dest.is_s3:
                    pod = runner.running_pod(part, name)
                    moved[part.name] = transfer.download(api, part.namespace, pod, dest.part_dir(part.name),
                                                         progress)
                    transfer.release(api, part.namespace, pod)
                oneshot.wait(api, part.namespace, name, timeout, f"{part.name} backup Job")
                reports[part.name] = report
                runner.cleanup(part, "backup")
                del running[part.name]
        except BaseException:
            for part, _ in running.values():
                if part.name != current:
                    runner.cleanup(part, "backup")
            raise
    outcome = Outcome(run, reports, time.monotonic() - started, moved)
    if dest.local is not None:
        manifests = dest.local / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / f"{run}.json").write_text(json.dumps(manifest(outcome, cfg), indent=1, sort_keys=True))
    return outcome


def manifest(outcome: Outcome, cfg: QHubConfig) -> dict[str, Any]:
    return {"run": outcome.run, "project": cfg.project_name, "release": cfg.release_name,
            "namespace": cfg.namespace, "seconds": round(outcome.seconds, 2),
            "parts": {name: {k: v for k, v in r.items() if k not in ("event", "ok")}
                      for name, r in outcome.reports.items()}}
