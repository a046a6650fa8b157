"""The local test cluster: a real Kubernetes control plane, one real node, and simulated node groups.

kwokctl starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller as host
processes from the binaries `make tools` built into $QHUB_CACHE/bin; nothing is downloaded.

- The real node `real-0` (qhubctl.realnode) runs containers: containerd, kubelet and kube-proxy on this machine,
  pods on a bridge, CoreDNS and a local-path volume provisioner (the default StorageClass) in pods. Pods get there
  with a nodeSelector and a toleration for `qhub.dev/real-node`.
- The simulated node groups (general, user, worker, gpu) are kwok nodes: the kwok controller plays their lifecycle
  (tools/qhubctl/data/kwok-stages.yaml) and manages only nodes annotated `kwok.x-k8s.io/node=fake`, so no
  container runs there, but everything the API server, scheduler, controllers, RBAC and Pod Security admission do
  is real. They are labelled and tainted as cloud node groups are (qhubctl.nodegroups), and the simulated autoscaler
  (qhubctl.simautoscaler) scales them between their min and max as pods come and go.

Used by `make cluster-up`/`make cluster-down` (python -m qhubctl.localcluster up|down), the pytest session
fixture and the `local` provider.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from qhubctl import daemons, realnode
from qhubctl.errors import QHubError
from qhubctl.nodegroups import DEFAULT_SCALE, GPU_RESOURCE, group_taints
from qhubctl.nodegroups import LABEL as NODE_GROUP_LABEL
from qhubctl.private import write_private
from qhubctl.proc import run

DEFAULT_NAME = "qhub-local"
KUBE_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok", "kwokctl")
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class SimulatedGroup:
    """A simulated (kwok) node group: the shape of its nodes and how far it may scale."""

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
                "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": self.taints(), "providerID": f"qhub-local://{self.name}/{node_name}"},
            "status": {"capacity": self.capacity(), "allocatable": self.capacity()},
        }


# The node shape of each standard group; counts from the one default table (qhubctl.nodegroups.DEFAULT_SCALE).
_SHAPES: dict[str, dict[str, Any]] = {
    "general": {"cpu": "8", "memory": "32Gi"},
    "user": {"cpu": "4", "memory": "32Gi"},
    "worker": {"cpu": "4", "memory": "16Gi"},
    "gpu": {"cpu": "8", "memory": "64Gi", "gpus": 1},
}
SIMULATED_GROUPS: tuple[SimulatedGroup, ...] = tuple(
    SimulatedGroup(name, *DEFAULT_SCALE[name], **shape) for name, shape in _SHAPES.items())


@dataclass
class LocalCluster:
    """A running local cluster: where its kubeconfig is and how to talk to it."""

    name: str
    kubeconfig: Path
    workdir: Path
    groups: list[SimulatedGroup] = field(default_factory=list)

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


def kwok_dir(name: str) -> Path:
    """kwokctl's folder of the cluster (its certificates, component configs and logs)."""
    return cache_dir() / "kwok" / "clusters" / name


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


def pki_dir(name: str) -> Path:
    """kwokctl's certificates of the cluster: ca.crt, admin.crt, admin.key."""
    return kwok_dir(name) / "pki"


def _api_sans() -> list[str]:
    """Names the API server's certificate must carry for clients on the real node's pods."""
    return [realnode.API_SERVICE_IP, realnode.NODE_IP, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            f"kubernetes.default.svc.{realnode.CLUSTER_DOMAIN}"]


def _kwokctl_config(name: str, kube_version: str, with_real_node: bool = True) -> str:
    b = bin_dir()
    pki = pki_dir(name)
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
        # in-cluster clients dial the `kubernetes` Service address and the node address
        "kubeApiserverCertSANs": _api_sans() if with_real_node else [],
    }

    def args(*pairs: tuple[str, str], override: tuple[str, ...] = ()) -> list[dict]:
        return [{"key": k, "value": v, "override": k in override} for k, v in pairs]

    patches = [
        # kwok plays the simulated nodes only; the real node's kubelet owns its node and pods
        {"name": "kwok-controller", "extraArgs": args(
            ("manage-all-nodes", "false"),
            ("manage-nodes-with-annotation-selector", "=".join(FAKE_NODE_ANNOTATION)),
            override=("manage-all-nodes",))},
    ]
    if with_real_node:
        # pods reach the API server on the bridge address (kube-proxy sends the `kubernetes` Service there);
        # realnode.guard_apiserver drops connections from anywhere but loopback and the bridge
        patches.append({"name": "kube-apiserver", "extraArgs": args(
            ("bind-address", "0.0.0.0"),
            ("advertise-address", realnode.NODE_IP),
            ("service-cluster-ip-range", realnode.SERVICE_CIDR),
            ("kubelet-client-certificate", str(pki / "admin.crt")),
            ("kubelet-client-key", str(pki / "admin.key")),
            ("kubelet-preferred-address-types", "InternalIP"),
            override=("bind-address",))})
        patches.append({"name": "kube-controller-manager",
                        "extraArgs": args(("service-cluster-ip-range", realnode.SERVICE_CIDR))})
    head = json.dumps({"kind": "KwokctlConfiguration", "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                       "options": options, "componentsPatches": patches})
    stages = resources.files("qhubctl").joinpath("data/kwok-stages.yaml").read_text()
    return f"{head}\n---\n{stages}"


def _kube_version() -> str:
    out = run([str(bin_dir() / "kube-apiserver"), "--version"]).stdout.strip()
    return out.split()[-1]  # "Kubernetes v1.36.3"


# The simulated nodes' class: kwok's Stages give its claims a volume that nothing can mount. With a real node,
# its `local-path` class (qhubctl.realnode) is the default instead.
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}},
    "provisioner": "qhub.dev/local-volume",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
    "allowVolumeExpansion": True,
}


def real_node(name: str) -> realnode.RealNode:
    return realnode.RealNode(workdir=cluster_dir(name), bin_dir=bin_dir(), registry_dir=cache_dir() / "registry")


def _api_port(kubeconfig: Path) -> int:
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1])


def up(name: str = DEFAULT_NAME, groups: tuple[SimulatedGroup, ...] | list[SimulatedGroup] = SIMULATED_GROUPS,
       scale_down_after: float = 30.0, log=print, with_real_node: bool = True) -> LocalCluster:
    """Start (or reuse) the cluster: control plane, real node with its add-ons, the min nodes of every simulated
    group, and the autoscaler. `with_real_node=False` gives a control plane with simulated nodes only (the machine
    has room for one real node, which another cluster may hold)."""
    check_tools()
    node = real_node(name)
    if with_real_node:
        node.check_host()
    started = time.monotonic()
    work = cluster_dir(name)
    work.mkdir(parents=True, exist_ok=True)
    kubeconfig = work / "kubeconfig"
    if with_real_node:
        node.prepare_network()
    if is_running(name):
        log(f"cluster {name} is already running")
    else:
        config_file = work / "kwokctl.yaml"
        config_file.write_text(_kwokctl_config(name, _kube_version(), with_real_node))
        run(["kwokctl", "--name", name, "--config", str(config_file), "create", "cluster", "--wait", "180s"],
            env=_kwok_env(name), timeout=300)
        log(f"control plane up in {time.monotonic() - started:.1f}s")
    # replaced atomically (other sessions may be reading it) and 0600 from the start (it holds the admin key)
    write_private(kubeconfig, run(["kwokctl", "--name", name, "get", "kubeconfig"], env=_kwok_env(name)).stdout)
    cluster = LocalCluster(name=name, kubeconfig=kubeconfig, workdir=work, groups=list(groups))
    simulated_class = json.loads(json.dumps(STORAGE_CLASS))
    simulated_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] = str(
        not with_real_node).lower()
    cluster.kubectl("apply", "-f", "-", input=json.dumps(simulated_class))
    for group in groups:
        for i in range(group.min_nodes):
            manifest = group.node_manifest(f"{group.name}-{i}")
            manifest["metadata"]["annotations"]["qhub.dev/autoscaler"] = "managed"
            cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    _start_autoscaler(cluster, scale_down_after)
    if with_real_node:
        _start_real_node(cluster, node, log)
    wait_nodes_ready(cluster, sum(g.min_nodes for g in groups) + (1 if with_real_node else 0))
    log(f"cluster {name} ready in {time.monotonic() - started:.1f}s; KUBECONFIG={kubeconfig}")
    return cluster


def _start_real_node(cluster: LocalCluster, node: realnode.RealNode, log) -> None:  # noqa: ANN001
    node.guard_apiserver(_api_port(cluster.kubeconfig))
    mark = time.monotonic()
    node.start(cluster.kubeconfig, pki_dir(cluster.name), log)
    realnode.wait_ready(cluster.kubectl)
    log(f"real node {realnode.NODE_NAME} Ready in {time.monotonic() - mark:.1f}s")
    mark = time.monotonic()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": node.addon_manifests()}))
    for namespace, deployment in (("kube-system", "coredns"), ("local-path-storage", "local-path-provisioner")):
        try:
            cluster.kubectl("rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=180s",
                            timeout=200)
        except QHubError as err:
            raise QHubError(f"the add-on {namespace}/{deployment} did not become ready on {realnode.NODE_NAME}",
                            hint=f"{err}\n{namespace_report(cluster, namespace, event_lines=15)}") from None
    log(f"add-ons (CoreDNS, local-path storage) ready in {time.monotonic() - mark:.1f}s")


def namespace_report(cluster: LocalCluster, namespace: str, *, logs: bool = False, event_lines: int = 0) -> str:
    """What a person needs to see why pods of a namespace did not start: their states and events (the last
    `event_lines`, or all), and with `logs` also `kubectl describe` and every pod's logs (last 200 lines)."""
    kubectl = str(bin_dir() / "kubectl")

    def out(*args: str) -> str:
        return f"$ kubectl {' '.join(args)}\n" + run([kubectl, *args], env=cluster.env, check=False).stdout

    events = out("get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
    if event_lines:
        events = "\n".join(events.splitlines()[-event_lines:])
    parts = [out("get", "pods", "-n", namespace, "-o", "wide"), events]
    if logs:
        parts.append(out("describe", "pods", "-n", namespace))
        names = run([kubectl, "get", "pods", "-n", namespace, "-o", "name"], env=cluster.env, check=False).stdout
        parts += [out("logs", "-n", namespace, name, "--all-containers", "--tail=200") for name in names.split()]
    return "\n".join(parts)


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


AUTOSCALER_MARKER = "qhubctl.simautoscaler"


def _start_autoscaler(cluster: LocalCluster, scale_down_after: float) -> None:
    pid_file = cluster.workdir / "autoscaler.pid"
    daemons.stop(pid_file, AUTOSCALER_MARKER)  # a lingering autoscaler must never act on the next cluster
    groups_file = cluster.workdir / "nodegroups.json"
    groups_file.write_text(json.dumps([asdict(g) for g in cluster.groups]))
    daemons.start(
        pid_file,
        [sys.executable, "-m", AUTOSCALER_MARKER, "--kubeconfig", str(cluster.kubeconfig),
         "--groups", str(groups_file), "--scale-down-after", str(scale_down_after)],
        log_file=cluster.workdir / "autoscaler.log", env=cluster.env,
    )


def is_running(name: str = DEFAULT_NAME) -> bool:
    if not kwok_dir(name).exists():
        return False
    result = run(["kwokctl", "--name", name, "get", "kubeconfig"], env=_kwok_env(name), check=False)
    if result.returncode != 0:
        return False
    probe = run([str(bin_dir() / "kubectl"), "--kubeconfig", "/dev/stdin", "get", "--raw", "/readyz"],
                input=result.stdout, check=False, timeout=10)
    return probe.returncode == 0


def down(name: str = DEFAULT_NAME, log=print) -> list[Path]:
    """Stop the autoscaler, the real node (everything it set up on this machine) and the control plane, and remove
    the cluster's folders (kwokctl's and $QHUB_CACHE/clusters/<name>: kubeconfig, logs, node groups). Returns the
    folders it removed; the caller says what happened (this logs only the real node's steps)."""
    work, kwok = cluster_dir(name), kwok_dir(name)
    daemons.stop(work / "autoscaler.pid", AUTOSCALER_MARKER)
    node = real_node(name)
    if node.root.exists():  # this cluster has the real node (a cluster without one must not touch another's)
        node.stop(log)
    removed: list[Path] = []
    if kwok.exists():
        run(["kwokctl", "--name", name, "delete", "cluster"], env=_kwok_env(name), timeout=120)
        shutil.rmtree(kwok, ignore_errors=True)  # whatever kwokctl left (logs)
        removed.append(kwok)
    if work.exists():  # after kwokctl, whose environment points into it
        shutil.rmtree(work)
        removed.append(work)
    return removed


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhubctl.localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "refresh-images"])
    parser.add_argument("--name", default=DEFAULT_NAME)
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            cluster = up(args.name)
            print(cluster.kubectl("get", "nodes", "-L", NODE_GROUP_LABEL))
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.action == "down":
            removed = down(args.name)
            print(f"cluster {args.name} deleted; removed {', '.join(map(str, removed))}" if removed
                  else f"cluster {args.name} is not running; nothing to remove")
        elif args.action == "refresh-images":
            for ref in real_node(args.name).drop_stale_images():
                print(f"the node forgot its old copy of {ref}; the next pod pulls the new build")
        else:
            print("running" if is_running(args.name) else "stopped")
    except QHubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
