"""The local test cluster: a real Kubernetes control plane on loopback with simulated nodes.

kwokctl starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller as host
processes from the binaries `make tools` built into $QHUB_CACHE/bin; nothing is downloaded. Nodes are fake: the
kwok controller plays their lifecycle (tools/qhubctl/data/kwok-stages.yaml), so no container ever runs, but
everything the API server, scheduler, controllers, RBAC and Pod Security admission do is real.

Node groups are labelled and tainted as cloud node groups are (design.md), and the simulated autoscaler
(qhubctl.simautoscaler) scales them between their min and max as pods come and go.

Used by `make cluster-up`/`make cluster-down` (python -m qhubctl.localcluster up|down), the pytest session
fixture and the `local` provider.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from qhubctl.errors import QHubError
from qhubctl.nodegroups import GPU_RESOURCE, group_taints
from qhubctl.nodegroups import LABEL as NODE_GROUP_LABEL
from qhubctl.proc import run

DEFAULT_NAME = "qhub-local"
KUBE_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok", "kwokctl")


@dataclass(frozen=True)
class NodeGroup:
    """A simulated node group: the shape of its nodes and how far it may scale."""

    name: str
    min_nodes: int
    max_nodes: int
    cpu: str = "4"
    memory: str = "16Gi"
    gpus: int = 0
    gpu_product: str = "NVIDIA-T4"

    def labels(self) -> dict[str, str]:
        labels = {NODE_GROUP_LABEL: self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        if self.gpus:
            labels["nvidia.com/gpu.product"] = self.gpu_product
        return labels

    def taints(self) -> list[dict[str, str]]:
        return [t.as_node_taint() for t in group_taints(self.name, gpu=self.gpus > 0)]

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "100Gi"}
        if self.gpus:
            cap[GPU_RESOURCE] = str(self.gpus)
        return cap

    def node_manifest(self, node_name: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node_name,
                "labels": {**self.labels(), "kubernetes.io/hostname": node_name},
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": self.taints(), "providerID": f"qhub-local://{self.name}/{node_name}"},
            "status": {"capacity": self.capacity(), "allocatable": self.capacity()},
        }


DEFAULT_GROUPS: tuple[NodeGroup, ...] = (
    NodeGroup("general", 1, 1, cpu="8", memory="32Gi"),
    NodeGroup("user", 0, 5, cpu="4", memory="32Gi"),
    NodeGroup("worker", 0, 5, cpu="4", memory="16Gi"),
    NodeGroup("gpu", 0, 2, cpu="8", memory="64Gi", gpus=1),
)


@dataclass
class LocalCluster:
    """A running local cluster: where its kubeconfig is and how to talk to it."""

    name: str
    kubeconfig: Path
    workdir: Path
    groups: list[NodeGroup] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        return run([str(bin_dir() / "kubectl"), *args], env=self.env, input=input, timeout=timeout).stdout


def cache_dir() -> Path:
    return Path(os.environ.get("QHUB_CACHE") or Path.home() / ".cache" / "qhub")


def bin_dir() -> Path:
    return cache_dir() / "bin"


def cluster_dir(name: str) -> Path:
    return cache_dir() / "clusters" / name


def _kwok_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    # kwokctl merges every cluster it creates into $KUBECONFIG and takes it out again on delete, switching the
    # current context: give it a file of its own so neither the user's kubeconfig nor another cluster's changes.
    cluster_dir(name).mkdir(parents=True, exist_ok=True)
    env["KUBECONFIG"] = str(cluster_dir(name) / "kwokctl-merged.kubeconfig")
    env["KWOK_WORKDIR"] = str(cache_dir() / "kwok")
    env["KWOK_RUNTIME"] = "binary"
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


def check_tools() -> None:
    missing = [t for t in KUBE_TOOLS if not (bin_dir() / t).exists()]
    if missing:
        raise QHubError(
            f"the local cluster needs {', '.join(missing)} in {bin_dir()}",
            hint="run `make tools` (builds them from Go modules, once per version)",
        )


def _kwokctl_config(kube_version: str) -> str:
    b = bin_dir()
    options = {
        "runtime": "binary",
        "kubeVersion": kube_version,
        "bindAddress": "127.0.0.1",
        "kubeApiserverBinary": str(b / "kube-apiserver"),
        "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
        "kubeSchedulerBinary": str(b / "kube-scheduler"),
        "kubectlBinary": str(b / "kubectl"),
        "etcdBinary": str(b / "etcd"),
        "etcdctlBinary": str(b / "etcdctl"),
        "kwokControllerBinary": str(b / "kwok"),
        "kubeAuthorization": True,
        "kubeAdmission": True,
    }
    head = json.dumps({"kind": "KwokctlConfiguration", "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "options": options})
    stages = resources.files("qhubctl").joinpath("data/kwok-stages.yaml").read_text()
    return f"{head}\n---\n{stages}"


def _kube_version() -> str:
    out = run([str(bin_dir() / "kube-apiserver"), "--version"]).stdout.strip()
    return out.split()[-1]  # "Kubernetes v1.36.3"


STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "qhub.dev/local-volume",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
    "allowVolumeExpansion": True,
}


def up(name: str = DEFAULT_NAME, groups: tuple[NodeGroup, ...] | list[NodeGroup] = DEFAULT_GROUPS,
       scale_down_after: float = 30.0, log=print) -> LocalCluster:
    """Start (or reuse) the cluster, create the min nodes of every group and start the autoscaler."""
    check_tools()
    started = time.monotonic()
    work = cluster_dir(name)
    work.mkdir(parents=True, exist_ok=True)
    kubeconfig = work / "kubeconfig"
    if is_running(name):
        log(f"cluster {name} is already running")
    else:
        config_file = work / "kwokctl.yaml"
        config_file.write_text(_kwokctl_config(_kube_version()))
        run(["kwokctl", "--name", name, "--config", str(config_file), "create", "cluster", "--wait", "180s"],
            env=_kwok_env(name), timeout=300)
    fresh = kubeconfig.with_suffix(".new")  # replaced atomically: other sessions may be reading it
    fresh.write_text(run(["kwokctl", "--name", name, "get", "kubeconfig"], env=_kwok_env(name)).stdout)
    fresh.replace(kubeconfig)
    cluster = LocalCluster(name=name, kubeconfig=kubeconfig, workdir=work, groups=list(groups))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(STORAGE_CLASS))
    for group in groups:
        for i in range(group.min_nodes):
            manifest = group.node_manifest(f"{group.name}-{i}")
            manifest["metadata"]["annotations"]["qhub.dev/autoscaler"] = "managed"
            cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    _start_autoscaler(cluster, scale_down_after)
    wait_nodes_ready(cluster, sum(g.min_nodes for g in groups))
    log(f"cluster {name} ready in {time.monotonic() - started:.1f}s; KUBECONFIG={kubeconfig}")
    return cluster


def node_schedulable(node: dict) -> bool:
    """Ready, and free of the not-ready/unreachable taints the node lifecycle controller puts on new nodes."""
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
    lifecycle = [t for t in node.get("spec", {}).get("taints", []) if t["key"].startswith("node.kubernetes.io/")]
    return ready and not lifecycle


def wait_nodes_ready(cluster: LocalCluster, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        ready = [n for n in nodes if node_schedulable(n)]
        if len(ready) >= count:
            return
        if time.monotonic() > deadline:
            raise QHubError(f"only {len(ready)} of {count} nodes became Ready within {timeout:.0f}s",
                            hint=f"see the kwok controller log under {cache_dir() / 'kwok'}")
        time.sleep(0.5)


def _start_autoscaler(cluster: LocalCluster, scale_down_after: float) -> None:
    pid_file = cluster.workdir / "autoscaler.pid"
    _stop_pid(pid_file)
    groups_file = cluster.workdir / "nodegroups.json"
    groups_file.write_text(json.dumps([asdict(g) for g in cluster.groups]))
    log_file = open(cluster.workdir / "autoscaler.log", "ab")
    import subprocess  # the autoscaler is a long-lived daemon, not a command: proc.run does not fit

    proc = subprocess.Popen(
        [sys.executable, "-m", "qhubctl.simautoscaler", "--kubeconfig", str(cluster.kubeconfig),
         "--groups", str(groups_file), "--scale-down-after", str(scale_down_after)],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=cluster.env,
    )
    pid_file.write_text(str(proc.pid))


def _stop_pid(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    try:
        pgid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
        if b"qhubctl.simautoscaler" not in cmdline:  # gone, and its pid perhaps reused by another process
            raise ProcessLookupError
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pgid):  # a lingering autoscaler must never act on the next cluster
            if time.monotonic() > deadline:
                os.killpg(pgid, signal.SIGKILL)
                break
            time.sleep(0.2)
    except (ProcessLookupError, ValueError, PermissionError, FileNotFoundError):
        pass
    pid_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether the process still runs; an exited child of this process is reaped (not counted as alive)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: look it up
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def is_running(name: str = DEFAULT_NAME) -> bool:
    if not (cache_dir() / "kwok" / "clusters" / name).exists():
        return False
    result = run(["kwokctl", "--name", name, "get", "kubeconfig"], env=_kwok_env(name), check=False)
    if result.returncode != 0:
        return False
    probe = run([str(bin_dir() / "kubectl"), "--kubeconfig", "/dev/stdin", "get", "--raw", "/readyz"],
                input=result.stdout, check=False, timeout=10)
    return probe.returncode == 0


def down(name: str = DEFAULT_NAME, log=print) -> None:
    _stop_pid(cluster_dir(name) / "autoscaler.pid")
    if (cache_dir() / "kwok" / "clusters" / name).exists():
        run(["kwokctl", "--name", name, "delete", "cluster"], env=_kwok_env(name), timeout=120)
        log(f"cluster {name} deleted")
    else:
        log(f"cluster {name} is not running")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhubctl.localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--name", default=DEFAULT_NAME)
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            cluster = up(args.name)
            print(cluster.kubectl("get", "nodes", "-L", NODE_GROUP_LABEL))
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.action == "down":
            down(args.name)
        else:
            print("running" if is_running(args.name) else "stopped")
    except QHubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
