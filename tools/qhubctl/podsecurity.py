"""Pod Security Admission labels of the namespace qhubctl deploys into.

The API server's Pod Security admission rejects any pod of a labelled namespace that breaks the `enforce` level, and
reports (warn: to the client, audit: to the audit log) pods that break `restricted`. QHub's pods - hub, proxy, user
servers, Dask schedulers and workers, the SSH gateway, conda-store, Jitsi, helm tests - all meet `restricted`
(non-root, no privilege escalation, every capability dropped, seccomp RuntimeDefault, no host namespaces or
hostPath), so that is what the namespace enforces. The one exception is the in-cluster NFS server (storage.type
nfs): NFS-Ganesha runs as root with CAP_DAC_READ_SEARCH and without a seccomp filter, which even `baseline` forbids,
so a namespace that holds it can enforce only `privileged`; warn and audit stay at `restricted` so any other pod
that breaks it is still reported. With storage.server_namespace the server runs in a namespace of its own
(privileged) and the deployment's namespace enforces `restricted`. tests/cluster/test_pod_security.py checks each
level against the real API server with the chart's rendered pods.
"""

from __future__ import annotations

from qhubctl.config.model import QHubConfig

PREFIX = "pod-security.kubernetes.io"
LEVELS = ("privileged", "baseline", "restricted")  # loosest to strictest
# Evaluate with the rules of the API server's own version: QHub's pods meet every version's `restricted` so far.
VERSION = "latest"


def nfs_namespace(cfg: QHubConfig) -> str | None:
    """Namespace of the in-cluster NFS server, if it has one apart from the deployment's (storage.server_namespace)."""
    if cfg.storage.type != "nfs" or cfg.storage.server_namespace in (None, cfg.namespace):
        return None
    return cfg.storage.server_namespace


def enforce_level(cfg: QHubConfig) -> tuple[str, str]:
    """The strictest level every pod of the deployment's namespace meets, and why it is not stricter."""
    if cfg.storage.type == "nfs" and nfs_namespace(cfg) is None:
        return "privileged", ("the in-cluster NFS server (storage.type nfs) runs as root with CAP_DAC_READ_SEARCH "
                              "and seccomp Unconfined, outside Pod Security baseline; storage.server_namespace "
                              "moves it to a namespace of its own")
    return "restricted", "every QHub pod meets restricted"


def labels(enforce: str) -> dict[str, str]:
    """Enforce `enforce`, warn and audit at restricted."""
    found: dict[str, str] = {}
    for mode, value in (("enforce", enforce), ("warn", "restricted"), ("audit", "restricted")):
        found[f"{PREFIX}/{mode}"] = value
        found[f"{PREFIX}/{mode}-version"] = VERSION
    return found


def namespace_labels(cfg: QHubConfig) -> dict[str, str]:
    """Labels of the deployment's namespace: enforce the config's level, warn and audit at restricted."""
    return labels(enforce_level(cfg)[0])


def namespaces(cfg: QHubConfig) -> dict[str, dict[str, str]]:
    """Every namespace qhubctl creates for the config, with its Pod Security labels."""
    found = {cfg.namespace: namespace_labels(cfg)}
    server = nfs_namespace(cfg)
    if server:
        found[server] = labels("privileged")  # the NFS server alone
    return found
