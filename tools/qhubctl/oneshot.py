"""One-shot Jobs that qhubctl starts on the cluster (`upgrade --homes`, `backup`, `restore`): wait for them, read
their log, lower a namespace's Pod Security level for a root Job and put it back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from qhubctl import kube
from qhubctl.errors import ClusterError

PSA_ENFORCE = kube.PSA_ENFORCE


def relax(api: Any, namespace: str) -> str | None:
    """Lower the namespace's Pod Security enforce level to baseline if it is restricted; the old value."""
    ns = kube._rest(api, "GET", f"/api/v1/namespaces/{namespace}") or {}
    level = ((ns.get("metadata") or {}).get("labels") or {}).get(PSA_ENFORCE)
    if level != "restricted":
        return None
    set_level(api, namespace, "baseline")
    return str(level)


@contextmanager
def pod_security_lowered(api: Any, namespace: str, job: str, say: Callable[[str], None],
                         needed: bool = True) -> Iterator[bool]:
    """Lower a restricted namespace to baseline while a root Job (`job` says which) runs, and put it back whatever
    happens, saying both on the terminal; yields whether it was lowered."""
    old = relax(api, namespace) if needed else None
    if old:
        say(f"namespace {namespace}: Pod Security enforce lowered from {old} to baseline while {job} runs")
    try:
        yield bool(old)
    finally:
        if old:
            set_level(api, namespace, old)
            say(f"namespace {namespace}: Pod Security enforce back to {old}")


def set_level(api: Any, namespace: str, level: str) -> None:
    kube._rest(api, "PATCH", f"/api/v1/namespaces/{namespace}", body={"metadata": {"labels": {PSA_ENFORCE: level}}},
               content_type="application/merge-patch+json")


def finished(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The Job once it has succeeded or failed, else None."""
    job = kube._rest(api, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}") or {}
    status = job.get("status") or {}
    return job if status.get("succeeded") or status.get("failed") else None


def wait(api: Any, namespace: str, name: str, timeout: float, what: str = "Job") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = finished(api, namespace, name)
        if job:
            return job
        time.sleep(2)
    raise ClusterError(f"the {what} {namespace}/{name} did not finish within {timeout:.0f}s",
                       hint=f"kubectl -n {namespace} describe job {name}; it stays for an hour")


def pod_of(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    pods = kube._items(api, f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"job-name={name}")
    return max(pods, key=lambda p: p["metadata"]["creationTimestamp"]) if pods else None


def log(api: Any, namespace: str, name: str) -> str:
    pod = pod_of(api, namespace, name)
    if not pod:
        return ""
    if (pod.get("status") or {}).get("phase") == "Pending":  # no log before its container starts
        return ""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log"
    try:
        return str(kube._rest(api, "GET", path, raw=True) or "")
    except ClusterError as exc:
        if "waiting to start" in str(exc):  # the pod moved on since it was read
            return ""
        raise


def create_failures(api: Any, namespace: str, name: str) -> str:
    """Why the Job could not create its pod (its latest FailedCreate event, e.g. Pod Security), or ''."""
    job = kube._rest(api, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}") or {}
    uid = (job.get("metadata") or {}).get("uid", "")
    if not uid:
        return ""
    events = kube._items(api, f"/api/v1/namespaces/{namespace}/events",
                         fieldSelector=f"involvedObject.uid={uid}")  # not an earlier Job of the same name
    failed = [e for e in events if e.get("reason") == "FailedCreate"]
    return str(failed[-1].get("message", "")) if failed else ""


def gone(api: Any, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while kube._rest(api, "GET", path) is not None:
        if time.monotonic() > deadline:
            raise ClusterError(f"{path} is still being deleted after {timeout:.0f}s")
        time.sleep(1)
