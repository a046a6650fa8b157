"""`qhubctl upgrade --homes`: hand homes from before per-user uids (all owned by uid 1000) to their users.

Run once after deploying a release with per-user uids. It reads every user's uid from the hub's identities record
(the ConfigMap <release>-identities, which the hub fills at start for every user it knows), then runs the program
qhubctl.migrate_homes in a one-shot Job as root with only CHOWN, DAC_OVERRIDE, FOWNER and FSETID, where the
shared filesystem is reachable as root:

- storage.type existing: in the release namespace, on the shared PVC. That namespace enforces Pod Security
  `restricted`, which refuses any root pod, so its enforce label is lowered to `baseline` for the Job's lifetime
  (said on the terminal) and put back afterwards, whatever happens.
- storage.type nfs: on the NFS server's own disk (NFS clients are root-squashed), in the server's namespace
  (storage.server_namespace, else the release's; it enforces `privileged`), on the node the server runs on (its
  disk is ReadWriteOnce).

The Job runs the hub's image (Python), mounts the script and the record from a ConfigMap, has no ServiceAccount
token and is deleted with its ConfigMap when it has reported.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qhubctl import kube, migrate_homes, oneshot
from qhubctl.config.model import QHubConfig
from qhubctl.errors import ClusterError

IDENTITIES_KEY = "identities.json"
MOUNT = "/srv/shared"
SCRIPT_DIR = "/etc/qhub-migrate-homes"
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]


@dataclass
class Target:
    """Where the Job runs and what it mounts."""

    namespace: str
    claim: str
    sub_path: str = ""
    node: str = ""  # pinned: the NFS server's node (its disk is ReadWriteOnce)
    placement: dict[str, Any] = field(default_factory=dict)  # nodeSelector/tolerations (the hub's)


@dataclass
class Outcome:
    report: dict[str, Any]
    seconds: float
    relaxed: bool  # the namespace's Pod Security enforce label was lowered for the Job and put back


def identities(api: Any, cfg: QHubConfig) -> dict[str, Any]:
    """The hub's identities record; an error saying what to do when the hub has not written it yet."""
    name = f"{cfg.release_name}-identities"
    found = kube._rest(api, "GET", f"/api/v1/namespaces/{cfg.namespace}/configmaps/{name}")
    text = ((found or {}).get("data") or {}).get(IDENTITIES_KEY)
    if not text:
        raise ClusterError(f"the hub has not recorded any user's uid yet (ConfigMap {cfg.namespace}/{name})",
                           hint="deploy this version with `qhubctl deploy` and wait until the hub is ready: it "
                                "gives every user it knows a uid when it starts")
    return dict(json.loads(text))


def hub_image(api: Any, cfg: QHubConfig) -> tuple[str, dict[str, Any]]:
    """The deployed hub's image (it has Python) and its placement (the general node group)."""
    hub = kube._rest(api, "GET", f"/apis/apps/v1/namespaces/{cfg.namespace}/deployments/{cfg.release_name}-hub")
    if hub is None:
        raise ClusterError(f"no hub Deployment {cfg.release_name}-hub in namespace {cfg.namespace}",
                           hint="deploy first: `qhubctl deploy`")
    spec = hub["spec"]["template"]["spec"]
    placement = {k: spec[k] for k in ("nodeSelector", "tolerations", "imagePullSecrets") if spec.get(k)}
    return str(spec["containers"][0]["image"]), placement


def target(api: Any, cfg: QHubConfig, placement: dict[str, Any]) -> Target:
    """Where the shared filesystem is reachable as root."""
    if cfg.storage.type == "existing":
        return Target(cfg.namespace, f"{cfg.release_name}-shared", placement=placement)
    namespace = cfg.storage.server_namespace or cfg.namespace
    pod = kube._rest(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{cfg.release_name}-nfs-0")
    node = ((pod or {}).get("spec") or {}).get("nodeName")
    if not node:
        raise ClusterError(f"the NFS server pod {namespace}/{cfg.release_name}-nfs-0 is not running on a node",
                           hint="`qhubctl status` shows why; the migration runs next to the server's disk")
    return Target(namespace, f"{cfg.release_name}-nfs-data", sub_path="export", node=node,
                  placement={k: v for k, v in placement.items() if k == "imagePullSecrets"})


def job_manifest(name: str, image: str, where: Target) -> dict[str, Any]:
    """The one-shot Job: root with four capabilities, no token, the share and the script mounted."""
    mount: dict[str, Any] = {"name": "share", "mountPath": MOUNT}
    if where.sub_path:
        mount["subPath"] = where.sub_path
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "migrate",
            "image": image,
            "command": ["python3", f"{SCRIPT_DIR}/migrate_homes.py", "--root", MOUNT,
                        "--identities", f"{SCRIPT_DIR}/{IDENTITIES_KEY}"],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "privileged": False, "capabilities": {"drop": ["ALL"], "add": CAPABILITIES}},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            "volumeMounts": [mount, {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True}],
        }],
        "volumes": [{"name": "share", "persistentVolumeClaim": {"claimName": where.claim}},
                    {"name": "script", "configMap": {"name": name}}],
        **where.placement,
    }
    if where.node:
        pod["nodeName"] = where.node
    labels = {"app.kubernetes.io/part-of": "qhub", "app.kubernetes.io/component": "migrate-homes",
              "app.kubernetes.io/managed-by": "qhubctl"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def script_configmap(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "qhub",
                                                  "app.kubernetes.io/managed-by": "qhubctl"}},
            "data": {"migrate_homes.py": inspect.getsource(migrate_homes), IDENTITIES_KEY: json.dumps(record)}}


def legacy_servers(api: Any, namespace: str) -> list[str]:
    """User servers still running as the shared uid 1000: they lose their home when it is handed over."""
    pods = kube._items(api, f"/api/v1/namespaces/{namespace}/pods",
                       labelSelector="app.kubernetes.io/component=singleuser")
    out = []
    for pod in pods:
        containers = pod.get("spec", {}).get("containers") or []
        uid = ((containers[0].get("securityContext") or {}).get("runAsUser") if containers else None)
        if uid == migrate_homes.LEGACY_UID:
            out.append(str(pod["metadata"]["name"]))
    return sorted(out)


def migrate(api: Any, cfg: QHubConfig, *, timeout: float = 1800,
            say: Callable[[str], None] = lambda _: None) -> Outcome:
    """Run the migration Job and return its report."""
    record = identities(api, cfg)
    image, placement = hub_image(api, cfg)
    where = target(api, cfg, placement)
    name = f"{cfg.release_name}-migrate-homes"
    base = f"/api/v1/namespaces/{where.namespace}"
    jobs = f"/apis/batch/v1/namespaces/{where.namespace}/jobs"
    started = time.monotonic()
    with oneshot.pod_security_lowered(api, where.namespace, "the migration Job (root, CHOWN DAC_OVERRIDE FOWNER "
                                      "FSETID)", say) as relaxed:
        for path in (f"{jobs}/{name}", f"{base}/configmaps/{name}"):  # a leftover from an earlier run
            kube._rest(api, "DELETE", path, query={"propagationPolicy": "Background"})
        oneshot.gone(api, f"{jobs}/{name}")
        kube._rest(api, "POST", f"{base}/configmaps", body=script_configmap(name, record))
        kube._rest(api, "POST", jobs, body=job_manifest(name, image, where))
        job = oneshot.wait(api, where.namespace, name, timeout, "migration Job")
        log = oneshot.log(api, where.namespace, name)
        if not (job.get("status") or {}).get("succeeded"):
            raise ClusterError(f"the migration Job {where.namespace}/{name} failed:\n{log[-2000:]}",
                               hint="fix what it says and run `qhubctl upgrade --homes` again: it only touches "
                                    "what is still owned by uid 1000")
        report = json.loads(log.strip().splitlines()[-1])
        for path in (f"{jobs}/{name}", f"{base}/configmaps/{name}"):
            kube._rest(api, "DELETE", path, query={"propagationPolicy": "Background"})
    return Outcome(report, time.monotonic() - started, relaxed)


def summary(report: dict[str, Any]) -> list[str]:
    """Lines for the terminal."""
    migrated = sorted(report["migrated"].items())
    lines = [f"home/{n}: given to uid {v['uid']} ({v['entries']} entries)" for n, v in migrated]
    lines += [f"home/{n}: already its user's" for n in report["already"]]
    lines += [f"home/{n}: left owned by 1000 - no hub user of that name has a uid" for n in report["noUid"]]
    lines += [f"home/{n}: left alone - owned by uid {uid}, not 1000" for n, uid in sorted(report["otherOwner"].items())]
    lines += [f"home/{n}: left alone - not a folder" for n in report["notFolder"]]
    lines += [f"shared/{g}: {n} entries from before opened to the group"
              for g, n in sorted(report["groups"].items()) if n]
    lines += left_to_check(report)
    return lines or ["nothing to migrate: no home or group folder from before per-user uids"]


def left_to_check(report: dict[str, Any]) -> list[str]:
    """Lines for what the migration left owned by 1000 with its mode unchanged, and what the admin does about it."""
    lines: list[str] = []
    links, devices = report["multiLink"], report["devices"]
    if links["count"]:
        lines.append(f"{links['count']} names of files with a link outside their home or group folder were left to "
                     f"you to check (still uid 1000's, mode unchanged): {_listed(links)}")
        lines.append("why and what to do: before per-user uids anyone could hard-link another user's file or the "
                     "hub's (all uid 1000's) into their own folder, and handing the link over would hand over that "
                     "file; a file whose links are all inside one home (or one group folder) was handed over. On the "
                     "share, `find home/<user> -links +1 -user 1000 -ls` shows each one's inode and "
                     "`find . -xdev -inum <inode>` all its names: chown each file to its real owner by hand (in a "
                     "group folder: chgrp to the group, chmod g+rw) and leave the hub's and conda-store's to 1000")
    if devices["count"]:
        lines.append(f"{devices['count']} device files of uid 1000 were left as they were (their owner would get the "
                     f"device; remove them unless you know why they are there): {_listed(devices)}")
    return lines


def _listed(listing: dict[str, Any]) -> str:
    more = listing["count"] - len(listing["paths"])
    return ", ".join(listing["paths"]) + (f" and {more} more" if more > 0 else "")
