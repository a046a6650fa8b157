#!/usr/bin/env python3
"""Always-on footprint of charts/qhub with default values: the sum of CPU and memory requests of every pod that
runs all the time (Deployments and StatefulSets times their replicas; hooks, tests and Jobs excluded). User
servers and Dask clusters come and go, so they are not counted.

    scripts/bench_footprint.py                      defaults
    scripts/bench_footprint.py -f my-values.yaml    other values (helm template -f, repeatable)
    scripts/bench_footprint.py --check              exit 1 when over the goal (<= 1 vCPU, <= 3 GiB)

Prints one line per workload and the totals against the goal.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.utils import parse_quantity

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from qhubctl.proc import run  # noqa: E402

CHART = ROOT / "charts" / "qhub"
GOAL_CPU = 1.0
GOAL_MEMORY = 3 * 2**30
# helm template has no cluster to pick the NFS server's ClusterIP from; any address renders the same pods.
TEMPLATE_ARGS = ["--set", "nfs.service.clusterIP=10.96.0.20"]


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    replicas: int
    cpu: float
    memory: int


def pod_requests(spec: dict[str, Any]) -> tuple[float, int]:
    """Effective requests of a pod: the containers' sum, or the largest init container if that is larger."""

    def req(c: dict[str, Any], key: str) -> float:
        return float(parse_quantity(c.get("resources", {}).get("requests", {}).get(key, 0)))

    cpu = sum(req(c, "cpu") for c in spec["containers"])
    mem = sum(req(c, "memory") for c in spec["containers"])
    for init in spec.get("initContainers", []):
        cpu, mem = max(cpu, req(init, "cpu")), max(mem, req(init, "memory"))
    return cpu, int(mem)


def always_on(docs: list[dict[str, Any]]) -> list[Workload]:
    out = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        if "helm.sh/hook" in (doc["metadata"].get("annotations") or {}):
            continue
        replicas = int(doc["spec"].get("replicas", 1))
        cpu, mem = pod_requests(doc["spec"]["template"]["spec"])
        out.append(Workload(doc["kind"], doc["metadata"]["name"], replicas, cpu * replicas, mem * replicas))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--values", action="append", default=[], help="values file for helm template")
    parser.add_argument("--check", action="store_true", help="exit 1 when the totals exceed the goal")
    args = parser.parse_args(argv)
    extra = [a for v in args.values for a in ("-f", v)]
    rendered = run(["helm", "template", "qhub", str(CHART), "--namespace", "qhub", *TEMPLATE_ARGS, *extra]).stdout
    workloads = always_on([d for d in yaml.safe_load_all(rendered) if d])
    for w in sorted(workloads, key=lambda w: (-w.cpu, w.name)):
        print(f"  {w.kind:<11} {w.name:<40} x{w.replicas}  cpu {w.cpu * 1000:6.0f}m  memory {w.memory / 2**20:7.0f}Mi")
    cpu = sum(w.cpu for w in workloads)
    mem = sum(w.memory for w in workloads)
    ok = round(cpu * 1000) <= round(GOAL_CPU * 1000) and mem <= GOAL_MEMORY  # millicores: no float drift
    print(f"always-on pods: {sum(w.replicas for w in workloads)}  requests: cpu {cpu:.3f} vCPU, memory "
          f"{mem / 2**30:.2f} GiB  (goal <= {GOAL_CPU:g} vCPU, <= {GOAL_MEMORY / 2**30:g} GiB: "
          f"{'within' if ok else 'OVER'})")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
