"""Plan and apply a config: immutable-field guard, no-op detection, CRDs, helm upgrade with progress, state."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from qhubctl import __version__, daskclusters, kube, podsecurity
from qhubctl.backup import schedule
from qhubctl.config.base import Base
from qhubctl.config.model import QHubConfig
from qhubctl.errors import ClusterError, HelmError, ImmutableFieldError
from qhubctl.helm import Deployed, Helm, chart_digest
from qhubctl.values import chart_values, generated_secret_name, secret_key

Progress = Callable[[list[kube.Workload]], None]


def state_secret_name(cfg: QHubConfig) -> str:
    return f"{cfg.release_name}-qhubctl-state"


def immutable_paths(model: type[Base] = QHubConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Config paths marked immutable in the models (project_name, cluster.provider, storage.type)."""
    import typing

    found: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("immutable"):
            found.append((*prefix, name))
        args = typing.get_args(typing.get_args(info.annotation)[0]) if typing.get_args(info.annotation) else ()
        for sub in (info.annotation, *typing.get_args(info.annotation), *args):
            if isinstance(sub, type) and issubclass(sub, Base):
                found += [p for p in immutable_paths(sub, (*prefix, name)) if p not in found]
    if not prefix:
        found.append(("cluster", "provider"))
    return sorted(set(found))


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def check_login_names(stored: dict[str, Any], cfg: QHubConfig) -> None:
    """OIDC user names come from one claim; another claim renames every user (new, empty homes; lost groups)."""
    old, new = stored.get("auth") or {}, cfg.redacted()["auth"]
    if old.get("type") == new.get("type") == "oidc" and old.get("username_claim") != new.get("username_claim"):
        raise ImmutableFieldError(
            f"refusing to change auth.username_claim: {old.get('username_claim')!r} -> "
            f"{new.get('username_claim')!r} would give every user a new name, and with it a new, empty home",
            hint=f"set `username_claim: {old.get('username_claim')}` under auth to keep the names (a deployment "
            "made by an older qhubctl used preferred_username, which users can change at many providers: moving "
            "to sub needs the homes renamed first)",
        )


def check_immutable(stored: dict[str, Any], cfg: QHubConfig) -> None:
    check_login_names(stored, cfg)
    new = cfg.redacted()
    changed = [(p, _get(stored, p), _get(new, p)) for p in immutable_paths() if _get(stored, p) != _get(new, p)]
    if changed:
        lines = "; ".join(f"{'.'.join(p)}: {old!r} -> {cur!r}" for p, old, cur in changed)
        raise ImmutableFieldError(
            f"refusing to change immutable field(s): {lines}",
            hint="these cannot change on a running deployment (names of cloud resources, where data lives); "
            "restore the old value, or `qhubctl destroy` and deploy anew (back up the data first)",
        )


def values_digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@dataclass
class ReleasePlan:
    release: str
    namespace: str
    values: dict[str, Any]
    chart_version: str
    chart_digest: str
    deployed: Deployed | None
    stored: dict[str, str] | None
    diff: list[str] = field(default_factory=list)

    @property
    def install(self) -> bool:
        return self.deployed is None

    @property
    def changed(self) -> bool:
        if self.deployed is None or self.stored is None or self.deployed.status != "deployed":
            return True
        return (self.deployed.chart_version != self.chart_version
                or _norm(self.deployed.values) != _norm(self.values)
                or self.stored.get("chart-digest") != self.chart_digest)


def _norm(values: dict[str, Any]) -> Any:
    return json.loads(json.dumps(values, sort_keys=True))


def values_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    a = yaml.safe_dump(_norm(old), sort_keys=True).splitlines() if old else []
    b = yaml.safe_dump(_norm(new), sort_keys=True).splitlines()
    return list(difflib.unified_diff(a, b, "deployed", "config", lineterm=""))


def make_plan(cfg: QHubConfig, helm: Helm, api: Any) -> ReleasePlan:
    stored = kube.read_secret(api, cfg.namespace, state_secret_name(cfg))
    if stored and "config.yaml" in stored:
        check_immutable(yaml.safe_load(stored["config.yaml"]) or {}, cfg)
    deployed = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    values = chart_values(cfg, helm.chart_dir)
    plan = ReleasePlan(cfg.release_name, cfg.namespace, values, helm.chart_version, chart_digest(helm.chart_dir),
                       deployed, stored)
    plan.diff = values_diff(deployed.values if deployed else None, values)
    return plan


@dataclass
class Result:
    plan: ReleasePlan
    applied: bool
    revision: int | None
    seconds: float
    rolled: list[str]
    # native admins whose password this deploy generated ({name: password}): shown once, never stored by qhubctl
    new_logins: dict[str, str] = field(default_factory=dict)
    # Dask clusters (user/name) this deploy stopped: left in the release namespace by the layout before the
    # clusters' namespace (daskclusters.stop_old_clusters)
    stopped_clusters: list[str] = field(default_factory=list)


# Key of the hub Secret (<release>-hub) where the chart keeps native admins' passwords, {name: password} as JSON.
ADMIN_PASSWORDS_KEY = "native-admin-passwords"


def hub_secret_name(cfg: QHubConfig) -> str:
    return f"{cfg.release_name}-hub"


def admin_passwords(api: Any, cfg: QHubConfig) -> dict[str, str]:
    """The native admins' passwords the chart generated into the hub Secret (empty for other logins)."""
    if cfg.auth.type != "native":
        return {}
    stored = (kube.read_secret(api, cfg.namespace, hub_secret_name(cfg)) or {}).get(ADMIN_PASSWORDS_KEY) or "{}"
    try:
        found = json.loads(stored)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def admin_password_command(cfg: QHubConfig) -> str:
    """How someone with access to the namespace reads the admins' passwords again."""
    return (f"kubectl --namespace {cfg.namespace} get secret {hub_secret_name(cfg)} "
            f"-o jsonpath='{{.data.{ADMIN_PASSWORDS_KEY}}}' | base64 -d")


def apply(cfg: QHubConfig, helm: Helm, api: Any, plan: ReleasePlan, *, timeout: str = "10m",
          progress: Progress | None = None) -> Result:
    """Apply a changed plan: namespace, CRDs, generated secrets, helm upgrade --install --wait, stored state."""
    start = time.monotonic()
    if not plan.changed:
        return Result(plan, False, plan.deployed.revision if plan.deployed else None, 0.0, [])
    for namespace, labels in podsecurity.namespaces(cfg).items():
        kube.ensure_namespace(api, namespace, labels)
    kube.apply_crds(api, helm.chart_dir)
    stopped = daskclusters.stop_old_clusters(api, cfg)
    secrets = cfg.secrets()
    if secrets:
        kube.write_secret(api, cfg.namespace, generated_secret_name(cfg),
                          {secret_key(p): v.get_secret_value() for p, v in secrets.items()})
    before = {(w.kind, w.name): w.template_hash for w in kube.workloads(api, cfg.namespace)}
    logins_before = admin_passwords(api, cfg)
    revision = asyncio.run(_upgrade_watching(cfg, helm, api, plan, timeout, progress))
    new_logins = {name: pw for name, pw in admin_passwords(api, cfg).items() if logins_before.get(name) != pw}
    after = kube.workloads(api, cfg.namespace)
    rolled = [f"{w.kind}/{w.name}" for w in after if before.get((w.kind, w.name)) != w.template_hash]
    kube.write_secret(api, cfg.namespace, state_secret_name(cfg), {
        "config.yaml": yaml.safe_dump(cfg.redacted(), sort_keys=False),
        "values-digest": values_digest(plan.values),
        "chart-version": plan.chart_version,
        "chart-digest": plan.chart_digest,
        "qhubctl-version": __version__,
    }, kind=kube.STATE_TYPE)
    return Result(plan, True, revision, time.monotonic() - start, rolled, new_logins, stopped)


async def _upgrade_watching(cfg: QHubConfig, helm: Helm, api: Any, plan: ReleasePlan, timeout: str,
                            progress: Progress | None) -> int:
    task = asyncio.create_task(helm.upgrade(plan.release, plan.namespace, plan.values, timeout=timeout))
    while progress is not None and not task.done():
        progress(await asyncio.to_thread(kube.workloads, api, cfg.namespace))
        await asyncio.wait({task}, timeout=1.0)
    try:
        revision = await task
    except HelmError as exc:
        report = await asyncio.to_thread(rollout_report, api, cfg.namespace)
        raise ClusterError(
            f"{exc.message}\n" + (report or "every workload is ready; helm failed for the reason above"),
            hint="fix the cause above and run `qhubctl deploy` again (it resumes where it stopped)",
        ) from exc
    if progress is not None:
        progress(kube.workloads(api, cfg.namespace))
    return revision


@dataclass
class Destroyed:
    uninstalled: bool
    kept_pvcs: list[str]
    deleted_pvcs: list[str]


def destroy(cfg: QHubConfig, helm: Helm, api: Any, *, delete_data: bool = False) -> Destroyed:
    """Uninstall the release and qhubctl's own Secrets. PVCs (homes, hub DB, environments) stay unless delete_data."""
    deployed = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    schedule.remove(api, cfg)  # the backup CronJobs run the release's image against its volumes
    if deployed is not None:
        asyncio.run(helm.uninstall(cfg.release_name, cfg.namespace))
    daskclusters.remove(api, cfg)  # qhubctl's second volume on the shared storage (the data stays)
    kube.delete_secret(api, cfg.namespace, state_secret_name(cfg))
    kube.delete_secret(api, cfg.namespace, generated_secret_name(cfg))
    # the NFS server's disk, when it lives in a namespace of its own: only this release's claims there
    server = podsecurity.nfs_namespace(cfg)
    elsewhere = [(server, f"app.kubernetes.io/instance={cfg.release_name}")] if server else []
    if delete_data:
        deleted = kube.delete_pvcs(api, cfg.namespace)
        for namespace, selector in elsewhere:
            deleted += [f"{namespace}/{n}" for n in kube.delete_pvcs(api, namespace, selector)]
        return Destroyed(deployed is not None, [], deleted)
    kept = kube.pvcs(api, cfg.namespace)
    for namespace, selector in elsewhere:
        kept += [f"{namespace}/{n}" for n in kube.pvcs(api, namespace, selector)]
    return Destroyed(deployed is not None, kept, [])


# --- Why a rollout did not finish ------------------------------------------------------------------------------
# Built from what the Kubernetes API says about pods (status, conditions, container states) and their events, so
# a failed or timed-out deploy names the workload, the container and the cause instead of "timed out".

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOG_LINES = 10

LogTail = Callable[[str, str, bool], str]  # (pod, container, previous) -> the last lines of its log


@dataclass(frozen=True)
class Problem:
    """One reason a workload is not ready."""

    workload: str  # "Deployment/qhub-hub"
    pod: str
    container: str | None
    reason: str  # ImagePullBackOff, CrashLoopBackOff, Unschedulable, ReadinessProbeFailed, ...
    detail: str
    log: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"pod {self.pod}" + (f", container {self.container}" if self.container else "")
        text = f"{self.workload} ({where}): {self.reason}: {self.detail}"
        if self.log:
            text += "\n    last log lines:\n" + "\n".join(f"      {line}" for line in self.log)
        return text


def pod_workload(pod: dict[str, Any]) -> str:
    """Kind/name of the workload that owns a pod (a Deployment through its ReplicaSet)."""
    meta = pod.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ReplicaSet":
            template_hash = (meta.get("labels") or {}).get("pod-template-hash")
            if template_hash and name.endswith(f"-{template_hash}"):
                return f"Deployment/{name[: -len(template_hash) - 1]}"
            return f"Deployment/{name.rsplit('-', 1)[0]}"
        if kind:
            return f"{kind}/{name}"
    return f"Pod/{meta.get('name', '?')}"


def _pod_events(events: Iterable[dict[str, Any]], pod: str) -> list[dict[str, Any]]:
    mine = [e for e in events if (e.get("involvedObject") or {}).get("kind") == "Pod"
            and (e.get("involvedObject") or {}).get("name") == pod]
    return sorted(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line for line in text.rstrip("\n").splitlines()[-LOG_LINES:])


def _terminated(cs: dict[str, Any]) -> str:
    last = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated") or {}
    if not last:
        return ""
    parts = [f"exit code {last.get('exitCode')}"]
    if last.get("reason"):
        parts.append(str(last["reason"]))
    if last.get("message"):
        parts.append(str(last["message"]).strip())
    return ", ".join(parts)


def diagnose_pod(pod: dict[str, Any], events: Iterable[dict[str, Any]],
                 log_tail: LogTail | None = None) -> list[Problem]:
    """Why one pod is not ready, most specific cause first. Empty when it is ready (or finished)."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    name, workload = meta.get("name", "?"), pod_workload(pod)
    if status.get("phase") == "Succeeded":
        return []
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    problems: list[Problem] = []
    sched = conds.get("PodScheduled")
    if sched and sched.get("status") == "False":
        return [Problem(workload, name, None, sched.get("reason") or "Unschedulable",
                        sched.get("message") or "the scheduler found no node for it")]
    pod_events = _pod_events(events, name)
    statuses = [(cs, True) for cs in status.get("initContainerStatuses") or []]
    statuses += [(cs, False) for cs in status.get("containerStatuses") or []]
    for cs, init in statuses:
        cname = cs.get("name", "?") + (" (init)" if init else "")
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in PULL_ERRORS:
            detail = f"cannot pull image {cs.get('image')}"
            if waiting.get("message"):
                detail += f": {waiting['message']}"
            problems.append(Problem(workload, name, cname, reason, detail))
        elif reason == "CrashLoopBackOff":
            detail = f"restarted {cs.get('restartCount', 0)} times"
            if _terminated(cs):
                detail += f"; last exit: {_terminated(cs)}"
            log = _lines(log_tail(name, cs.get("name", ""), True)) if log_tail else ()
            problems.append(Problem(workload, name, cname, reason, detail, log))
        elif reason in CONFIG_ERRORS:
            problems.append(Problem(workload, name, cname, reason, waiting.get("message") or reason))
        elif (state.get("terminated") or {}).get("exitCode", 0) != 0:  # exited, not restarted yet
            log = _lines(log_tail(name, cs.get("name", ""), False)) if log_tail else ()
            problems.append(Problem(workload, name, cname, "Terminated", _terminated(cs), log))
        elif not init and state.get("running") and not cs.get("ready"):
            field_path = f"{{{cs.get('name')}}}"  # events name the container as spec.containers{<name>}
            failing = [e for e in pod_events if e.get("reason") == "Unhealthy"
                       and field_path in str((e.get("involvedObject") or {}).get("fieldPath") or field_path)
                       and str(e.get("message", "")).startswith(("Readiness", "Liveness", "Startup"))]
            if failing:
                last = failing[-1]
                kind = str(last.get("message", "")).split(" ", 1)[0]  # Readiness / Liveness / Startup
                count = f" ({last['count']} times)" if (last.get("count") or 0) > 1 else ""
                problems.append(Problem(workload, name, cname, f"{kind}ProbeFailed",
                                        f"{last.get('message', '').strip()}{count}"))
            else:
                problems.append(Problem(workload, name, cname, "NotReady",
                                        "running but not ready yet (no failed probe reported)"))
    if not problems and status.get("phase") == "Pending":
        warn = [e for e in pod_events if e.get("type") == "Warning"]
        if warn:  # e.g. FailedMount (missing Secret/PVC), FailedCreatePodSandBox
            problems.append(Problem(workload, name, None, warn[-1].get("reason") or "Pending",
                                    str(warn[-1].get("message", "")).strip()))
    return problems


def diagnose_rollout(workloads: Iterable[kube.Workload], pods: Iterable[dict[str, Any]],
                     events: Iterable[dict[str, Any]], log_tail: LogTail | None = None) -> list[str]:
    """One line (plus log lines) per reason a workload is not ready; only workloads that are not done."""
    events = list(events)
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        if not (pod.get("metadata") or {}).get("deletionTimestamp"):
            by_workload.setdefault(pod_workload(pod), []).append(pod)
    out: list[str] = []
    for w in workloads:
        if w.done:
            continue
        key = f"{w.kind}/{w.name}"
        found = [p for pod in by_workload.get(key, []) for p in diagnose_pod(pod, events, log_tail)]
        if found:
            out += [str(p) for p in found]
            continue
        # no pod explains it: the controller may not create pods at all (quota, admission, missing service account)
        owner_names = {w.name} | {(p.get("metadata") or {}).get("name") for p in by_workload.get(key, [])}
        warn = [e for e in events if e.get("type") == "Warning"
                and (e.get("involvedObject") or {}).get("name", "").startswith(tuple(n for n in owner_names if n))]
        if warn:
            e = warn[-1]
            out.append(f"{key}: {e.get('reason')}: {str(e.get('message', '')).strip()}")
        else:
            out.append(f"{key}: {w.ready}/{w.desired} ready; no pod reports an error yet (still starting?)")
    return out


def rollout_report(api: Any, namespace: str) -> str:
    """Text for a failed or timed-out deploy: which workloads are not ready and why (empty if all are)."""
    try:
        workloads = kube.workloads(api, namespace)
        pending = [w for w in workloads if not w.done]
        if not pending:
            return ""
        pods = kube._items(api, f"/api/v1/namespaces/{namespace}/pods")
        events = kube.events(api, namespace)
    except ClusterError as exc:
        return f"(could not read the workloads to say why: {exc.message})"

    def log_tail(pod: str, container: str, previous: bool) -> str:
        query: dict[str, Any] = {"container": container, "tailLines": LOG_LINES}
        for prev in ((True, False) if previous else (False,)):
            try:
                text = kube._rest(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                                  query={**query, **({"previous": "true"} if prev else {})}, raw=True)
            except ClusterError:
                continue
            if text:
                return text
        return ""

    lines = diagnose_rollout(pending, pods, events, log_tail)
    names = ", ".join(f"{w.kind}/{w.name} ({w.ready}/{w.desired} ready)" for w in pending)
    return f"not ready: {names}\nwhy:\n  " + "\n  ".join(lines)
