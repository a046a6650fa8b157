"""qhubctl speed: validate and render times, and deploy overhead against a bare `helm upgrade --install --wait`
of the same values on the local cluster in the same run (goal: ratio <= 1.2)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client as k8s

from qhubctl import kube, localcluster
from qhubctl.config import load_config
from qhubctl.proc import run
from qhubctl.chart import chart_dir
from qhubctl.values import chart_values

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / "tests" / "configs" / "aws.ok.full.yaml"
ROUNDS = 3


def timed(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def local_config(ns: str, release: str) -> str:
    return (f"schema_version: 2\nproject_name: bench\nnamespace: {ns}\nrelease_name: {release}\n"
            "cluster: {provider: local}\nauth: {type: dummy, users: {bench: {}}}\n"
            "storage: {type: nfs, size: 5Gi, disk_storage_class: standard}\n")


def main() -> None:
    validate_s = timed(lambda: load_config(FULL, environ={}))
    cfg = load_config(FULL, environ={})
    map_s = timed(lambda: chart_values(cfg))
    print(f"validate (aws.ok.full.yaml): {validate_s * 1000:.1f} ms")
    print(f"config -> values mapping: {map_s * 1000:.1f} ms")
    cli_validate = timed(lambda: run([str(REPO / ".venv/bin/qhubctl"), "validate", "-c", str(FULL)]), 3)
    cli_render = timed(lambda: run([str(REPO / ".venv/bin/qhubctl"), "render", "-c", str(FULL)]), 3)
    print(f"`qhubctl validate` process: {cli_validate:.2f} s; `qhubctl render` process: {cli_render:.2f} s")

    cluster = localcluster.up("qhub-test")
    env = cluster.env
    qhubctl = str(REPO / ".venv/bin/qhubctl")
    api = kube.api_client(cluster.kubeconfig)
    bare_times, our_times, noop_times = [], [], []
    # Alternate bare Helm and qhubctl installs into fresh namespaces so machine load hits both alike.
    for _ in range(ROUNDS):
        tag = uuid.uuid4().hex[:5]
        ns_q, ns_h = f"bench-q-{tag}", f"bench-h-{tag}"
        work = Path(tempfile.mkdtemp())
        cfg_path = work / "qhub-config.yaml"
        cfg_path.write_text(local_config(ns_q, "qb"))
        (work / "values.json").write_text(json.dumps(chart_values(load_config(cfg_path, environ={}))))
        try:
            start = time.perf_counter()
            run(["helm", "upgrade", "--install", "qb", str(chart_dir()), "-n", ns_h, "--create-namespace", "--wait",
                 "--timeout", "5m", "-f", str(work / "values.json")], env=env, timeout=600)
            bare_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            run([qhubctl, "deploy", "--yes", "-c", str(cfg_path), "--timeout", "5m"], env=env, timeout=600)
            our_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            run([qhubctl, "deploy", "--yes", "-c", str(cfg_path)], env=env, timeout=600)
            noop_times.append(time.perf_counter() - start)
        finally:
            run([qhubctl, "destroy", "--yes", "--delete-data", "-c", str(cfg_path)], env=env, timeout=600,
                check=False)
            run(["helm", "uninstall", "qb", "-n", ns_h, "--wait"], env=env, timeout=600, check=False)
            for ns in (ns_q, ns_h):
                try:
                    k8s.CoreV1Api(api).delete_namespace(ns)
                except k8s.ApiException:
                    pass
    bare, ours = statistics.median(bare_times), statistics.median(our_times)
    print(f"bare helm upgrade --install --wait: median {bare:.2f} s of {fmt(bare_times)}")
    print(f"qhubctl deploy (install, same values): median {ours:.2f} s of {fmt(our_times)}")
    print(f"qhubctl deploy (no-op re-deploy): median {statistics.median(noop_times):.2f} s")
    print(f"deploy overhead ratio: {ours / bare:.2f} (goal <= 1.2)")


def fmt(samples: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in samples)

if __name__ == "__main__":
    main()
