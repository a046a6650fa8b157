"""`qhubctl check`: prove on the live cluster that its NetworkPolicies are enforced.

QHub's NetworkPolicies only protect anything when the cluster's network plugin enforces them; many do not (a
plain bridge, kubenet, GKE without Dataplane V2 or network policy, EKS without the VPC CNI's policy agent) and
then every policy is silently ignored. The check starts a canary pod in the release namespace that carries a
user server's selector labels, so the release's user-server NetworkPolicy selects it and none of the
`qhub.dev/access-*` labels other components admit. From there it probes:

- controls, which that policy allows and which must succeed, or the check proves nothing: DNS (the hub Service's
  name resolves to its ClusterIP) and the proxy's public port (the `<release>-proxy-public` Service);
- the hub's internal port (the hub Service's 8081, which admits only the proxy and `qhub.dev/access-hub` pods)
  and the cloud metadata address 169.254.169.254:80, which must not be reachable;
- with the in-cluster NFS server (storage.type nfs), its Service's port 2049, which must not be reachable either:
  the server admits the node ranges (where kubelets mount from), pod addresses often fall in them, and it trusts
  the uid a client sends, so the user servers' egress allowlist is what keeps them off.

`decide` turns the probe results into a verdict (pure, unit-tested); `run_check` does the cluster part. The pod
meets Pod Security `restricted` (the release namespace enforces it), runs the hub's own image (present and
pullable wherever the hub runs, with Python) on the hub's node group, and is deleted afterwards, also after a
failure or an interrupt.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qhubctl import kube
from qhubctl.config.model import CLUSTER_BLOCKS, QHubConfig
from qhubctl.errors import EXIT_USER, ClusterError, QHubError, UserError
from qhubctl.homes import hub_image

METADATA = "169.254.169.254"
Endpoint = tuple[str, int]  # a Service's ClusterIP and port, as the cluster has them
TIMEOUT = 5.0  # seconds a blocked connection is given before it counts as dropped
CANARY_LABEL = "qhub.dev/canary"
CANARY = "network-policy"


@dataclass(frozen=True)
class Enforcement:
    """Who enforces NetworkPolicies on the clusters a provider makes, and what to turn on where nobody does."""

    enforcer: str
    turn_on: str


# provider name -> who enforces NetworkPolicies there (from each provider's config block)
ENFORCEMENT: dict[str, Enforcement] = {
    name: Enforcement(block.network_policy_enforcer, block.network_policy_turn_on)
    for name, block in CLUSTER_BLOCKS.items()
}


@dataclass(frozen=True)
class Target:
    """One probe: `kind` tcp connects to host:port, dns resolves host; `allowed`: the policy lets it through."""

    name: str
    kind: str
    host: str
    port: int
    allowed: bool
    expect: str = ""  # dns: the address the name must resolve to

    @property
    def where(self) -> str:
        return self.host if self.kind == "dns" else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Result:
    target: Target
    reached: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """`enforced` only when every control got through and nothing forbidden did."""

    enforced: bool
    conclusive: bool
    lines: tuple[str, ...]
    summary: str
    fix: str = ""  # the provider's setting to turn on, when not enforced


def decide(results: list[Result], provider: str) -> Verdict:
    """The verdict from probe results: a broken control makes the check inconclusive (it proved nothing), a
    forbidden target reached means NetworkPolicies are not enforced, else they are."""
    controls = [r for r in results if r.target.allowed]
    forbidden = [r for r in results if not r.target.allowed]
    if not controls or not forbidden:
        raise ValueError("a check needs at least one control and one forbidden target")
    lines = tuple(_line(r) for r in results)
    failed = [r for r in controls if not r.reached]
    if failed:
        names = ", ".join(f"{r.target.name} ({r.target.where}: {r.detail})" for r in failed)
        return Verdict(False, False, lines, f"inconclusive: the canary could not reach {names}, which its "
                       "NetworkPolicy allows, so a blocked connection would prove nothing")
    leaked = [r for r in forbidden if r.reached]
    if leaked:
        names = " and ".join(f"{r.target.name} ({r.target.where})" for r in leaked)
        return Verdict(False, True, lines, f"NetworkPolicies are not enforced on this cluster: the canary, which "
                       f"the user servers' NetworkPolicy selects, reached {names}; the policy denies that",
                       fix=f"provider {provider}: turn on {ENFORCEMENT[provider].turn_on}")
    return Verdict(True, True, lines, f"NetworkPolicies are enforced ({ENFORCEMENT[provider].enforcer}): the "
                   "canary reached DNS and the proxy and nothing its policy denies")


def _line(result: Result) -> str:
    role = "control, must pass" if result.target.allowed else "denied, must fail"
    outcome = "reached" if result.reached else "not reached"
    return f"{result.target.name} {result.target.where} ({role}): {outcome} - {result.detail}"


class NotEnforcedError(QHubError):
    """The canary reached what the NetworkPolicies deny."""

    exit_code = EXIT_USER

    def __init__(self, verdict: Verdict, *, hint: str = "") -> None:
        super().__init__(verdict.summary, hint=hint)
        self.problems = list(verdict.lines)


class InconclusiveError(QHubError):
    """A control probe failed: the canary's network is broken, so nothing was proven either way."""

    def __init__(self, verdict: Verdict, *, hint: str = "") -> None:
        super().__init__(verdict.summary, hint=hint)
        self.problems = list(verdict.lines)


# What runs in the canary: probe each target, print one JSON line. Standard library only.
PROBE = """
import json, socket, sys, time
out = []
for t in json.loads(sys.argv[1]):
    begun = time.monotonic()
    try:
        if t["kind"] == "dns":
            found = sorted({a[4][0] for a in socket.getaddrinfo(t["host"], None, proto=socket.IPPROTO_TCP)})
            ok = not t["expect"] or t["expect"] in found
            detail = "resolved to " + ", ".join(found) + ("" if ok else ", not " + t["expect"])
        else:
            socket.create_connection((t["host"], t["port"]), timeout=t["timeout"]).close()
            ok, detail = True, "connected"
    except socket.timeout:
        ok, detail = False, "no answer (dropped)"
    except ConnectionRefusedError:
        ok, detail = False, "refused"
    except OSError as exc:
        ok, detail = False, type(exc).__name__ + ": " + str(exc)
    out.append({"name": t["name"], "reached": ok,
                "detail": detail + " after %.1f s" % (time.monotonic() - begun)})
print(json.dumps(out))
"""


def fullname(cfg: QHubConfig) -> str:
    """The chart's object name prefix (qhub.fullname: the release name cut to 40 characters)."""
    return cfg.release_name[:40].rstrip("-")


def targets(cfg: QHubConfig, hub: Endpoint, proxy: Endpoint, nfs: Endpoint | None = None) -> list[Target]:
    """The probes: two controls the user servers' policy allows, two targets it denies, and a third denied one,
    the NFS server's Service, when the deployment runs it (`nfs`)."""
    name = fullname(cfg)
    found = [
        Target("DNS", "dns", f"{name}-hub.{cfg.namespace}.svc", 0, True, expect=hub[0]),
        Target("the proxy's public port", "tcp", proxy[0], proxy[1], True),
        Target("the hub's internal port", "tcp", hub[0], hub[1], False),
        Target("the cloud metadata address", "tcp", METADATA, 80, False),
    ]
    if nfs:
        found.append(Target("the NFS server", "tcp", nfs[0], nfs[1], False))
    return found


def canary_pod(cfg: QHubConfig, name: str, image: str, placement: dict[str, Any],
               probes: list[Target]) -> dict[str, Any]:
    """The canary: a user server's selector labels (so the user servers' NetworkPolicy selects it), no
    qhub.dev/access-* label, Pod Security restricted, no token, a deadline."""
    args = [{"name": t.name, "kind": t.kind, "host": t.host, "port": t.port, "expect": t.expect,
             "timeout": TIMEOUT} for t in probes]
    labels = {"app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/instance": cfg.release_name,
              "app.kubernetes.io/component": "singleuser", "app.kubernetes.io/part-of": "qhub",
              "app.kubernetes.io/managed-by": "qhubctl", CANARY_LABEL: CANARY}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": 600,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "probe", "image": image, "command": ["python3", "-c", PROBE, json.dumps(args)],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "privileged": False, "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        }],
        **placement,
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def parse(log: str, probes: list[Target]) -> list[Result]:
    """The canary's JSON line as results, in the order of `probes`."""
    try:
        found = {r["name"]: r for r in json.loads(log.strip().splitlines()[-1])}
        return [Result(t, bool(found[t.name]["reached"]), str(found[t.name]["detail"])) for t in probes]
    except (ValueError, IndexError, KeyError, TypeError):
        raise ClusterError(f"the canary printed no probe results: {log.strip()[-500:]!r}") from None


@dataclass(frozen=True)
class Report:
    verdict: Verdict
    pod: str
    node: str
    seconds: float


def run_check(api: Any, cfg: QHubConfig, *, timeout: float = 300,
              say: Callable[[str], None] = lambda _: None) -> Report:
    """Run the canary in the release namespace and judge it. Raises NotEnforcedError / InconclusiveError."""
    if not cfg.components.jupyterhub:
        raise UserError("qhubctl check probes the hub's NetworkPolicies; components.jupyterhub is off")
    hub, proxy, nfs = _preflight(api, cfg)
    image, placement = hub_image(api, cfg)
    probes = targets(cfg, hub, proxy, nfs)
    base = f"/api/v1/namespaces/{cfg.namespace}/pods"
    for old in kube._items(api, base, labelSelector=f"{CANARY_LABEL}={CANARY}"):  # left by an interrupted run
        kube._rest(api, "DELETE", f"{base}/{old['metadata']['name']}", query={"gracePeriodSeconds": 0})
    name = f"{fullname(cfg)}-netcheck-{secrets.token_hex(3)}"
    begun = time.monotonic()
    say(f"canary pod {cfg.namespace}/{name} (image {image}) probes {len(probes)} targets ...")
    try:
        try:
            kube._rest(api, "POST", base, body=canary_pod(cfg, name, image, placement, probes))
        except ClusterError as exc:
            raise ClusterError(f"the canary pod was refused: {exc.message}",
                               hint="Pod Security admission or a quota of the namespace; the canary meets "
                                    "restricted") from None
        pod = _wait(api, cfg.namespace, name, timeout)
        log = str(kube._rest(api, "GET", f"{base}/{name}/log", raw=True) or "")
        results = parse(log, probes)
    finally:
        kube._rest(api, "DELETE", f"{base}/{name}", query={"gracePeriodSeconds": 0})
    verdict = decide(results, cfg.cluster.provider)
    report = Report(verdict, name, str(pod.get("spec", {}).get("nodeName", "")), time.monotonic() - begun)
    if not verdict.conclusive:
        raise InconclusiveError(verdict, hint="look at the namespace's NetworkPolicies and the cluster's DNS; "
                                              "`qhubctl status` shows whether the proxy runs")
    if not verdict.enforced:
        raise NotEnforcedError(verdict, hint=f"{verdict.fix} (docs/providers.md, NetworkPolicies)")
    return report


def _preflight(api: Any, cfg: QHubConfig) -> tuple[Endpoint, Endpoint, Endpoint | None]:
    """The hub and proxy Services' addresses (their `http` ports), and the NFS server's (its `nfs` port) when the
    deployment runs one, once the hub and that server are ready and the user servers' policy exists."""
    name, ns = fullname(cfg), cfg.namespace
    policy = kube._rest(api, "GET", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}-singleuser")
    if policy is None:
        raise UserError(f"release {cfg.release_name} in {ns} has no NetworkPolicy {name}-singleuser",
                        hint="deploy first (`qhubctl deploy`); with helm, global.networkPolicy.enabled must be true")
    hub = _service(api, ns, f"{name}-hub", "http")
    proxy = _service(api, ns, f"{name}-proxy-public", "http")
    _ready(api, ns, f"{name}-hub", "the hub")
    if cfg.storage.type != "nfs":
        return hub, proxy, None
    nfs_ns = cfg.storage.server_namespace or ns
    nfs = _service(api, nfs_ns, f"{name}-nfs", "nfs")
    _ready(api, nfs_ns, f"{name}-nfs", "the NFS server")
    return hub, proxy, nfs


def _service(api: Any, ns: str, svc: str, port_name: str) -> Endpoint:
    """A Service's ClusterIP and its port named `port_name` (else its first port)."""
    spec = (kube._rest(api, "GET", f"/api/v1/namespaces/{ns}/services/{svc}") or {}).get("spec") or {}
    ports = [p for p in spec.get("ports") or [] if p.get("name") == port_name] or spec.get("ports") or []
    if not spec.get("clusterIP") or not ports:
        raise ClusterError(f"no Service {ns}/{svc} with a port named {port_name}",
                           hint="deploy first: `qhubctl deploy`")
    return str(spec["clusterIP"]), int(ports[0]["port"])


def _ready(api: Any, ns: str, svc: str, what: str) -> None:
    """Refuse to probe a Service with no ready endpoint: a refused connection to it would prove nothing."""
    slices = kube._items(api, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                         labelSelector=f"kubernetes.io/service-name={svc}")
    if not [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]:
        raise ClusterError(f"{what} ({ns}/{svc}) has no ready endpoint: a refused connection to it would prove "
                           "nothing", hint=f"wait until `qhubctl status` shows {what} ready")


FAILED_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                  "CreateContainerError")


def _wait(api: Any, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = kube._rest(api, "GET", path) or {}
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return pod
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FAILED_WAITING:
                raise ClusterError(f"the canary pod cannot start: {waiting['reason']}: {waiting.get('message', '')}")
        time.sleep(1)
    conditions = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('message') or ''}".strip()
                           for c in (pod.get("status") or {}).get("conditions") or [])
    raise ClusterError(f"the canary pod did not finish within {timeout:.0f}s ({conditions or 'no status'})",
                       hint=f"kubectl -n {namespace} describe pod -l {CANARY_LABEL}={CANARY}")
