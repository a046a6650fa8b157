"""The local cluster's real node: containerd, kubelet and kube-proxy run as host processes beside the control plane,
pods get addresses on a bridge, Services work through kube-proxy's iptables rules, CoreDNS and a local-path volume
provisioner run as pods on the node itself, and images come from a registry on loopback.

One real node per machine (the bridge, the iptables chains and the cgroups are machine-wide). It needs root.

    node = RealNode(cache_dir)       # paths and settings, nothing started
    node.prepare_network()           # bridge + sysctls, before the control plane starts
    node.start(kubeconfig, pki)      # registry, images, containerd, kubelet, kube-proxy; then wait_ready()
    node.install_addons(kubectl)     # CoreDNS, local-path provisioner, default StorageClass
    node.stop()                      # everything above undone; node.leftovers() says what (if anything) remains

Workloads reach the node with a nodeSelector on REAL_LABEL and a toleration of the taint of the same key
(the simulated node groups keep their own labels; see README "The local cluster").
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import string
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from qhubctl import daemons
from qhubctl.errors import CommandError, QHubError
from qhubctl.nodegroups import REAL_NODE_LABEL
from qhubctl.proc import run

NODE_NAME = "real-0"
# Label and taint (value "true", NoSchedule) of the real node: only pods that ask for it run there.
REAL_LABEL = REAL_NODE_LABEL
BRIDGE = "qhub0"
POD_CIDR = "10.244.0.0/16"
# The bridge's own address: the node's InternalIP, where pods reach the API server and the API server the kubelet.
NODE_IP = "10.244.0.1"
# kube-apiserver's Service range; its first address is the `kubernetes` Service, the tenth cluster DNS.
SERVICE_CIDR = "10.0.0.0/24"
API_SERVICE_IP = "10.0.0.1"
DNS_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
# Debian's docker-registry on loopback: the node pulls QHub's images from here (plain HTTP, loopback only).
REGISTRY = "127.0.0.1:5001"
KUBELET_PORT = 10450
KUBELET_HEALTHZ_PORT = 10448
PROXY_HEALTHZ_PORT = 10456
PROXY_METRICS_PORT = 10449
STORAGE_CLASS = "local-path"
PROVISIONER = "qhub.dev/local-path"
CNI_NETWORK = "qhub"
FIREWALL_CHAIN = "QHUB-APISERVER"
# Images the node itself needs, built from images/<name> by qhubctl's image builder and pushed to REGISTRY.
NODE_IMAGES = ("pause", "coredns", "local-path-provisioner", "busybox")
ADDONS = ("coredns", "local-path")
# Host programs the node runs (Debian packages from ci/apt-packages.txt) and the pinned ones from `make tools`.
HOST_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "ip6tables-save",
                 "ip", "docker-registry")
PINNED_PROGRAMS = ("kubelet", "kube-proxy", "crictl")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_BIN = Path("/usr/lib/cni")
REPO_IMAGES = Path(__file__).resolve().parents[2] / "images"

Log = Callable[[str], None]


def image_ref(name: str) -> str:
    """Where the node pulls the image built from images/<name>: REGISTRY/qhub/<name>:<version of its spec>."""
    from qhubctl.images.spec import published_tag

    return f"{REGISTRY}/{published_tag(REPO_IMAGES / name)}"


@dataclass
class RealNode:
    """Paths and settings of the real node of the cluster whose work folder is `workdir`."""

    workdir: Path
    bin_dir: Path
    registry_dir: Path

    @property
    def root(self) -> Path:
        return self.workdir / "node"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def volume_dir(self) -> Path:
        return self.root / "volumes"

    def _pid(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # ---- checks -------------------------------------------------------------------------------------------------

    def check_host(self) -> None:
        """Root, the Debian programs and the pinned binaries: a missing one is named with how to get it."""
        if os.geteuid() != 0:
            raise QHubError("the real node needs root (it runs containerd, kubelet and kube-proxy, and sets up "
                            "a bridge and iptables rules)", hint="run `make cluster-up` as root")
        missing = [p for p in HOST_PROGRAMS if shutil.which(p) is None]
        missing += [f"{CNI_BIN}/{p}" for p in CNI_PLUGINS if not (CNI_BIN / p).exists()]
        if missing:
            raise QHubError(f"the real node needs {', '.join(missing)}",
                            hint="run `make setup` (installs the Debian packages in ci/apt-packages.txt)")
        absent = [p for p in PINNED_PROGRAMS if not (self.bin_dir / p).exists()]
        if absent:
            raise QHubError(f"the real node needs {', '.join(absent)} in {self.bin_dir}",
                            hint="run `make tools` (builds them from Go modules, once per version)")
        owner = self.owner()
        if owner is not None and owner != self.workdir:
            raise QHubError(f"the machine's real node belongs to the cluster in {owner}",
                            hint=f"stop that cluster first (`python -m qhubctl.localcluster down --name {owner.name}`)")

    def owner(self) -> Path | None:
        """The work folder of the cluster whose kubelet runs on this machine, if any."""
        for pid_file in (self.workdir.parent).glob("*/node/run/kubelet.pid"):
            if daemons.running(pid_file, "kubelet"):
                return pid_file.parents[2]
        return None

    # ---- network ------------------------------------------------------------------------------------------------

    def prepare_network(self) -> None:
        """The pod bridge with the node address, forwarding, and bridged traffic through iptables."""
        if run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
            run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
        if f" {NODE_IP}/" not in addrs:
            run(["ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for key, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1"),
                           ("net/ipv4/conf/all/route_localnet", "1")):
            Path("/proc/sys", key).write_text(value)

    def guard_apiserver(self, port: int) -> None:
        """The API server listens on every address (pods reach it on the bridge): drop what comes from elsewhere."""
        self._drop_firewall()
        run(["iptables", "-N", FIREWALL_CHAIN])
        run(["iptables", "-A", FIREWALL_CHAIN, "-i", "lo", "-j", "RETURN"])
        run(["iptables", "-A", FIREWALL_CHAIN, "-i", BRIDGE, "-j", "RETURN"])
        run(["iptables", "-A", FIREWALL_CHAIN, "-p", "tcp", "--dport", str(port), "-j", "DROP"])
        run(["iptables", "-I", "INPUT", "-j", FIREWALL_CHAIN])

    def _drop_firewall(self) -> None:
        while run(["iptables", "-D", "INPUT", "-j", FIREWALL_CHAIN], check=False).ok:
            pass
        run(["iptables", "-F", FIREWALL_CHAIN], check=False)
        run(["iptables", "-X", FIREWALL_CHAIN], check=False)

    # ---- registry and images ------------------------------------------------------------------------------------

    def start_registry(self) -> None:
        """Debian's docker-registry on REGISTRY, storing under the cache so images outlive the cluster."""
        if _registry_up():
            return
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        config = self.root / "registry.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.registry_dir)}, "delete": {"enabled": True}},
            "http": {"addr": REGISTRY},
        }))
        daemons.start(self._pid("registry"), ["docker-registry", "serve", str(config)], log_file=self._log("registry"))
        daemons.wait_for("the image registry did not answer on " + REGISTRY, _registry_up, timeout=30,
                         log_file=self._log("registry"))

    def push_images(self, log: Log) -> None:
        """Build (from the builder's cache when nothing changed) and push the node's images."""
        from qhubctl.images import registry
        from qhubctl.images.build import build

        for name in NODE_IMAGES:
            ref = image_ref(name)
            started = time.monotonic()
            result = build(REPO_IMAGES / name, log=lambda msg, n=name: log(f"  {n}: {msg}"))
            target = registry.parse_target(REGISTRY, ref.split("/", 1)[1])
            registry.push(result.image, target, log=lambda msg: None)
            log(f"image {ref} {result.image.manifest_digest[:19]} ({time.monotonic() - started:.1f}s)")

    # ---- containerd, kubelet, kube-proxy ------------------------------------------------------------------------

    def start(self, kubeconfig: Path, pki: Path, log: Log) -> None:
        """Start the registry, push the node's images, start the runtime and the node agents (`wait_ready` waits
        for the node to report Ready)."""
        for sub in ("run", "logs", "containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.volume_dir.mkdir(parents=True, exist_ok=True)
        self.start_registry()
        self.push_images(log)
        changed = self._write_containerd_config()
        self._write_cni_config()
        self._daemon("containerd", str(self.socket), ["containerd", "--config", self.root / "containerd.toml"], changed)
        daemons.wait_for("containerd did not open its socket", self.socket.exists, timeout=30,
                         log_file=self._log("containerd"))
        changed = self._write_kubelet_config(pki)
        self._daemon("kubelet", "kubelet", [
            self.bin_dir / "kubelet", f"--config={self.root / 'kubelet.yaml'}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.root / 'kubelet'}", f"--cert-dir={self.root / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
            f"--node-labels={REAL_LABEL}=true", "--v=1",
        ], changed)
        # kube-proxy exits whenever its config file is written: it is only written when its content changes
        changed = self._write_proxy_config(kubeconfig)
        self._daemon("kube-proxy", "kube-proxy",
                     [self.bin_dir / "kube-proxy", f"--config={self.root / 'kube-proxy.yaml'}", "--v=1"], changed)

    def _daemon(self, name: str, marker: str, args: list, config_changed: bool) -> None:
        """Start a node daemon unless it runs already with an unchanged config."""
        if config_changed:
            daemons.stop(self._pid(name), marker)
        if not daemons.running(self._pid(name), marker):
            daemons.start(self._pid(name), args, log_file=self._log(name))

    def _write_containerd_config(self) -> bool:
        c = self.root / "containerd"
        hosts = c / "certs.d" / REGISTRY
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n')
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return _write_if_changed(self.root / "containerd.toml", "\n".join([
            "version = 2",
            f'root = "{c / "root"}"',
            f'state = "{c / "state"}"',
            "[grpc]",
            f'  address = "{self.socket}"',
            "[ttrpc]",
            f'  address = "{self.socket}.ttrpc"',
            "[debug]",
            f'  address = "{self.socket}.debug"',
            f"[{cri}]",
            f'  sandbox_image = "{image_ref("pause")}"',
            # this VM refuses a negative oom_score_adj: without this every sandbox fails to start
            "  restrict_oom_score_adj = true",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN}"',
            f'  conf_dir = "{self.root / "cni" / "net.d"}"',
            f"[{cri}.registry]",
            f'  config_path = "{c / "certs.d"}"',
            "",
        ]))

    def _write_cni_config(self) -> bool:
        conf = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.root / "cni" / "ipam")},
            }],
        }
        return _write_if_changed(self.root / "cni" / "net.d" / "10-qhub.conflist", json.dumps(conf, indent=2))

    def _write_kubelet_config(self, pki: Path) -> bool:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # the host has cgroup v1 and no systemd
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_IP,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            # the API server authenticates to the kubelet with a client certificate of the cluster CA (logs, exec)
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [DNS_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "registerWithTaints": [{"key": REAL_LABEL, "value": "true", "effect": "NoSchedule"}],
            "podLogsDir": str(self.root / "pod-logs"),
            "serializeImagePulls": False,
            "maxPods": 110,
            "podPidsLimit": 4096,
            # a shared development disk: never evict pods because other programs filled it
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "staticPodPath": "",
            "shutdownGracePeriod": "0s",
        }
        return _write_if_changed(self.root / "kubelet.yaml", yaml.safe_dump(config))

    def _write_proxy_config(self, kubeconfig: Path) -> bool:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
            # NodePorts answer on loopback (this machine's browser) and on the node address, not on eth0
            "nodePortAddresses": ["127.0.0.0/8", f"{NODE_IP}/32"],
            # leave the host's conntrack table sizes and timeouts as they are
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        return _write_if_changed(self.root / "kube-proxy.yaml", yaml.safe_dump(config))

    # ---- add-ons ------------------------------------------------------------------------------------------------

    def addon_manifests(self) -> list[dict]:
        """CoreDNS and the local-path provisioner, one object per file under qhubctl/data/addons."""
        values = {
            "CLUSTER_DOMAIN": CLUSTER_DOMAIN, "DNS_IP": DNS_IP, "REAL_NODE_LABEL": REAL_LABEL,
            "COREDNS_IMAGE": image_ref("coredns"), "PROVISIONER_IMAGE": image_ref("local-path-provisioner"),
            "BUSYBOX_IMAGE": image_ref("busybox"), "STORAGE_CLASS": STORAGE_CLASS, "PROVISIONER": PROVISIONER,
            "VOLUME_DIR": str(self.volume_dir),
        }
        objects = []
        base = resources.files("qhubctl").joinpath("data/addons")
        for addon in ADDONS:
            folder = base.joinpath(addon)
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                text = string.Template(item.read_text()).substitute(values)
                objects.append(yaml.safe_load(text))
        order = {"Namespace": 0, "ServiceAccount": 1, "ClusterRole": 1, "Role": 1, "ConfigMap": 1}
        return sorted(objects, key=lambda o: order.get(o["kind"], 2))

    # ---- images -------------------------------------------------------------------------------------------------

    def crictl(self) -> list[str]:
        return [str(self.bin_dir / "crictl"), "--runtime-endpoint", f"unix://{self.socket}", "--timeout", "30s"]

    def drop_stale_images(self) -> list[str]:
        """Forget the node's copy of every REGISTRY image whose tag now names another build in the registry.

        QHub's images keep one tag per release and the charts pull them IfNotPresent, so after a rebuild under the
        same tag the kubelet would go on starting the old copy; once it is gone, the next pod pulls the new one.
        Returns the references dropped."""
        held = json.loads(run([*self.crictl(), "images", "-o", "json"], timeout=60).stdout).get("images") or []
        dropped = []
        for image in held:
            for ref in image.get("repoTags") or []:
                if not ref.startswith(f"{REGISTRY}/"):
                    continue
                current = _registry_digest(ref)
                repo = ref.rsplit(":", 1)[0]
                if current and f"{repo}@{current}" not in (image.get("repoDigests") or []):
                    run([*self.crictl(), "rmi", ref], timeout=60)
                    dropped.append(ref)
        return dropped

    # ---- teardown -----------------------------------------------------------------------------------------------

    def stop(self, log: Log) -> None:
        """Undo everything `prepare_network` and `start` did. Raises QHubError listing anything that remains."""
        daemons.stop(self._pid("kubelet"), "kubelet")
        if daemons.running(self._pid("containerd"), str(self.socket)):
            # remove every pod sandbox through CRI, so that the CNI plugins release addresses and iptables rules
            run([*self.crictl(), "rmp", "--all", "--force"], check=False, timeout=120)
        daemons.stop(self._pid("kube-proxy"), "kube-proxy")
        run([self.bin_dir / "kube-proxy", "--cleanup"], check=False, timeout=60)
        daemons.stop(self._pid("containerd"), str(self.socket), grace=20)
        self._kill_leftover_processes()
        self._unmount_all()
        self._remove_cgroups()
        self._drop_firewall()
        self._sweep_chains()
        run(["ip", "link", "delete", BRIDGE], check=False)
        daemons.stop(self._pid("registry"), "docker-registry")
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        left = self.leftovers()
        if left:
            raise QHubError("the real node left things behind:\n  " + "\n  ".join(left),
                            hint="report this; `python -m qhubctl.localcluster down` tries again")
        log("real node stopped")

    def _our_processes(self) -> list[tuple[int, str]]:
        """Processes of this node: shims of our containerd, containers in the kubelet's cgroups, our daemons."""
        found = []
        markers = (str(self.root), str(self.socket))
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                cgroup = (proc / "cgroup").read_text()
            except OSError:
                continue
            if any(m in cmd for m in markers) or "/kubepods" in cgroup:
                found.append((int(proc.name), cmd or f"[pid {proc.name}]"))
        return found

    def _kill_leftover_processes(self) -> None:
        for _ in range(3):
            procs = self._our_processes()
            if not procs:
                return
            for pid, _cmd in procs:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)

    def _mounts(self) -> list[str]:
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(str(self.root) + "/") or re.match(r"^/(var/)?run/netns/cni-", point):
                mounts.append(point)
        return mounts

    def _unmount_all(self) -> None:
        for point in sorted(set(self._mounts()), key=len, reverse=True):
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)
        for ns in Path("/run/netns").glob("cni-*") if Path("/run/netns").is_dir() else []:
            run(["ip", "netns", "delete", ns.name], check=False)

    def _remove_cgroups(self) -> None:
        for controller in Path("/sys/fs/cgroup").iterdir():
            top = controller / "kubepods"
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
            except OSError:
                pass

    def _sweep_chains(self) -> None:
        """iptables chains of kube-proxy, the kubelet and the CNI plugins (KUBE-*, CNI-*) that survived the orderly
        teardown (e.g. after a crash): the rules jumping to them go first, then the chains."""
        for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
            dump = run([save], check=False).stdout
            table = ""
            rules: list[tuple[str, str, str]] = []
            chains: list[tuple[str, str]] = []
            for line in dump.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif m := re.match(r"^:((?:KUBE|CNI)-\S+)", line):
                    chains.append((table, m.group(1)))
                elif m := re.match(r"^-A (\S+) (.*-j ((?:KUBE|CNI)-\S+).*)$", line):
                    if not re.match(r"(KUBE|CNI)-", m.group(1)):  # jumps from built-in chains; the rest go with -F
                        rules.append((table, m.group(1), m.group(2)))
            for tbl, chain, rule in rules:
                run([tool, "-t", tbl, "-D", chain, *shlex.split(rule)], check=False)
            for tbl, chain in chains:
                run([tool, "-t", tbl, "-F", chain], check=False)
            for tbl, chain in chains:
                run([tool, "-t", tbl, "-X", chain], check=False)

    def leftovers(self) -> list[str]:
        """Anything of the real node still on the machine: processes, mounts, netns, bridge, iptables chains."""
        left = [f"process {pid}: {cmd[:120]}" for pid, cmd in self._our_processes()]
        registry = daemons.running(self._pid("registry"), "docker-registry")
        if registry:
            left.append(f"process {registry}: registry")
        left += [f"mount {m}" for m in self._mounts()]
        if Path("/run/netns").is_dir():
            left += [f"network namespace {p.name}" for p in Path("/run/netns").glob("cni-*")]
        if run(["ip", "link", "show", BRIDGE], check=False).ok:
            left.append(f"bridge {BRIDGE}")
        for tool in ("iptables-save", "ip6tables-save"):
            dump = run([tool], check=False).stdout
            for chain in sorted(set(re.findall(r"^:((?:KUBE|CNI|QHUB)-\S+)", dump, re.M))):
                left.append(f"{tool.split('-')[0]} chain {chain}")
        for controller in ("pids", "memory", "cpu"):
            if (Path("/sys/fs/cgroup") / controller / "kubepods").exists():
                left.append(f"cgroup {controller}/kubepods")
        return left


def _write_if_changed(path: Path, text: str) -> bool:
    """Write `text` unless the file holds it already; whether it was written."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _registry_up() -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2) as resp:  # noqa: S310 - loopback only
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(kubectl: Callable[..., str], timeout: float = 120) -> None:
    """Wait until the real node reports Ready."""
    def ready() -> bool:
        try:
            node = json.loads(kubectl("get", "node", NODE_NAME, "-o", "json"))
        except (CommandError, json.JSONDecodeError):
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    daemons.wait_for(f"node {NODE_NAME} did not become Ready", ready, timeout=timeout)


def _registry_digest(ref: str) -> str | None:
    """The digest REGISTRY serves for `ref` (REGISTRY/repo:tag) now; None when it does not have it."""
    repo, tag = ref[len(REGISTRY) + 1:].rsplit(":", 1)
    accept = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"))
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.headers.get("Docker-Content-Digest")
    except urllib.error.URLError:
        return None
