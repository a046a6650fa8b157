"""Always-on memory of a deployed platform as the real node measures it: each container's working set (the
kubelet's /stats/summary, what the OOM killer and evictions go by), not its requests.

    KUBECONFIG=... python scripts/measure_idle_memory.py [--namespace qhub] [--node real-0]

Prints one line per container and the total; exits 1 when the namespace has no pods on the node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from qhubctl.localcluster import bin_dir
from qhubctl.proc import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="qhub")
    parser.add_argument("--node", default="real-0")
    args = parser.parse_args(argv)
    raw = run([str(bin_dir() / "kubectl"), "get", "--raw", f"/api/v1/nodes/{args.node}/proxy/stats/summary"],
              env=dict(os.environ)).stdout
    pods = [p for p in json.loads(raw).get("pods", []) if p["podRef"]["namespace"] == args.namespace]
    if not pods:
        print(f"no pods of namespace {args.namespace} on node {args.node}", file=sys.stderr)
        return 1
    total = 0
    for pod in sorted(pods, key=lambda p: p["podRef"]["name"]):
        for c in pod.get("containers", []):
            ws = int((c.get("memory") or {}).get("workingSetBytes") or 0)
            total += ws
            print(f"{pod['podRef']['name']:45s} {c['name']:20s} {ws / 2**20:8.1f} MiB")
    print(f"{'total working set':66s} {total / 2**20:8.1f} MiB ({len(pods)} pods)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
