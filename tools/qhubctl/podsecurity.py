"""Pod Security Admission labels of the namespace qhubctl deploys into.

The API server's Pod Security admission rejects any pod of a labelled namespace that breaks the `enforce` level,
and reports (warn: to the client, audit: to the audit log) pods that break `restricted`. QHub's pods - hub, proxy,
user servers, Dask schedulers and workers, the SSH gateway, conda-store, Jitsi, helm tests - all meet
`restricted` (non-root, no privilege escalation, every capability dropped, seccomp RuntimeDefault, no host
namespaces or hostPath), so that is what the namespace enforces. The one exception is the in-cluster NFS server
(storage.type nfs): NFS-Ganesha runs as root with CAP_DAC_READ_SEARCH and CAP_SYS_RESOURCE, which even `baseline`
forbids, so a namespace that holds it can enforce only `privileged`; warn and audit stay at `restricted` so any
other pod that breaks it is still reported. tests/cluster/test_pod_security.py checks each level against the real
API server with the chart's rendered pods.
"""

from __future__ import annotations

from qhubctl.config.model import QHubConfig

PREFIX = "pod-security.kubernetes.io"
LEVELS = ("privileged", "baseline", "restricted")  # loosest to strictest
# Evaluate with the rules of the API server's own version: QHub's pods meet every version's `restricted` so far.
VERSION = "latest"


def enforce_level(cfg: QHubConfig) -> tuple[str, str]:
    """The strictest level every pod of this deployment meets, and why it is not stricter."""
    if cfg.storage.type == "nfs":
        return "privileged", ("the in-cluster NFS server (storage.type nfs) runs as root with CAP_DAC_READ_SEARCH "
                              "and CAP_SYS_RESOURCE, outside Pod Security baseline")
    return "restricted", "every QHub pod meets restricted"


def namespace_labels(cfg: QHubConfig) -> dict[str, str]:
    """Labels of the release namespace: enforce the config's level, warn and audit at restricted."""
    level, _ = enforce_level(cfg)
    labels: dict[str, str] = {}
    for mode, value in (("enforce", level), ("warn", "restricted"), ("audit", "restricted")):
        labels[f"{PREFIX}/{mode}"] = value
        labels[f"{PREFIX}/{mode}-version"] = VERSION
    return labels
