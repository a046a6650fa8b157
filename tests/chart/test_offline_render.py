"""The chart renders where users render it (issue 14): `helm template` and `helm lint --strict` of the bare defaults,
with no values file and no cluster to ask (as Argo CD, `helm install --dry-run` and marketplace previews render),
give valid manifests in which the NFS server's Service takes its address from the cluster and the volume Job makes
the shared PersistentVolume (charts/nfs/templates/volume/); with an address known at render time the chart renders
the volume itself and no Job."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl.proc import Result, run

from .manifests import kube_versions, pod_problems, validation_errors

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
NFS_FILES = CHART / "charts" / "nfs" / "files"
VOLUME = "qhub-nfs-volume"
RBAC = "qhub-qhub-nfs-volume"  # cluster-wide: <namespace>-<release>-nfs-volume
PV = "qhub-qhub-shared"
DASK_PV = "qhub-dask-qhub-shared"  # the same export for the claim in the Dask clusters' namespace qhub-dask


def no_cluster_env(tmp: Path) -> dict[str, str]:
    """What a renderer with no cluster sees (on top of this environment): KUBECONFIG names a file that does not
    exist, and the in-cluster variables are empty (client-go then knows it runs in no cluster)."""
    return {"KUBECONFIG": str(tmp / "no-such-kubeconfig"), "KUBERNETES_SERVICE_HOST": "",
            "KUBERNETES_SERVICE_PORT": ""}


def helm(*args: str, env: dict[str, str] | None = None) -> Result:
    return run(["helm", *args], env=env, check=False, timeout=180)


@cache
def offline(*args: str) -> tuple[dict[str, Any], ...]:
    """`helm template` of the chart with no cluster (and `args`), as documents."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    out = helm("template", "qhub", str(CHART), "--namespace", "qhub", *args, env=no_cluster_env(tmp))
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    """Objects of `kind` (named `name`); with `namespace`, only those the render puts there (none set: the
    release's)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace", "qhub") == namespace)]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    hits = find(docs, kind, name, namespace)
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} rendered"
    return hits[0]


def volume_job(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (job,) = [d for d in find(docs, "Job") if d["metadata"]["name"].startswith(VOLUME + "-")]
    return job


def job_pvs(job: dict[str, Any]) -> list[dict[str, Any]]:
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    return list(json.loads(env["QHUB_NFS_PV"]))


def test_bare_defaults_template_and_lint_without_a_cluster(tmp_path: Path) -> None:
    env = no_cluster_env(tmp_path)
    rendered = helm("template", "qhub", str(CHART), env=env)
    assert rendered.returncode == 0, rendered.stderr
    linted = helm("lint", "--strict", str(CHART), env=env)
    assert linted.returncode == 0 and "0 chart(s) failed" in linted.stdout, linted.stdout + linted.stderr


def test_bare_defaults_are_valid_and_restricted() -> None:
    docs = offline()
    for version in kube_versions():
        errors = validation_errors(docs, version)
        assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)
    problems = pod_problems(docs)
    assert not problems, "\n".join(problems)


def test_without_a_cluster_the_job_makes_the_volume_instead_of_the_chart() -> None:
    docs = offline()
    assert not find(docs, "PersistentVolume"), "no address to name: the chart renders no volume"
    service = one(docs, "Service", "qhub-nfs")
    assert "clusterIP" not in service["spec"], "the cluster gives the Service its address"
    pvc = one(docs, "PersistentVolumeClaim", "qhub-shared", "qhub")
    assert pvc["spec"]["volumeName"] == PV and pvc["spec"]["storageClassName"] == ""
    dask = one(docs, "PersistentVolumeClaim", "qhub-shared", "qhub-dask")
    assert dask["spec"]["volumeName"] == DASK_PV and dask["spec"]["storageClassName"] == ""
    job = volume_job(docs)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["QHUB_NFS_SERVICE"] == "qhub-nfs.qhub.svc"
    assert container["command"][-1] == "/opt/qhub/nfs_volume.py"
    program = one(docs, "ConfigMap", VOLUME)["data"]["nfs_volume.py"]
    assert program.strip() == (NFS_FILES / "nfs_volume.py").read_text().strip()
    assert pod["volumes"] == [{"name": "program", "configMap": {"name": VOLUME}}]
    # the NFS server's own image (its Debian Python runs the program), from the same value as the server's
    server = one(docs, "StatefulSet", "qhub-nfs")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == server["image"] == "qhub/nfs-server:" + str(
        yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])
    assert pod["nodeSelector"] == {"qhub.dev/node-group": "general"}


def test_the_job_makes_exactly_the_volumes_the_chart_would_render() -> None:
    """One definition of the volume: the Job's are the chart's own (with an address) - the release's and the Dask
    clusters' - plus Helm's ownership, so a later `helm upgrade` that can ask the cluster adopts them, and Argo CD's
    leave-alone annotations."""
    made = job_pvs(volume_job(offline()))
    assert [pv["metadata"]["name"] for pv in made] == [PV, DASK_PV]
    assert [pv["spec"]["claimRef"]["namespace"] for pv in made] == ["qhub", "qhub-dask"]
    for pv in made:
        assert pv["spec"]["nfs"] == {"server": "", "path": "/"}
        rendered = one(offline("--set", "nfs.service.clusterIP=10.96.0.20"), "PersistentVolume", pv["metadata"]["name"])
        assert rendered["spec"]["nfs"]["server"] == "10.96.0.20"
        pv["spec"]["nfs"]["server"] = "10.96.0.20"
        assert pv["spec"] == rendered["spec"]
        assert pv["metadata"]["labels"] == rendered["metadata"]["labels"]
        assert pv["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert pv["metadata"]["annotations"] == {
            "meta.helm.sh/release-name": "qhub", "meta.helm.sh/release-namespace": "qhub",
            # Argo CD (label tracking) would take the volume for an object of its application that git lacks
            "argocd.argoproj.io/sync-options": "Prune=false",
            "argocd.argoproj.io/compare-options": "IgnoreExtraneous"}
    alone = job_pvs(volume_job(offline("--set", "dask-gateway.enabled=false",
                                       "--set", "global.daskClusters.enabled=false",
                                       "--set", "jupyterhub.hub.services.dask-gateway.enabled=false")))
    assert [pv["metadata"]["name"] for pv in alone] == [PV], "no Dask clusters' namespace, no second volume"


def test_the_job_may_touch_its_own_volume_only() -> None:
    docs = offline()
    job = volume_job(docs)
    pod = job["spec"]["template"]["spec"]
    account = one(docs, "ServiceAccount", VOLUME)
    assert account["automountServiceAccountToken"] is False, "the token goes only where the Job's pod asks for it"
    assert pod["serviceAccountName"] == VOLUME and pod["automountServiceAccountToken"] is True
    others = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert all(d["spec"]["template"]["spec"].get("serviceAccountName") != VOLUME for d in others)
    role = one(docs, "ClusterRole", RBAC)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["persistentvolumes"], "resourceNames": [PV, DASK_PV],
         "verbs": ["get", "update", "delete"]},
    ]
    binding = one(docs, "ClusterRoleBinding", RBAC)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RBAC}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": VOLUME, "namespace": "qhub"}]


def test_the_job_is_bounded_and_reaches_only_dns_and_the_api() -> None:
    docs = offline()
    spec = volume_job(docs)["spec"]
    assert 0 < spec["backoffLimit"] <= 5 and 0 < spec["activeDeadlineSeconds"] <= 900
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    policy = one(docs, "NetworkPolicy", VOLUME)["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nfs-volume"
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    ports = sorted((p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 443), ("TCP", 6443), ("UDP", 53)]
    off = offline("--set", "global.networkPolicy.enabled=false")
    assert not find(off, "NetworkPolicy", VOLUME) and volume_job(off)


def test_the_jobs_name_follows_what_it_does() -> None:
    """A Job's pod template is immutable: another volume is another Job (name), the same render the same name."""
    first = volume_job(offline())["metadata"]["name"]
    offline.cache_clear()
    assert volume_job(offline())["metadata"]["name"] == first, "the same render, the same Job"
    other = volume_job(offline("--set", "nfs.mountOptions={nfsvers=4.2}"))["metadata"]["name"]
    assert other != first and other.startswith(VOLUME + "-") and len(first) <= 63


def test_server_in_its_own_namespace_is_resolved_there() -> None:
    docs = offline("--set", "nfs.server.namespace=qhub-nfs")
    container = volume_job(docs)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "QHUB_NFS_SERVICE", "value": "qhub-nfs.qhub-nfs.svc"} in container["env"]
    assert "namespace" not in volume_job(docs)["metadata"], "the Job runs in the release namespace"


def test_an_address_known_at_render_time_needs_no_job() -> None:
    docs = offline("--set", "nfs.service.clusterIP=10.96.0.20")
    assert one(docs, "Service", "qhub-nfs")["spec"]["clusterIP"] == "10.96.0.20"
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                == "nfs-volume"], "no Job, ServiceAccount, ClusterRole, binding, ConfigMap or NetworkPolicy"
