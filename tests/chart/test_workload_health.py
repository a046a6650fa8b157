"""Every long-running container of the charts - the qhub chart with every component on, and the cluster add-on chart
with what qhubctl.addons turns on for each provider, with and without GPU groups: resource requests, a readiness
probe and a liveness probe, each aimed at the software's own health check (kwok-simulated nodes never ran a probe; a
real node does, and a missing or wrong probe only shows up there)."""

from __future__ import annotations

from typing import Any

import pytest

from qhubctl import addons as cluster_addons
from qhubctl.config import PROVIDERS

from .addons import render
from .test_cluster_addons_chart import FACTS as ADDON_FACTS
from .test_cluster_addons_chart import config as addon_config
from .test_cluster_addons_chart import template as addon_template

pytestmark = pytest.mark.chart

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
Containers = dict[tuple[str, str], dict[str, Any]]  # by (workload label, container name)

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

# The add-on chart's workloads, per (app.kubernetes.io/name, container). The NVIDIA device plugin serves no HTTP: its
# service is the gRPC socket it registers with the kubelet, so its probes check that socket is there.
ADDON_EXPECTED: dict[tuple[str, str], str] = {
    ("cluster-autoscaler", "cluster-autoscaler"): "http:/health-check",
    ("nvidia-device-plugin", "nvidia-device-plugin"): "exec:device-plugin-socket",
    ("traefik", "traefik"): "http:/ping",  # Traefik's ping entrypoint
}


def probe_kind(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        return f"http:{probe['httpGet'].get('path', '/')}"
    if "tcpSocket" in probe:
        return "tcp"
    if "exec" in probe:
        cmd = " ".join(probe["exec"]["command"])
        for name, marker in (("celery-ping", "control.ping"), ("pg_isready", "pg_isready"),
                             ("redis-cli", "redis-cli"),
                             ("device-plugin-socket", "test -S /var/lib/kubelet/device-plugins/nvidia-gpu.sock")):
            if marker in cmd:
                return f"exec:{name}"
        return "exec"
    return "grpc" if "grpc" in probe else "?"


def workload_containers(objects: list[dict[str, Any]], label: str) -> Containers:
    """The long-running containers of the workloads among `objects`, by (the workload's `label`, container name)."""
    out = {}
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        component = obj["metadata"]["labels"][label]
        for c in obj["spec"]["template"]["spec"]["containers"]:  # init containers run to completion: no probes
            out[(component, c["name"])] = c
    return out


@pytest.fixture(scope="module")
def addon_containers(tmp_path_factory: pytest.TempPathFactory) -> Containers:
    """Every container of the add-on chart rendered with each provider's values, with and without GPU groups, as
    tests/chart/test_cluster_addons_chart.py renders them (the same workload under two providers is one entry: its
    probes come from the chart, not from the provider)."""
    out: Containers = {}
    for provider in PROVIDERS:
        for gpu in (False, True):
            values = cluster_addons.values(addon_config(provider, gpu=gpu), ADDON_FACTS)
            docs = addon_template(values, tmp_path_factory.mktemp(f"{provider}-{gpu}"))
            out.update(workload_containers(docs, "app.kubernetes.io/name"))
    return out


@pytest.fixture(scope="module", params=["qhub", "qhub-cluster-addons"])
def chart_containers(request: pytest.FixtureRequest) -> tuple[Containers, dict[tuple[str, str], str]]:
    """(containers, their expected health checks) of one chart."""
    if request.param == "qhub":
        return workload_containers(render(values=ALL_ON), "app.kubernetes.io/component"), EXPECTED
    return request.getfixturevalue("addon_containers"), ADDON_EXPECTED


@pytest.fixture
def containers(chart_containers: tuple[Containers, dict[tuple[str, str], str]]) -> Containers:
    return chart_containers[0]


def test_every_container_has_requests_and_both_probes(containers: Containers) -> None:
    missing = []
    for key, c in sorted(containers.items()):
        requests = (c.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            missing.append(f"{key}: resources.requests (cpu and memory)")
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                missing.append(f"{key}: {probe}")
    assert not missing, "long-running containers without requests or probes:\n  " + "\n  ".join(missing)


def test_probes_check_the_softwares_health(chart_containers: tuple[Containers, dict[tuple[str, str], str]]) -> None:
    containers, expected = chart_containers
    assert set(containers) == set(expected), \
        "a workload was added or renamed: list its health check in EXPECTED (qhub) or ADDON_EXPECTED (add-ons)"
    wrong = []
    for key, want in expected.items():
        for probe in ("readinessProbe", "livenessProbe"):
            got = probe_kind(containers[key][probe])
            if not got.startswith(want):
                wrong.append(f"{key} {probe}: {got}, expected {want}")
    assert not wrong, "\n".join(wrong)


def test_liveness_is_more_patient_than_readiness(containers: Containers) -> None:
    """A liveness probe that gives up as fast as readiness restarts slow starters (hub migrations, JVMs) forever."""
    for key, c in containers.items():
        live, ready = c["livenessProbe"], c["readinessProbe"]
        patience = live.get("initialDelaySeconds", 0) + live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        assert patience >= 30, (key, live)
        assert patience >= ready.get("periodSeconds", 10), (key, live, ready)
