"""The cluster add-on release on the local test cluster, through qhubctl.addons and the helm wrapper the deploy uses:
install, a second run that changes nothing, an upgrade when a setting changes, `status`'s line, removal by
`qhubctl cluster destroy` of an existing-provider config that opted in (the release goes, the cluster stays). The
upstream images cannot be pulled here: cluster-autoscaler's pod lands on a simulated general node (kwok plays it),
and the test asserts on the objects the API server accepted. A release, namespace and StorageClass of its own (not
the default class: other tests share this cluster); all removed at the end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import addons
from qhubctl.cli import app
from qhubctl.config import parse_config
from qhubctl.localcluster import LocalCluster
from qhubctl.providers.base import AddonFacts

pytestmark = pytest.mark.cluster
ROLE = "arn:aws:iam::123456789012:role/qhub/demo/demo-cluster-autoscaler"


def config(expander: str) -> Any:
    return parse_config({"schema_version": 2, "project_name": "demo",
                         "cluster": {"provider": "aws", "autoscaler": {"expander": expander}},
                         # Traefik (cluster-scoped IngressClass qhub) is installed on the real node by
                         # tests/node/test_ingress_tls.py; here the parts only AWS gets
                         "ingress": {"controller": {"enabled": False}},
                         "node_groups": {"gpu": {"gpu": {"count": 1}}}}, environ={})


@pytest.fixture
def own_release(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """(release, namespace, StorageClass) of this test: the module's names and the class moved out of the way."""
    tag = uuid.uuid4().hex[:6]
    release, namespace, storage_class = f"addons-{tag}", f"qhub-addons-{tag}", f"gp3-{tag}"
    # like kube-system, where qhubctl installs it: the device plugin mounts the kubelet's device-plugin directory
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    mapped = addons.values

    def values(cfg: Any, facts: AddonFacts) -> dict[str, Any]:
        out = mapped(cfg, facts)
        out["storageClass"] = {**out["storageClass"], "name": storage_class, "default": False}
        return out

    monkeypatch.setattr(addons, "RELEASE", release)
    monkeypatch.setattr(addons, "NAMESPACE", namespace)
    monkeypatch.setattr(addons, "values", values)
    yield release, namespace, storage_class
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    for kind, name in (("clusterrole", f"{release}-cluster-autoscaler"),
                       ("clusterrolebinding", f"{release}-cluster-autoscaler"), ("storageclass", storage_class)):
        cluster.kubectl("delete", kind, name, "--ignore-not-found")


def get(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *args, "-o", "json")))


def test_install_noop_upgrade_status_remove(cluster: LocalCluster, own_release: tuple[str, str, str],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release, namespace, storage_class = own_release
    helm = addons.helm_for(str(cluster.kubeconfig), None)
    facts = AddonFacts("demo", "us-east-1", {"cluster-autoscaler": ROLE})
    said: list[str] = []

    assert addons.ensure(config("least-waste"), facts, helm, said.append, timeout="3m") is True
    assert f"installing release {release} in {namespace}" in said[0]
    deployment = get(cluster, "deployment", f"{release}-cluster-autoscaler", "-n", namespace)
    assert deployment["status"].get("readyReplicas") == 1, "helm waited for it (on a simulated general node)"
    pod_spec = deployment["spec"]["template"]["spec"]
    assert "--expander=least-waste" in pod_spec["containers"][0]["args"]
    assert pod_spec["nodeSelector"] == {"qhub.dev/node-group": "general"}
    account = get(cluster, "serviceaccount", "cluster-autoscaler", "-n", namespace)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
    binding = get(cluster, "clusterrolebinding", f"{release}-cluster-autoscaler")
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": namespace}
    assert get(cluster, "role", f"{release}-cluster-autoscaler", "-n", namespace)["rules"]
    daemonset = get(cluster, "daemonset", f"{release}-nvidia-device-plugin", "-n", namespace)
    terms = daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["gpu"]
    sc = get(cluster, "storageclass", storage_class)
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
    assert "storageclass.kubernetes.io/is-default-class" not in (sc["metadata"].get("annotations") or {})

    assert addons.ensure(config("least-waste"), facts, helm, said.append, timeout="3m") is False
    assert "is up to date" in said[-1]
    assert addons.ensure(config("most-pods"), facts, helm, said.append, timeout="3m") is True
    args = get(cluster, "deployment", f"{release}-cluster-autoscaler", "-n", namespace)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--expander=most-pods" in args and "--expander=least-waste" not in args
    status = addons.describe(config("most-pods"), helm)
    assert status[1].startswith(f"cluster add-ons: release {release} revision 2, deployed, chart ")

    # the existing provider has nothing of its own to destroy: a config that opted in to an add-on release (here
    # Traefik) still has destroy remove the release, naming the parts it held; the cluster itself stays
    config_file = tmp_path / "qhub-config.yaml"
    config_file.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo",
                                           "cluster": {"provider": "existing"},
                                           "ingress": {"controller": {"enabled": True}}}))
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config_file), "--yes"])
    assert res.exit_code == 0, res.output
    assert (f"removed the cluster add-on release {namespace}/{release} (cluster-autoscaler, storage-class, "
            "nvidia-device-plugin); cluster current-context itself stays") in " ".join(res.output.split())
    assert addons.remove(helm) is None, "a second removal finds nothing"
    left = cluster.kubectl("get", "clusterrole,clusterrolebinding,storageclass", "-o", "name")
    assert f"{release}-cluster-autoscaler" not in left and storage_class not in left
