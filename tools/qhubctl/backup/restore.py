"""`qhubctl restore`: both parts' archives checked first (read back in full from S3, checksums of a local
directory), then the hub and conda-store stopped, the files part restored before the meta part (the files Job refuses
a share that is not empty unless forced), the users' uid record put back, and the stopped Deployments started again
whatever happened. The Jobs and their pods are qhubctl.backup.run's (imported as `jobs`: `run` is the run's id here)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qhubctl import homes, kube, oneshot
from qhubctl.backup import run as jobs
from qhubctl.backup import transfer
from qhubctl.backup.destination import PARTS, Destination
from qhubctl.config.model import QHubConfig
from qhubctl.errors import ClusterError, RefusedError, UserError


def _scale(api: Any, namespace: str, name: str, replicas: int) -> int | None:
    """Set a Deployment's replicas; its old count (None if there is no such Deployment)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    found = kube._rest(api, "GET", path)
    if not found:
        return None
    kube._rest(api, "PATCH", f"{path}/scale", body={"spec": {"replicas": replicas}},
               content_type="application/merge-patch+json")
    return int(found["spec"].get("replicas", 1))


def _ready(api: Any, namespace: str, name: str, timeout: float) -> None:
    """Wait until the Deployment's pods of its current template are all ready."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    deadline = time.monotonic() + min(timeout, 600)
    while time.monotonic() < deadline:
        found = kube._rest(api, "GET", path) or {}
        status, want = found.get("status") or {}, (found.get("spec") or {}).get("replicas", 1)
        if (status.get("observedGeneration", 0) >= (found.get("metadata") or {}).get("generation", 0)
                and status.get("updatedReplicas", 0) == want and status.get("readyReplicas", 0) == want):
            return
        time.sleep(2)
    raise ClusterError(f"{namespace}/{name} is not ready again after the restore",
                       hint=f"`qhubctl status` and `kubectl -n {namespace} logs deploy/{name}` show why")


def _pods_gone(api: Any, namespace: str, selector: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while kube._items(api, f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector):
        if time.monotonic() > deadline:
            raise ClusterError(f"pods {selector} in {namespace} did not stop within {timeout:.0f}s")
        time.sleep(2)


def restore(api: Any, cfg: QHubConfig, source: Destination, *, key_path: Path, force: bool, run: str, say: jobs.Say,
            progress: jobs.Say, timeout: float = 3600, staging_size: str = jobs.STAGING_SIZE) -> jobs.Outcome:
    started = time.monotonic()
    if source.local is not None:
        for part in PARTS:
            where = source.part_dir(part)
            if not (where / "config").is_file():
                raise UserError(f"{source.local} holds no {part} archive ({where}/config is missing)",
                                hint="give the directory `qhubctl backup -o` wrote")
            progress(f"verifying the {part} archive in {where}")
            damaged = transfer.verify_local(where)
            if damaged:
                raise RefusedError(f"the {part} archive in {where} is damaged: {', '.join(damaged[:5])} "
                                   "do not match their checksums; nothing was restored")
    hub = jobs.hub_deployment(api, cfg)
    image = jobs.backup_image(hub)
    key = jobs.resolve_key(api, cfg, key_path, create=False, say=say)
    runner = jobs.Runner(api, cfg, image, source, key, say, progress, timeout)
    ns = cfg.namespace
    stopped: dict[str, int] = {}
    reports: dict[str, dict[str, Any]] = {}
    moved: dict[str, int] = {}
    params = {"run": run, "release": cfg.release_name, "force": force, "snapshotRun": run,
              "condaStore": cfg.components.conda_store, "waitUpload": not source.is_s3}
    plan = jobs.parts(api, cfg, hub, "restore", staging=not source.is_s3)
    try:
        if source.is_s3:  # read back both archives in full, from the restricted meta pod, before anything changes
            meta = next(p for p in plan if p.name == "meta")
            for part_name in PARTS:
                checker = replace(meta, name=part_name, volumes=[v for v in meta.volumes if v["name"] != "hub-db"],
                                  mounts=[m for m in meta.mounts if m["name"] != "hub-db"])
                name = runner.start(checker, "verify", params, {})
                progress(f"reading back the {part_name} archive")
                report = runner.report(checker, name)
                runner.cleanup(checker, "verify")
                if not report.get("ok"):
                    jobs.refuse(report)
        for deployment in (f"{cfg.release_name}-hub", f"{cfg.release_name}-conda-store",
                           f"{cfg.release_name}-conda-store-worker"):
            old = _scale(api, ns, deployment, 0)
            if old is not None:
                stopped[deployment] = old
        say(f"stopped {', '.join(stopped) or 'nothing'} for the restore")
        _pods_gone(api, ns, f"app.kubernetes.io/instance={cfg.release_name},"
                            "app.kubernetes.io/component in (hub,conda-store,conda-store-worker)")
        for part in sorted(plan, key=lambda p: p.name != "files"):  # files first: it refuses a non-empty share
            if not source.is_s3:
                jobs.ensure_claim(api, part.namespace, jobs.staging_claim(cfg, part.name), staging_size)
            with oneshot.pod_security_lowered(api, part.namespace, jobs.JOB_WHY["restore"], say, needed=part.root):
                name = runner.start(part, "restore", params, {})
                say(f"{part.name}: Job {part.namespace}/{name} started")
                if not source.is_s3:
                    pod = runner.running_pod(part, name)
                    moved[part.name] = transfer.upload(api, part.namespace, pod, source.part_dir(part.name), progress)
                report = runner.report(part, name)
                if not report.get("ok"):
                    jobs.refuse(report)
                oneshot.wait(api, part.namespace, name, timeout, f"{part.name} restore Job")
                reports[part.name] = report
                runner.cleanup(part, "restore")
            if part.name == "meta":
                _restore_identities(api, cfg, report, say)
    finally:
        for deployment, replicas in stopped.items():
            _scale(api, ns, deployment, replicas)
        if stopped:
            say(f"started {', '.join(stopped)} again")
    for deployment in stopped:
        progress(f"waiting for {deployment} to be ready")
        _ready(api, ns, deployment, timeout)
    return jobs.Outcome(run or reports.get("meta", {}).get("run", ""), reports, time.monotonic() - started, moved)


def _restore_identities(api: Any, cfg: QHubConfig, report: dict[str, Any], say: jobs.Say) -> None:
    """The users' uids, as the hub keeps them (ConfigMap <release>-identities, not a Helm object)."""
    text = (report.get("texts") or {}).get("identities.json")
    if not text:
        return
    record = json.loads(text)
    if not record:
        return
    name = f"{cfg.release_name}-identities"
    path = f"/api/v1/namespaces/{cfg.namespace}/configmaps"
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "qhub",
                                                  "app.kubernetes.io/instance": cfg.release_name,
                                                  "app.kubernetes.io/component": "identities"}},
            "data": {homes.IDENTITIES_KEY: text}}
    if kube._rest(api, "GET", f"{path}/{name}"):
        kube._rest(api, "PUT", f"{path}/{name}", body=body)
    else:
        kube._rest(api, "POST", path, body=body)
    say(f"restored the uids of {len(record.get('users', {}))} users ({cfg.namespace}/{name})")
