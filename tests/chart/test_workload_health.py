"""Every long-running container of the chart, with every component on: resource requests, a readiness probe and a
liveness probe, each aimed at the software's own health check (kwok-simulated nodes never ran a probe; a real node
does, and a missing or wrong probe only shows up there)."""

from __future__ import annotations

from typing import Any

import pytest
from .addons import render

pytestmark = pytest.mark.chart

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}

# Every component on, with the storage and database choices that add their own pods (MinIO, PostgreSQL, Redis).
ALL_ON: dict[str, Any] = {
    "dask-gateway": {"enabled": True},
    "conda-store": {"enabled": True, "storage": {"type": "minio"},
                    "postgresql": {"internal": True}, "redis": {"internal": True}},
    "kubessh": {"enabled": True},
    "jitsi": {"enabled": True, "host": "meet.qhub.example.org"},
    "nfs": {"enabled": True},
    "jupyterhub": {"hub": {"services": {name: {"enabled": True}
                                        for name in ("dask-gateway", "conda-store", "kubessh", "jitsi")}}},
}

# What each probe checks, per (workload component label, container): the software's health endpoint where it has
# one. A tcpSocket probe is only accepted where the software serves no health route, with the reason here.
EXPECTED: dict[tuple[str, str], str] = {
    ("hub", "hub"): "http:/hub/health",
    ("proxy", "chp"): "http:/_chp_healthz",  # configurable-http-proxy >= 4.1, public port (the API needs a token)
    ("dask-gateway-api", "api"): "http:/api/health",
    ("dask-gateway-proxy", "traefik"): "http:/ping",  # traefik's ping entrypoint
    # dask-gateway's kube-controller serves an aiohttp app without routes: listening is all it can show
    ("dask-gateway-controller", "controller"): "tcp",
    ("conda-store", "conda-store-server"): "http:/conda-store/api/v1/",  # conda-store's status route
    ("conda-store-worker", "conda-store-worker"): "exec:celery-ping",  # Celery worker, no HTTP server
    ("conda-store-postgresql", "postgresql"): "exec:pg_isready",
    ("conda-store-redis", "redis"): "exec:redis-cli",
    ("conda-store-minio", "minio"): "http:/minio/health/",
    # SSH/SFTP servers: the protocol handshake is the service; a TCP accept on the port is the standard check
    ("kubessh", "kubessh"): "tcp",
    ("nfs", "nfs-server"): "tcp",  # NFS has no HTTP side; the kernel/ganesha listener accepting on 2049
    ("jitsi-web", "web"): "http:/",
    ("jitsi-prosody", "prosody"): "http:/http-bind",
    ("jitsi-jicofo", "jicofo"): "http:/about/health",
    ("jitsi-jvb", "jvb"): "http:/about/health",
    ("jitsi-token", "token"): "http:/services/jitsi/health",
}


def probe_kind(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        return f"http:{probe['httpGet'].get('path', '/')}"
    if "tcpSocket" in probe:
        return "tcp"
    if "exec" in probe:
        cmd = " ".join(probe["exec"]["command"])
        for name, marker in (("celery-ping", "control.ping"), ("pg_isready", "pg_isready"),
                             ("redis-cli", "redis-cli")):
            if marker in cmd:
                return f"exec:{name}"
        return "exec"
    return "grpc" if "grpc" in probe else "?"


@pytest.fixture(scope="module")
def containers() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for obj in render(values=ALL_ON):
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        for c in obj["spec"]["template"]["spec"]["containers"]:  # init containers run to completion: no probes
            out[(component, c["name"])] = c
    return out


def test_every_container_has_requests_and_both_probes(containers: dict[tuple[str, str], dict[str, Any]]) -> None:
    missing = []
    for key, c in sorted(containers.items()):
        requests = (c.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            missing.append(f"{key}: resources.requests (cpu and memory)")
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                missing.append(f"{key}: {probe}")
    assert not missing, "long-running containers without requests or probes:\n  " + "\n  ".join(missing)


def test_probes_check_the_softwares_health(containers: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(containers) == set(EXPECTED), "a workload was added or renamed: list its health check in EXPECTED"
    wrong = []
    for key, want in EXPECTED.items():
        for probe in ("readinessProbe", "livenessProbe"):
            got = probe_kind(containers[key][probe])
            if not got.startswith(want):
                wrong.append(f"{key} {probe}: {got}, expected {want}")
    assert not wrong, "\n".join(wrong)


def test_liveness_is_more_patient_than_readiness(containers: dict[tuple[str, str], dict[str, Any]]) -> None:
    """A liveness probe that gives up as fast as readiness restarts slow starters (hub migrations, JVMs) forever."""
    for key, c in containers.items():
        live, ready = c["livenessProbe"], c["readinessProbe"]
        patience = live.get("initialDelaySeconds", 0) + live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        assert patience >= 30, (key, live)
        assert patience >= ready.get("periodSeconds", 10), (key, live, ready)
