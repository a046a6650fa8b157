"""Before a managed cluster is deleted: give back what Kubernetes itself created in the cloud.

LoadBalancer Services own cloud load balancers and PersistentVolumeClaims own disks; deleting the cluster first
leaves both behind (and billing). This deletes every LoadBalancer Service and every PVC whose volume the cloud
deletes with it (reclaimPolicy Delete), then waits until the Services and those PersistentVolumes are gone, i.e. the
cloud controller and the CSI driver have released them. Volumes with reclaimPolicy Retain are listed and left.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import yaml

from qhubctl.errors import ClusterError
from qhubctl.providers.base import Log


def release_cloud_resources(kubeconfig: dict[str, Any], log: Log, timeout: float = 900,
                            namespace: str | None = None) -> list[str]:
    """Release what the cluster's (or one namespace's) Services and claims hold in the cloud; the names released."""
    from qhubctl.kube import kubernetes

    client, config = kubernetes().client, kubernetes().config
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as fh:
        fh.write(yaml.safe_dump(kubeconfig))
        fh.flush()
        api = client.CoreV1Api(config.new_client_from_config(fh.name))
    released: list[str] = []
    def all_services() -> list[Any]:
        found = (api.list_namespaced_service(namespace) if namespace else api.list_service_for_all_namespaces())
        return [s for s in found.items if s.spec.type == "LoadBalancer"]

    services = all_services()
    for svc in services:
        log(f"  - service {svc.metadata.namespace}/{svc.metadata.name} (its cloud load balancer)")
        api.delete_namespaced_service(svc.metadata.name, svc.metadata.namespace)
        released.append(f"service/{svc.metadata.namespace}/{svc.metadata.name}")
    volumes = {pv.metadata.name: pv for pv in api.list_persistent_volume().items}
    waiting: set[str] = set()
    claims = (api.list_namespaced_persistent_volume_claim(namespace) if namespace
              else api.list_persistent_volume_claim_for_all_namespaces())
    for pvc in claims.items:
        pv = volumes.get(pvc.spec.volume_name or "")
        if pv is not None and pv.spec.persistent_volume_reclaim_policy == "Retain":
            log(f"  kept volume {pv.metadata.name} of {pvc.metadata.namespace}/{pvc.metadata.name} (reclaimPolicy "
                "Retain): delete its cloud disk yourself if you do not need it")
            continue
        log(f"  - claim {pvc.metadata.namespace}/{pvc.metadata.name} (its cloud disk)")
        api.delete_namespaced_persistent_volume_claim(pvc.metadata.name, pvc.metadata.namespace)
        released.append(f"pvc/{pvc.metadata.namespace}/{pvc.metadata.name}")
        if pv is not None:
            waiting.add(pv.metadata.name)
    deadline = time.monotonic() + timeout
    while True:
        left_svc = [s.metadata.name for s in all_services()]
        left_pv = sorted(waiting & {pv.metadata.name for pv in api.list_persistent_volume().items})
        if not left_svc and not left_pv:
            return released
        if time.monotonic() > deadline:
            raise ClusterError(f"the cloud did not release {', '.join(left_svc + left_pv)} within {timeout:.0f}s",
                               hint="check the cloud console, then run destroy again")
        time.sleep(2)
