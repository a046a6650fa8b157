"""The nfs subchart and the umbrella's fallback shared PVC, as `helm template` renders them."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl.errors import CommandError
from qhubctl.proc import run

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "qhub"
IP = "10.96.0.20"
# The capabilities values.yaml documents for the NFS server container, and nothing else.
NFS_CAPS = {"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETGID", "SETUID"}


def template(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    out = run(["helm", "template", "qhub", str(chart), "--namespace", "qhub", *args], timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def template_error(*args: str) -> str:
    with pytest.raises(CommandError) as err:
        template(*args)
    return str(err.value)


DASK_NS = "qhub-dask"  # the Dask clusters' namespace (global.daskClusters), with a shared claim of its own


def find(docs: list[dict[str, Any]], kind: str, name: str, *, dask: bool = False) -> dict[str, Any]:
    """The one `kind`/`name` outside the Dask clusters' namespace (or, with `dask`, in it)."""
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name
            and (d["metadata"].get("namespace") == DASK_NS) == dask]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} rendered"
    return hits[0]


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return template("--set", f"nfs.service.clusterIP={IP}", "--set", "global.storageClass=fast")


def test_server_and_volume_agree_on_the_cluster_ip(docs: list[dict[str, Any]]) -> None:
    svc = find(docs, "Service", "qhub-nfs")
    pv = find(docs, "PersistentVolume", "qhub-qhub-shared")
    assert svc["spec"]["clusterIP"] == IP == pv["spec"]["nfs"]["server"]
    assert [(p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [(2049, "TCP")]
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["storageClassName"] == ""
    assert pv["spec"]["claimRef"] == {"namespace": "qhub", "name": "qhub-shared"}
    assert "nfsvers=4.1" in pv["spec"]["mountOptions"]


def test_shared_pvc_binds_the_release_volume(docs: list[dict[str, Any]]) -> None:
    pvc = find(docs, "PersistentVolumeClaim", "qhub-shared")
    assert pvc["spec"]["volumeName"] == "qhub-qhub-shared"
    assert pvc["spec"]["storageClassName"] == ""
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_dask_clusters_namespace_gets_the_same_export_through_a_volume_of_its_own(docs: list[dict[str, Any]]) -> None:
    """A claim is namespaced: Dask pods mount homes and environments through a second volume on the same export,
    reserved for the claim of the same name in the clusters' namespace (reclaim Retain: deleting it keeps the
    data); without the gateway there is neither."""
    main = find(docs, "PersistentVolume", "qhub-qhub-shared")
    mirror = find(docs, "PersistentVolume", "qhub-dask-qhub-shared")
    assert mirror["spec"]["claimRef"] == {"namespace": DASK_NS, "name": "qhub-shared"}
    assert {**mirror["spec"], "claimRef": main["spec"]["claimRef"]} == main["spec"]
    pvc = find(docs, "PersistentVolumeClaim", "qhub-shared", dask=True)
    assert pvc["spec"]["volumeName"] == "qhub-dask-qhub-shared" and pvc["spec"]["storageClassName"] == ""
    off = template("--set", f"nfs.service.clusterIP={IP}", "--set", "dask-gateway.enabled=false",
                   "--set", "global.daskClusters.enabled=false",
                   "--set", "jupyterhub.hub.services.dask-gateway.enabled=false")
    assert not [d for d in off if DASK_NS in (d["metadata"].get("namespace"), d["metadata"]["name"])
                or d["metadata"]["name"].startswith(DASK_NS)]


def test_backing_disk_is_a_kept_pvc_of_the_global_storage_class(docs: list[dict[str, Any]]) -> None:
    data = find(docs, "PersistentVolumeClaim", "qhub-nfs-data")
    assert data["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert data["spec"]["storageClassName"] == "fast"
    assert data["spec"]["accessModes"] == ["ReadWriteOnce"]
    sts = find(docs, "StatefulSet", "qhub-nfs")
    assert sts["spec"]["replicas"] == 1
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "qhub-nfs-data"
    assert not any("emptyDir" in v for n, v in volumes.items() if n == "data")


def test_only_the_documented_privilege_is_granted(docs: list[dict[str, Any]]) -> None:
    pod = find(docs, "StatefulSet", "qhub-nfs")["spec"]["template"]["spec"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    server = {c["name"]: c for c in pod["containers"]}["nfs-server"]
    sc = server["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged")
    assert sc["capabilities"]["drop"] == ["ALL"] and set(sc["capabilities"]["add"]) == NFS_CAPS
    assert sc["readOnlyRootFilesystem"] is True
    # no seccomp filter for the server alone (name_to_handle_at), documented with the capabilities
    assert sc["seccompProfile"] == {"type": "Unconfined"}
    init = pod["initContainers"][0]
    assert "seccompProfile" not in init["securityContext"]  # the pod's RuntimeDefault
    assert set(init["securityContext"]["capabilities"]["add"]) == {"CHOWN", "FOWNER"}
    assert "chown 1000:100 /export" in init["command"][-1]
    values = (CHART / "charts" / "nfs" / "values.yaml").read_text()
    for cap in [*NFS_CAPS, "Unconfined"]:
        assert cap in values, f"{cap} is granted but not documented in nfs/values.yaml"
    for c in pod["containers"] + pod["initContainers"]:
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]


DEFAULT_CIDRS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]


def ganesha(docs: list[dict[str, Any]]) -> str:
    return str(find(docs, "ConfigMap", "qhub-nfs")["data"]["ganesha.conf"])


def test_network_policy_admits_only_the_nodes_on_2049(docs: list[dict[str, Any]]) -> None:
    """The server's side: only the node ranges, where kubelets mount, on 2049, and no pod or namespace selector.
    Pod addresses can fall in those ranges, so pods are kept off by their own egress policies too
    (test_network_reach.py); no workload carries an access label for NFS."""
    np = find(docs, "NetworkPolicy", "qhub-nfs")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"] and np["spec"]["egress"] == []
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": "nfs", "protocol": "TCP"}]
    assert [list(peer) for peer in rule["from"]] == [["ipBlock"]] * len(DEFAULT_CIDRS), "pod or namespace selectors"
    assert [p["ipBlock"]["cidr"] for p in rule["from"]] == DEFAULT_CIDRS
    for pod in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        assert "qhub.dev/access-nfs" not in pod["spec"]["template"]["metadata"]["labels"], pod["metadata"]["name"]


def test_ganesha_serves_only_the_client_ranges_and_squashes_root(docs: list[dict[str, Any]]) -> None:
    conf = ganesha(docs)
    export = conf[conf.index("EXPORT {"):conf.index("LOG {")]
    assert re.search(r"^\s*Access_Type = None;", export, re.M), "the export admits nobody by default"
    (client,) = re.findall(r"CLIENT \{(.*?)\}", export, re.S)
    assert f"Clients = {', '.join(DEFAULT_CIDRS)};" in client and "Access_Type = RW;" in client
    squashes = re.findall(r"Squash = (\w+);", conf)
    assert squashes and set(squashes) == {"Root_Squash"}, squashes
    assert "No_Root_Squash" not in conf and "no_root_squash" not in conf.lower()
    assert "Anonymous_Uid = 65534;" in export
    narrow = template("--set", f"nfs.service.clusterIP={IP}", "--set", "nfs.clientCIDRs={10.20.0.0/16}")
    assert "Clients = 10.20.0.0/16;" in ganesha(narrow)
    (rule,) = find(narrow, "NetworkPolicy", "qhub-nfs")["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert "nfs.clientCIDRs" in template_error("--set", f"nfs.service.clusterIP={IP}", "--set", "nfs.clientCIDRs=null")


def test_share_is_always_mounted_nosuid_nodev(docs: list[dict[str, Any]]) -> None:
    options = find(docs, "PersistentVolume", "qhub-qhub-shared")["spec"]["mountOptions"]
    assert options[-2:] == ["nosuid", "nodev"] and "nfsvers=4.1" in options
    custom = template("--set", f"nfs.service.clusterIP={IP}", "--set", "nfs.mountOptions={nfsvers=4.2,suid,dev,nosuid}")
    assert find(custom, "PersistentVolume", "qhub-qhub-shared")["spec"]["mountOptions"] == ["nfsvers=4.2", "nosuid",
                                                                                           "nodev"]


@pytest.mark.parametrize(("setting", "named"), [("nfs.export.rootSquash=false", "always squashes root"),
                                                ("nfs.networkPolicy.clientCIDRs={0.0.0.0/0}", "nfs.clientCIDRs")])
def test_loosening_values_are_gone_and_named(setting: str, named: str) -> None:
    msg = template_error("--set", f"nfs.service.clusterIP={IP}", "--set", setting)
    assert named in msg and setting.split("=")[0].rsplit(".", 1)[0] in msg


def test_server_can_live_in_its_own_namespace() -> None:
    docs = template("--set", f"nfs.service.clusterIP={IP}", "--set", "nfs.server.namespace=qhub-nfs")
    for kind, name in [("Service", "qhub-nfs"), ("StatefulSet", "qhub-nfs"), ("NetworkPolicy", "qhub-nfs"),
                       ("PersistentVolumeClaim", "qhub-nfs-data"), ("ConfigMap", "qhub-nfs")]:
        assert find(docs, kind, name)["metadata"]["namespace"] == "qhub-nfs"
    assert "namespace" not in find(docs, "PersistentVolumeClaim", "qhub-shared")["metadata"]


def test_existing_rwx_storage_replaces_the_server() -> None:
    docs = template("--set", "nfs.enabled=false", "--set", "sharedStorage.existingStorageClass=efs",
                    "--set", "sharedStorage.size=2Ti")
    pvc = find(docs, "PersistentVolumeClaim", "qhub-shared")
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "efs",
                           "resources": {"requests": {"storage": "2Ti"}}}
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not [d for d in docs if d["kind"] == "PersistentVolume"]
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/name") == "nfs"]


def test_neither_server_nor_storage_class_fails_clearly() -> None:
    msg = template_error("--set", "nfs.enabled=false")
    assert "sharedStorage.existingStorageClass" in msg and "nfs.enabled" in msg


# --- the static-band address picker, rendered with fake lookups ---------------------------------------------
PROBE = """{{- $services := dict "items" (list (dict "spec" (dict "clusterIP" "TAKEN"))) -}}
{{- range $i, $cidr := .Values.cidrs }}
- {{ include "nfs.staticBandIp" (dict "cidr" (dict "spec" (dict "cidrs" $cidr)) "services" (dict "items" (list
    (dict "spec" (dict "clusterIP" ($.Values.taken | default "none")))))
  "seed" $.Values.seed) | quote }}
{{- end }}
"""


def pick(tmp_path: Path, cidrs: list[list[str]], seed: str = "qhub/qhub", taken: str = "") -> list[str]:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    shutil.copy(CHART / "charts" / "nfs" / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "templates" / "probe.yaml").write_text("ips:" + PROBE)
    (chart / "values.yaml").write_text(yaml.safe_dump({"cidrs": cidrs, "seed": seed, "taken": taken}))
    out = run(["helm", "template", "p", str(chart)], timeout=60).stdout
    return yaml.safe_load(out)["ips"]


def test_static_band_address_is_free_repeatable_and_in_band(tmp_path: Path) -> None:
    ips = pick(tmp_path, [["10.96.0.0/12"], ["fd00::/108", "172.20.0.0/24"], ["10.43.0.0/16"]])
    for ip, net, band in zip(ips, ["10.96.0.0/12", "172.20.0.0/24", "10.43.0.0/16"], [256, 16, 256], strict=True):
        offset = int(ipaddress.ip_address(ip)) - int(ipaddress.ip_network(net).network_address)
        assert 2 <= offset < band and offset != 10, (ip, net)
    assert pick(tmp_path, [["10.96.0.0/12"]]) == ips[:1], "same release, same address"
    assert pick(tmp_path, [["10.96.0.0/12"]], seed="other/qhub") != ips[:1]
    # An address another Service holds is skipped.
    assert pick(tmp_path, [["10.96.0.0/12"]], taken=ips[0]) != ips[:1]


def test_static_band_needs_an_ipv4_range(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="nfs.service.clusterIP"):
        pick(tmp_path, [["fd00::/108"]])
