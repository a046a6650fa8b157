"""The nfs subchart's volume Job (templates/volume/): makes the shared PersistentVolume of a release rendered without
a cluster to ask (helm template, --dry-run, GitOps renderers).

The kubelet mounts NFS from the node, where Service names do not resolve, so the volume names the server by its
ClusterIP, which only exists once the cluster has created the Service. This program waits until the cluster's DNS
answers for the Service (QHUB_NFS_SERVICE, <name>.<namespace>.svc), puts that address into each volume the chart
describes (QHUB_NFS_PV, a JSON list of volumes - or one volume - with an empty spec.nfs.server: the release's shared
volume and the Dask clusters' one) and makes the cluster hold exactly those volumes, each:

- none yet: create it;
- one naming this address: bring labels, annotations and spec up to date (a Released one is freed for the claim);
- one naming another address (left by an earlier install whose Service is gone): the address of a volume cannot
  change, so delete it and create it again, unless a claim still holds it - then stop and say what to do.

Every failure is retried until QHUB_NFS_TIMEOUT seconds have passed; then the program exits 1 with the last reason.
Standard library only: it runs in the NFS server's image, with the Job's ServiceAccount token.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
OWNER = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
T = TypeVar("T")


class Stop(Exception):
    """A state the program must not change on its own: the message says what to do."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api:
    """JSON requests to the API server with the pod's ServiceAccount token."""

    def __init__(self, host: str, port: int, token: str, context: ssl.SSLContext) -> None:
        self.host, self.port, self.token, self.context = host, port, token, context

    @classmethod
    def in_cluster(cls) -> Api:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise Stop("KUBERNETES_SERVICE_HOST/PORT are not set: this program runs in a pod of the volume Job")
        try:
            with open(f"{ACCOUNT}/token") as f:
                token = f.read().strip()
            return cls(host, int(port), token, ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt"))
        except (OSError, ssl.SSLError) as err:
            raise Stop(f"no ServiceAccount token or CA in {ACCOUNT} ({err}): the Job's pod mounts its token "
                       f"(automountServiceAccountToken)") from None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The decoded answer; None for 404 Not Found."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                                  "Accept": "application/json"})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if answer.status == 404:
            return None
        if answer.status >= 300:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data[:300].decode(errors="replace")
            raise ApiError(answer.status, message)
        return dict(json.loads(data)) if data else {}


def resolve(host: str) -> str:
    """The Service's address as the cluster DNS gives it (IPv4 first, like the chart's own choice)."""
    infos = socket.getaddrinfo(host, 2049, type=socket.SOCK_STREAM)
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            if info[0] == family:
                return str(info[4][0])
    raise OSError(f"{host} has no address")


def with_server(pv: dict[str, Any], server: str) -> dict[str, Any]:
    """The wanted volume, naming the server at `server`."""
    out = json.loads(json.dumps(pv))
    out["spec"]["nfs"]["server"] = server
    return dict(out)


def updated(live: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """`live` with the wanted labels, annotations and spec; a claim that holds it keeps its binding."""
    out = json.loads(json.dumps(live))
    meta = out["metadata"]
    meta["labels"] = {**meta.get("labels", {}), **want["metadata"].get("labels", {})}
    meta["annotations"] = {**meta.get("annotations", {}), **want["metadata"].get("annotations", {})}
    bound = live.get("status", {}).get("phase") == "Bound"
    for key, value in want["spec"].items():
        if not (key == "claimRef" and bound):
            out["spec"][key] = value
    out.pop("status", None)
    return dict(out)


def check_owner(live: dict[str, Any], want: dict[str, Any]) -> None:
    """Refuse a volume of the same name that Helm's ownership annotations give to another release."""
    have = live["metadata"].get("annotations", {})
    mine = want["metadata"]["annotations"]
    for key in OWNER:
        if have.get(key) and have[key] != mine[key]:
            raise Stop(f"PersistentVolume {live['metadata']['name']} belongs to another release ({key}="
                       f"{have[key]}, not {mine[key]}); delete it or install under another release name")


def reconcile(api: Api, want: dict[str, Any], wait_gone: Callable[[str], None]) -> str:
    """Make the cluster hold the wanted volume; what was done, in words."""
    name = want["metadata"]["name"]
    path = f"/api/v1/persistentvolumes/{name}"
    live = api.request("GET", path)
    if live is None:
        api.request("POST", "/api/v1/persistentvolumes", want)
        return "created"
    check_owner(live, want)
    server = want["spec"]["nfs"]["server"]
    old = live.get("spec", {}).get("nfs", {}).get("server")
    if old == server:
        api.request("PUT", path, updated(live, want))
        return "updated"
    phase = live.get("status", {}).get("phase", "")
    claim = live.get("spec", {}).get("claimRef") or {}
    if phase == "Bound":
        raise Stop(f"PersistentVolume {name} names the NFS server at {old}, but its Service now has {server} (it "
                   f"was created again), and the claim {claim.get('namespace')}/{claim.get('name')} still holds "
                   f"the volume, whose address cannot change. Stop the pods that mount the claim, delete the claim "
                   f"and the volume (the data stays on the server's disk), then apply the release again")
    api.request("DELETE", path)
    wait_gone(path)
    api.request("POST", "/api/v1/persistentvolumes", want)
    return f"created again (it named {old}, a {phase or 'new'} volume of an earlier Service)"


def retry(what: str, action: Callable[[], T], deadline: float, interval: float = 2.0) -> T:
    """`action`'s result, retried on failure until `deadline` (time.monotonic()); Stop ends it at once."""
    while True:
        try:
            return action()
        except Stop:
            raise
        except (OSError, ApiError, http.client.HTTPException) as err:
            if isinstance(err, ApiError) and err.status in (400, 422):
                raise Stop(f"{what}: the API server refuses the volume the chart describes: {err}") from None
            if time.monotonic() >= deadline:
                raise Stop(f"{what}: {err}") from None
            print(f"nfs-volume: {what}: {err}; trying again", flush=True)
            time.sleep(interval)


def settings() -> tuple[str, list[dict[str, Any]], float]:
    """The Service's name, the wanted volumes and the deadline, from the Job's environment."""
    try:
        service = os.environ["QHUB_NFS_SERVICE"]
        found = json.loads(os.environ["QHUB_NFS_PV"])
        wanted = [found] if isinstance(found, dict) else list(found)
        for want in wanted:
            if not isinstance(want["spec"]["nfs"], dict):
                raise TypeError("spec.nfs is not an object")
        if not wanted:
            raise ValueError("no volume")
        deadline = time.monotonic() + float(os.environ.get("QHUB_NFS_TIMEOUT", "240"))
        return service, [dict(w) for w in wanted], deadline
    except (KeyError, TypeError, ValueError) as err:
        raise Stop(f"the Job's environment is incomplete ({type(err).__name__}: {err}): QHUB_NFS_SERVICE, "
                   f"QHUB_NFS_PV (PersistentVolumes with spec.nfs) and QHUB_NFS_TIMEOUT come from the chart") from None


def main() -> int:
    try:
        service, wanted, deadline = settings()
        server = retry(f"waiting for the address of the NFS server's Service {service}", lambda: resolve(service),
                       deadline)
        print(f"nfs-volume: the NFS server's Service {service} has the address {server}", flush=True)
        api = Api.in_cluster()

        def gone(path: str) -> None:
            if api.request("GET", path) is not None:
                raise OSError("the old volume is still being deleted")

        def wait_gone(path: str) -> None:
            retry("deleting the old volume", lambda: gone(path), deadline)

        for want in (with_server(w, server) for w in wanted):
            done = retry(f"making PersistentVolume {want['metadata']['name']}",
                         lambda: reconcile(api, want, wait_gone), deadline)  # noqa: B023 - called in this turn
            print(f"nfs-volume: PersistentVolume {want['metadata']['name']} {done}: nfs {server}:/", flush=True)
    except Stop as err:
        print(f"nfs-volume: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
