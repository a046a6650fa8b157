"""Plan and apply a config: immutable-field guard, no-op detection, CRDs, helm upgrade with progress, state."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from qhubctl import __version__, kube
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


def check_immutable(stored: dict[str, Any], cfg: QHubConfig) -> None:
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
class Plan:
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


def make_plan(cfg: QHubConfig, helm: Helm, api: Any) -> Plan:
    stored = kube.read_secret(api, cfg.namespace, state_secret_name(cfg))
    if stored and "config.yaml" in stored:
        check_immutable(yaml.safe_load(stored["config.yaml"]) or {}, cfg)
    deployed = asyncio.run(helm.deployed(cfg.release_name, cfg.namespace))
    values = chart_values(cfg, helm.chart_dir)
    plan = Plan(cfg.release_name, cfg.namespace, values, helm.chart_version, chart_digest(helm.chart_dir),
                deployed, stored)
    plan.diff = values_diff(deployed.values if deployed else None, values)
    return plan


@dataclass
class Result:
    plan: Plan
    applied: bool
    revision: int | None
    seconds: float
    rolled: list[str]


def apply(cfg: QHubConfig, helm: Helm, api: Any, plan: Plan, *, timeout: str = "10m",
          progress: Progress | None = None) -> Result:
    """Apply a changed plan: namespace, CRDs, generated secrets, helm upgrade --install --wait, stored state."""
    start = time.monotonic()
    if not plan.changed:
        return Result(plan, False, plan.deployed.revision if plan.deployed else None, 0.0, [])
    kube.ensure_namespace(api, cfg.namespace)
    kube.apply_crds(api, helm.chart_dir)
    secrets = cfg.secrets()
    if secrets:
        kube.write_secret(api, cfg.namespace, generated_secret_name(cfg),
                          {secret_key(p): v.get_secret_value() for p, v in secrets.items()})
    before = {(w.kind, w.name): w.template_hash for w in kube.workloads(api, cfg.namespace)}
    revision = asyncio.run(_upgrade_watching(cfg, helm, api, plan, timeout, progress))
    after = kube.workloads(api, cfg.namespace)
    rolled = [f"{w.kind}/{w.name}" for w in after if before.get((w.kind, w.name)) != w.template_hash]
    kube.write_secret(api, cfg.namespace, state_secret_name(cfg), {
        "config.yaml": yaml.safe_dump(cfg.redacted(), sort_keys=False),
        "values-digest": values_digest(plan.values),
        "chart-version": plan.chart_version,
        "chart-digest": plan.chart_digest,
        "qhubctl-version": __version__,
    }, kind=kube.STATE_TYPE)
    return Result(plan, True, revision, time.monotonic() - start, rolled)


async def _upgrade_watching(cfg: QHubConfig, helm: Helm, api: Any, plan: Plan, timeout: str,
                            progress: Progress | None) -> int:
    task = asyncio.create_task(helm.upgrade(plan.release, plan.namespace, plan.values, timeout=timeout))
    while progress is not None and not task.done():
        progress(await asyncio.to_thread(kube.workloads, api, cfg.namespace))
        await asyncio.wait({task}, timeout=1.0)
    try:
        revision = await task
    except HelmError as exc:
        reasons = await asyncio.to_thread(kube.diagnose, api, cfg.namespace)
        raise ClusterError(
            f"{exc.message}\n" + ("why workloads are not ready:\n  " + "\n  ".join(reasons) if reasons
                                  else "no failing pods or warning events found"),
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
    if deployed is not None:
        asyncio.run(helm.uninstall(cfg.release_name, cfg.namespace))
    kube.delete_secret(api, cfg.namespace, state_secret_name(cfg))
    kube.delete_secret(api, cfg.namespace, generated_secret_name(cfg))
    if delete_data:
        return Destroyed(deployed is not None, [], kube.delete_pvcs(api, cfg.namespace))
    return Destroyed(deployed is not None, kube.pvcs(api, cfg.namespace), [])
