"""Scheduled backups (config `backup:`): `qhubctl deploy` keeps, per part, a CronJob, its ConfigMap, its Secret and
its NetworkPolicy in step with the config; `qhubctl destroy`, or a config without `backup.schedule`, removes them.

Each CronJob's Jobs are the one-off runs' Jobs (run.job_spec), with three differences:
- the part runs beside the pod whose ReadWriteOnce volume it mounts (the hub's database, the NFS server's disk)
  through pod affinity, wherever that pod is when the run starts;
- the meta part reads the hub's live uid record: the ConfigMap <release>-identities is projected into its source
  folder next to the config file and chart values, so each run takes the record as it is then;
- the files part runs as root only where the namespace admits it without lowering: the NFS server's (Pod Security
  privileged) with storage.type nfs. With storage.type existing the shared volume lives in the release namespace,
  which enforces `restricted`, and a CronJob cannot lower that around each run as `qhubctl backup` does; so the
  files part runs in a namespace of its own, <namespace>-backup, that enforces `baseline` (root with DAC_OVERRIDE,
  nothing else runs there), and reaches the share through a second PersistentVolume on the same storage (a copy of
  the shared volume's source, reclaim policy Retain: deleting it never touches the data) bound to a claim of the
  same name there.

The Secret holds the archive's key (the one in <release>-backup-key and in the local key file) and the bucket's
credentials, copied from the config's secret references at each deploy: a Secret cannot be read from another
namespace, and the files part may run in the NFS server's. Rotate credentials by updating them and deploying.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import yaml

from qhubctl import homes, kube, podsecurity, sharemirror
from qhubctl.backup import run
from qhubctl.backup.destination import parse, s3_settings
from qhubctl.config.base import SecretRef
from qhubctl.config.model import QHubConfig
from qhubctl.errors import UserError

# the label telling a scheduled run's pods (and their NetworkPolicy) apart from a one-off run's
CRON_LABEL = "qhub.dev/backup-cron"
STARTING_DEADLINE = 3600  # a run the controller could not start within an hour of its time is skipped
HISTORY = 3               # finished Jobs kept per CronJob, successful and failed each
KINDS = {"ConfigMap": "/api/v1/namespaces/{ns}/configmaps", "Secret": "/api/v1/namespaces/{ns}/secrets",
         "CronJob": "/apis/batch/v1/namespaces/{ns}/cronjobs",
         "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
         "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
         "PersistentVolume": "/api/v1/persistentvolumes"}
PER_PART = ("ConfigMap", "Secret", "CronJob", "NetworkPolicy")
Say = Callable[[str], None]


def name(cfg: QHubConfig, part: str) -> str:
    """The CronJob of a part and its ConfigMap, Secret and NetworkPolicy (at most 51 characters: the controller
    adds 11 to a CronJob's name for its Jobs, and a Job's name has at most 63)."""
    return f"{cfg.release_name}-backup-cron-{part}"


def namespaces(cfg: QHubConfig) -> dict[str, str]:
    """Where each part runs: meta in the release's namespace; files in the NFS server's (homes.target), or with
    storage.type existing in the backup namespace."""
    if cfg.storage.type == "existing":
        return {"meta": cfg.namespace, "files": share_namespace(cfg)}
    return {"meta": cfg.namespace, "files": podsecurity.nfs_namespace(cfg) or cfg.namespace}


def share_namespace(cfg: QHubConfig) -> str:
    """storage.type existing: the namespace of the scheduled files part alone (Pod Security baseline)."""
    return f"{cfg.namespace}-backup"


def mirror_name(cfg: QHubConfig) -> str:
    """The second PersistentVolume on the shared storage (cluster-wide name)."""
    return f"{share_namespace(cfg)}-{cfg.release_name}-shared"


def _mirror_objects(api: Any, cfg: QHubConfig, claim: str) -> list[dict[str, Any]]:
    """The shared volume again for the backup namespace (sharemirror), labelled as the files part's."""
    return sharemirror.of_claim(api, cfg.namespace, claim, mirror_name(cfg), share_namespace(cfg),
                                labels(cfg, "files"), "the scheduled files backup")


def labels(cfg: QHubConfig, part: str) -> dict[str, str]:
    return {**run.LABELS, "app.kubernetes.io/instance": cfg.release_name, CRON_LABEL: part}


def params(cfg: QHubConfig) -> dict[str, Any]:
    """The agent's parameters: no `run`, the agent names each run after its scheduled minute (agent.run_id)."""
    return {"release": cfg.release_name, "hold": False, "condaStore": cfg.components.conda_store,
            "keep": cfg.backup.keep or 0, "expect": [homes.IDENTITIES_KEY] if cfg.components.jupyterhub else []}


def source_volume(cfg: QHubConfig, part: str) -> dict[str, Any]:
    """The agent's folder: the part's ConfigMap, and for meta the hub's live uid record beside it."""
    own = {"configMap": {"name": name(cfg, part)}}
    if part != "meta" or not cfg.components.jupyterhub:
        return own
    identities = {"configMap": {"name": f"{cfg.release_name}-identities", "optional": True,
                                "items": [{"key": homes.IDENTITIES_KEY, "path": homes.IDENTITIES_KEY}]}}
    return {"projected": {"sources": [own, identities]}}


def cronjob(cfg: QHubConfig, part: run.Part, image: str, repository: str) -> dict[str, Any]:
    assert cfg.backup.schedule is not None
    own = labels(cfg, part.name)
    spec = run.job_spec(image, part, "backup", params(cfg), name(cfg, part.name), repository,
                        source_volume(cfg, part.name), own)
    spec["activeDeadlineSeconds"] = cfg.backup.timeout_minutes * 60
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name(cfg, part.name), "namespace": part.namespace, "labels": own},
            "spec": {"schedule": cfg.backup.schedule, "timeZone": cfg.backup.time_zone,
                     "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": STARTING_DEADLINE,
                     "successfulJobsHistoryLimit": HISTORY, "failedJobsHistoryLimit": HISTORY,
                     "jobTemplate": {"metadata": {"labels": own}, "spec": spec}}}


def endpoint_egress(endpoint: str) -> dict[str, Any]:
    """Egress to the S3 endpoint's port: its address when the URL names one, else any address but the cloud's
    metadata service (a bucket's host name resolves to addresses that change)."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        address = ipaddress.ip_address(url.hostname or "")
        to = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    except ValueError:
        to = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}, {"ipBlock": {"cidr": "::/0"}}]
    return {"to": to, "ports": [{"protocol": "TCP", "port": port}]}


def network_policy(cfg: QHubConfig, part: str, namespace: str, endpoint: str) -> dict[str, Any]:
    """A scheduled run reaches DNS, the bucket and (meta) conda-store's database; nothing reaches it."""
    egress: list[dict[str, Any]] = [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        endpoint_egress(endpoint)]
    if part == "meta" and cfg.components.conda_store:
        database = {"app.kubernetes.io/instance": cfg.release_name,
                    "app.kubernetes.io/component": "conda-store-postgresql"}
        egress.append({"to": [{"podSelector": {"matchLabels": database}}],
                       "ports": [{"protocol": "TCP", "port": 5432}]})
    own = labels(cfg, part)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name(cfg, part), "namespace": namespace, "labels": own},
            "spec": {"podSelector": {"matchLabels": own}, "policyTypes": ["Ingress", "Egress"], "ingress": [],
                     "egress": egress}}


def manifests(cfg: QHubConfig, plan: list[run.Part], image: str, key: str, credentials: dict[str, str],
              texts: dict[str, str]) -> list[dict[str, Any]]:
    """Every object of the schedule, per part: ConfigMap (agent, and for meta the config file and chart values),
    Secret (key, bucket's credentials), CronJob, NetworkPolicy."""
    assert cfg.backup.destination is not None
    endpoint, s3_env = s3_settings({**credentials, "AWS_DEFAULT_REGION": cfg.backup.region,
                                    "AWS_ENDPOINT_URL": cfg.backup.endpoint_url()})
    dest = parse(cfg.backup.destination)
    objects: list[dict[str, Any]] = []
    for part in plan:
        own = name(cfg, part.name)
        config_map = run.source_configmap(own, texts if part.name == "meta" else {}, cfg.release_name)
        secret = run.run_secret(own, key, s3_env, cfg.release_name)
        for obj in (config_map, secret):
            obj["metadata"].update(namespace=part.namespace, labels=labels(cfg, part.name))
        objects += [config_map, secret, cronjob(cfg, part, image, dest.s3_repository(part.name, endpoint)),
                    network_policy(cfg, part.name, part.namespace, endpoint)]
    return objects


def credentials(api: Any, cfg: QHubConfig) -> dict[str, str]:
    """The bucket's access key from the config's secret references (read in the release's namespace) or
    QHUB_SECRET__backup__ variables."""
    found: dict[str, str] = {}
    for field, variable in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        value = getattr(cfg.backup, field)
        if isinstance(value, SecretRef):
            ref = value.secret_ref
            found[variable] = (kube.read_secret(api, cfg.namespace, ref.name) or {}).get(ref.key, "")
            if not found[variable]:
                raise UserError(f"backup.{field}: the Secret {cfg.namespace}/{ref.name} has no key {ref.key}",
                                hint=f"create it: kubectl -n {cfg.namespace} create secret generic {ref.name} "
                                     f"--from-literal={ref.key}=..., or point backup.{field} at the Secret that "
                                     "holds it")
        elif value is not None:
            found[variable] = value.get_secret_value()
    return found


def _apply(api: Any, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    path = KINDS[obj["kind"]].format(ns=meta.get("namespace", ""))
    kube._rest(api, "PATCH", f"{path}/{meta['name']}", query={"fieldManager": kube.FIELD_MANAGER, "force": "true"},
               body=obj, content_type=kube.APPLY_PATCH)


def sync(api: Any, cfg: QHubConfig, config_text: str, say: Say) -> list[str]:
    """Create or update the schedule's objects, or remove them when the config has no schedule; what it did."""
    if cfg.backup.schedule is None:
        gone = remove(api, cfg)
        return [f"scheduled backups removed ({', '.join(gone)})"] if gone else []
    hub = run.hub_deployment(api, cfg)
    image = run.backup_image(hub)
    key = run.resolve_key(api, cfg, run.key_file(cfg, None), create=True, say=say)
    from qhubctl.values import chart_values  # imported here: it reads the chart

    texts = {"qhub-config.yaml": config_text, "values.yaml": yaml.safe_dump(chart_values(cfg), sort_keys=True)}
    plan = run.parts(api, cfg, hub, "backup", staging=False, scheduled=True)
    objects = manifests(cfg, [replace(p, namespace=namespaces(cfg)[p.name]) for p in plan], image, key,
                        credentials(api, cfg), texts)
    if cfg.storage.type == "existing":
        kube.ensure_namespace(api, share_namespace(cfg), podsecurity.labels("baseline"))
        files = next(p for p in plan if p.name == "files")
        claim = next(v for v in files.volumes if v["name"] == "share")["persistentVolumeClaim"]["claimName"]
        objects = _mirror_objects(api, cfg, claim) + objects
    for obj in objects:
        _apply(api, obj)
    keep = (f"keeping the newest {cfg.backup.keep} snapshots of each part" if cfg.backup.keep
            else "keeping every snapshot")
    return [f"scheduled backups: {cfg.backup.schedule} ({cfg.backup.time_zone}) to {cfg.backup.destination}, "
            f"{keep}; CronJobs {', '.join(f'{p.namespace}/{name(cfg, p.name)}' for p in plan)}"]


def remove(api: Any, cfg: QHubConfig) -> list[str]:
    """Delete the schedule's objects (a CronJob takes its Jobs along); the ones that were there."""
    gone: list[str] = []
    targets = [(kind, namespace, name(cfg, part)) for part, namespace in namespaces(cfg).items() for kind in PER_PART]
    if cfg.storage.type == "existing":  # the claim in the backup namespace only, never the release's own
        targets += [("PersistentVolumeClaim", share_namespace(cfg), f"{cfg.release_name}-shared"),
                    ("PersistentVolume", "", mirror_name(cfg))]
    for kind, namespace, target_name in targets:
        target = f"{KINDS[kind].format(ns=namespace)}/{target_name}"
        if kube._rest(api, "GET", target) is not None:
            kube._rest(api, "DELETE", target, query={"propagationPolicy": "Background"})
            if kind == "CronJob":
                gone.append(f"{namespace}/{target_name}")
    return gone


def _when(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    job_name = job["metadata"]["name"]
    ns = job["metadata"]["namespace"]
    if status.get("succeeded"):
        return f"succeeded, finished {status.get('completionTime', '?')}"
    failed = [c for c in status.get("conditions") or [] if c.get("type") == "Failed" and c.get("status") == "True"]
    if failed or status.get("failed"):
        why = f"{failed[-1].get('reason', '')}: {failed[-1].get('message', '')}" if failed else "its pod failed"
        return f"FAILED ({why}); its log: kubectl -n {ns} logs job/{job_name}"
    return f"running since {status.get('startTime', job['metadata'].get('creationTimestamp', '?'))}"


def last_runs(api: Any, cfg: QHubConfig) -> list[str]:
    """For `qhubctl status`: the schedule, and per part when its last run started and how it ended."""
    if cfg.backup.schedule is None:
        return []
    lines = [f"scheduled backup: {cfg.backup.schedule} ({cfg.backup.time_zone}) to {cfg.backup.destination}"]
    for part, namespace in namespaces(cfg).items():
        cron = kube._rest(api, "GET", f"{KINDS['CronJob'].format(ns=namespace)}/{name(cfg, part)}")
        if cron is None:
            lines.append(f"  {part}: no CronJob {namespace}/{name(cfg, part)}; `qhubctl deploy` creates it")
            continue
        selector = ",".join(f"{k}={v}" for k, v in labels(cfg, part).items())
        jobs = kube._items(api, f"/apis/batch/v1/namespaces/{namespace}/jobs", labelSelector=selector)
        if not jobs:
            lines.append(f"  {part}: no run yet")
            continue
        last = max(jobs, key=lambda j: str(j["metadata"].get("creationTimestamp", "")))
        started = (last.get("status") or {}).get("startTime") or last["metadata"].get("creationTimestamp", "?")
        lines.append(f"  {part}: last run started {started}: {_when(last)}")
    return lines

