"""The real node's generated configuration, checked without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from qhubctl import localcluster, realnode

pytestmark = pytest.mark.unit


@pytest.fixture
def node(tmp_path: Path) -> realnode.RealNode:
    return realnode.RealNode(workdir=tmp_path / "clusters" / "c", bin_dir=tmp_path / "bin",
                             registry_dir=tmp_path / "registry")


def test_addons_place_hardened_pods_on_the_real_node(node: realnode.RealNode) -> None:
    objects = node.addon_manifests()
    kinds = [o["kind"] for o in objects]
    assert kinds.index("Namespace") == 0, "the namespace is created before what lives in it"
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"coredns", "local-path-provisioner"}
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {realnode.REAL_LABEL: "true"}
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert c["image"].startswith(f"{realnode.REGISTRY}/qhub/")
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["resources"]["requests"]
    text = json.dumps(objects)
    assert "$" not in text.replace("$VOL_DIR", ""), "every placeholder was filled"


def test_dns_service_and_default_class(node: realnode.RealNode) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in node.addon_manifests()}
    assert objects[("Service", "kube-dns")]["spec"]["clusterIP"] == realnode.DNS_IP
    sc = objects[("StorageClass", realnode.STORAGE_CLASS)]
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == realnode.PROVISIONER
    config = json.loads(objects[("ConfigMap", "local-path-config")]["data"]["config.json"])
    assert config["storageClassConfigs"][realnode.STORAGE_CLASS]["sharedFileSystemPath"] == str(node.volume_dir)
    assert localcluster.STORAGE_CLASS["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "false"


def test_kwok_manages_only_fake_nodes_and_the_api_server_is_reachable_from_pods(monkeypatch) -> None:
    head = json.loads(localcluster._kwokctl_config("c", "v1.36.3").split("\n---\n")[0])
    patches = {p["name"]: {a["key"]: a for a in p["extraArgs"]} for p in head["componentsPatches"]}
    kwok = patches["kwok-controller"]
    assert kwok["manage-all-nodes"] == {"key": "manage-all-nodes", "value": "false", "override": True}
    assert kwok["manage-nodes-with-annotation-selector"]["value"] == "kwok.x-k8s.io/node=fake"
    api = patches["kube-apiserver"]
    assert api["advertise-address"]["value"] == realnode.NODE_IP
    assert api["bind-address"]["override"] is True
    assert realnode.API_SERVICE_IP in head["options"]["kubeApiserverCertSANs"]
    without = json.loads(localcluster._kwokctl_config("c", "v1.36.3", with_real_node=False).split("\n---\n")[0])
    assert [p["name"] for p in without["componentsPatches"]] == ["kwok-controller"]


def test_kubelet_and_proxy_configs(node: realnode.RealNode, tmp_path: Path) -> None:
    node.root.mkdir(parents=True)
    node._write_kubelet_config(tmp_path / "pki")
    kubelet = yaml.safe_load((node.root / "kubelet.yaml").read_text())
    assert kubelet["clusterDNS"] == [realnode.DNS_IP]
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert {"key": realnode.REAL_LABEL, "value": "true", "effect": "NoSchedule"} in kubelet["registerWithTaints"]
    node._write_proxy_config(tmp_path / "kubeconfig")
    proxy = yaml.safe_load((node.root / "kube-proxy.yaml").read_text())
    assert proxy["mode"] == "iptables" and proxy["clusterCIDR"] == realnode.POD_CIDR
    (node.root / "cni" / "net.d").mkdir(parents=True)
    node._write_cni_config()
    cni = json.loads((node.root / "cni" / "net.d" / "10-qhub.conflist").read_text())
    assert cni["plugins"][0]["bridge"] == realnode.BRIDGE


def test_host_check_names_what_is_missing(node: realnode.RealNode, monkeypatch) -> None:
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    with pytest.raises(realnode.QHubError, match="needs root"):
        node.check_host()
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 0)
    monkeypatch.setattr(realnode.shutil, "which", lambda name: None if name == "containerd" else f"/usr/bin/{name}")
    with pytest.raises(realnode.QHubError, match="containerd") as err:
        node.check_host()
    assert "make setup" in err.value.hint
