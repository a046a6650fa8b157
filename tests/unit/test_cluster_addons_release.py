"""qhubctl.addons without a cluster: which providers get a release at all, when `ensure` installs, upgrades or
leaves the release alone, what `qhubctl status` says about autoscaling on each provider, `upgrade` and `cluster
destroy` where no cluster can be reached, `upgrade` moving the cloud's managed add-ons (asking first) before the
release, `cluster destroy` on an existing cluster (only the release goes) and on a cloud (the release is named with
what it removed), and the docs naming every pinned image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import addons
from qhubctl.chart import addons_chart_dir
from qhubctl.cli import app
from qhubctl.commands import cluster as cluster_cmd
from qhubctl.config import PROVIDERS, load_config, parse_config
from qhubctl.errors import QHubError
from qhubctl.helm import Deployed
from qhubctl.providers.base import Action, AddonFacts, Plan, Provider

pytestmark = pytest.mark.unit
FACTS = AddonFacts("demo", "us-east-1", {"cluster-autoscaler": "arn:aws:iam::123456789012:role/qhub/demo/x"})


class FakeHelm:
    """The two calls addons makes of qhubctl.helm.Helm, recorded."""

    chart_version = "0.1.0"

    def __init__(self, deployed: Deployed | None = None) -> None:
        self.current = deployed
        self.upgrades: list[dict[str, Any]] = []

    async def deployed(self, release: str, namespace: str) -> Deployed | None:
        assert (release, namespace) == ("qhub-cluster-addons", "kube-system")
        return self.current

    async def upgrade(self, release: str, namespace: str, values: dict[str, Any], **kw: Any) -> int:
        self.upgrades.append(values)
        self.current = Deployed(len(self.upgrades), "deployed", self.chart_version, values)
        return len(self.upgrades)

    async def uninstall(self, release: str, namespace: str, **kw: Any) -> None:
        assert (release, namespace) == ("qhub-cluster-addons", "kube-system") and self.current is not None
        self.current = None


def config(provider: str, **cluster: Any) -> Any:
    block = {"provider": provider, **({"project": "my-gcp-project"} if provider == "gcp" else {}), **cluster}
    return parse_config({"schema_version": 2, "project_name": "demo", "cluster": block}, environ={})


def test_each_cloud_gets_traefik_aws_its_autoscaler_too_and_the_device_plugin_only_with_a_gpu_group() -> None:
    assert {p: addons.parts(config(p)) for p in PROVIDERS} == {
        "aws": ["cluster-autoscaler", "storage-class", "traefik"], "gcp": ["traefik"], "azure": ["traefik"],
        "digitalocean": ["traefik"], "existing": [], "local": []}
    gpu = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "aws"},
                        "node_groups": {"gpu": {"gpu": {"count": 1}}}}, environ={})
    assert addons.parts(gpu) == ["cluster-autoscaler", "storage-class", "nvidia-device-plugin", "traefik"]


def test_aks_and_eks_get_the_device_plugin_with_a_gpu_group_gke_and_doks_run_their_own() -> None:
    """AKS installs the NVIDIA driver on GPU agent pools but not the device plugin (only its managed GPU pools, a
    preview qhubctl does not ask for, run one); GKE and DOKS run NVIDIA's plugin on their GPU pools themselves."""
    with_gpu = {p: addons.parts(gpu_config(p)) for p in ("aws", "gcp", "azure", "digitalocean")}
    assert {p: addons.DEVICE_PLUGIN in got for p, got in with_gpu.items()} == {
        "aws": True, "gcp": False, "azure": True, "digitalocean": False}
    assert with_gpu["azure"] == ["nvidia-device-plugin", "traefik"]
    values = addons.values(gpu_config("azure"), FACTS)
    assert set(values) == {"nodeGroupLabel", "nvidiaDevicePlugin", "traefik"}, "Traefik and the plugin: one release"
    assert values["nvidiaDevicePlugin"]["nodeGroups"] == ["gpu"]


def gpu_config(provider: str) -> Any:
    block = {"provider": provider, **({"project": "my-gcp-project"} if provider == "gcp" else {})}
    return parse_config({"schema_version": 2, "project_name": "demo", "cluster": block,
                         "node_groups": {"gpu": {"gpu": {"type": "nvidia-tesla-t4", "count": 1}}}}, environ={})


def test_ensure_installs_then_leaves_alone_then_upgrades_on_a_change() -> None:
    said: list[str] = []
    helm = FakeHelm()
    cfg = config("aws")
    assert addons.ensure(cfg, FACTS, helm, said.append) is True  # type: ignore[arg-type]
    assert helm.upgrades[0]["clusterAutoscaler"]["serviceAccount"]["roleArn"] == FACTS.roles["cluster-autoscaler"]
    assert addons.ensure(cfg, FACTS, helm, said.append) is False, "same chart and values: nothing to do"  # type: ignore[arg-type]
    assert "is up to date" in said[-1]
    changed = config("aws", autoscaler={"expander": "random"})
    assert addons.ensure(changed, FACTS, helm, said.append) is True  # type: ignore[arg-type]
    assert helm.upgrades[-1]["clusterAutoscaler"]["expander"] == "random" and len(helm.upgrades) == 2
    helm.chart_version = "0.2.0"  # a newer qhubctl's chart: `qhubctl upgrade` brings the release to it
    assert addons.ensure(changed, FACTS, helm, said.append) is True  # type: ignore[arg-type]
    assert "upgrading release qhub-cluster-addons" in said[-2]


def test_ensure_does_nothing_on_clusters_qhubctl_adds_nothing_to() -> None:
    helm = FakeHelm()
    for provider in ("existing", "local"):
        assert addons.ensure(config(provider), FACTS, helm, print) is False  # type: ignore[arg-type]
    assert helm.upgrades == []
    off = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "gcp", "project":
                        "my-gcp-project"}, "ingress": {"controller": {"enabled": False}}}, environ={})
    assert addons.ensure(off, FACTS, helm, print) is False  # type: ignore[arg-type]
    assert helm.upgrades == []


def test_status_names_the_autoscaler_of_each_provider() -> None:
    lines = {p: addons.describe(config(p), None) for p in PROVIDERS}
    assert lines["gcp"] == ["autoscaler: GKE's cluster autoscaler (autoscaling set on every node pool by `qhubctl "
                            "cluster create`)"]
    assert "AKS's cluster autoscaler" in lines["azure"][0] and "DOKS's cluster autoscaler" in lines["digitalocean"][0]
    assert "simulated autoscaler" in lines["local"][0]
    missing = addons.describe(config("aws"), FakeHelm())  # type: ignore[arg-type]
    assert missing[0] == "autoscaler: cluster-autoscaler (release qhub-cluster-addons in kube-system)"
    assert "is not installed in kube-system (run `qhubctl cluster create`)" in missing[1]
    there = addons.describe(config("aws"), FakeHelm(Deployed(3, "deployed", "0.1.0", {})))  # type: ignore[arg-type]
    assert there[1] == ("cluster add-ons: release qhub-cluster-addons revision 3, deployed, chart 0.1.0: "
                        "cluster-autoscaler, storage-class, traefik")


def test_upgrade_without_a_cluster_migrates_the_file_and_says_why_the_add_ons_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    config = tmp_path / "qhub-config.yaml"
    config.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo",
                                      "cluster": {"provider": "aws", "region": "us-east-1"}}))
    result = CliRunner().invoke(app, ["upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "cluster add-ons not upgraded: no kubeconfig for this cluster" in result.output
    skipped = CliRunner().invoke(app, ["upgrade", "-c", str(config), "--no-addons"])
    assert skipped.exit_code == 0 and "add-ons" not in skipped.output, skipped.output


V1_AWS = "project_name: demo\nprovider: aws\naws: {region: us-east-1}\n"  # an old file `upgrade` migrates


@pytest.fixture
def no_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """qhubctl without its aws extra: importing the AWS provider fails on boto3 (sys.modules restored after)."""
    for name in [m for m in sys.modules if m == "qhubctl.providers.aws" or m.startswith("qhubctl.providers.aws.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError(name="boto3")


@pytest.mark.usefixtures("no_boto3")
def test_upgrade_without_the_clouds_sdk_migrates_the_file_and_says_why_the_add_ons_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No boto3: without a kubeconfig upgrade says so as before the managed add-ons came; with one it names the
    missing package. Either way the file is migrated and upgrade exits 0 with its next step."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    config = tmp_path / "qhub-config.yaml"
    config.write_text(V1_AWS)
    result = CliRunner().invoke(app, ["upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "migrated" in text and (tmp_path / "qhub-config.yaml.v1.backup").exists()
    assert "cluster add-ons not upgraded: no kubeconfig for this cluster" in text and "next: `qhubctl validate" in text
    assert "boto3" not in text

    kubeconfig = tmp_path / "demo.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    found = CliRunner().invoke(app, ["upgrade", "-c", str(config), "--kubeconfig", str(kubeconfig)])
    assert found.exit_code == 0, found.output
    text = " ".join(found.output.split())
    assert "cluster add-ons not upgraded: provider aws needs a package that is not installed (boto3)" in text
    assert "install qhubctl's aws extra" in text and "run `qhubctl upgrade` again" in text


def test_upgrade_asks_before_moving_managed_add_ons_and_says_what_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`qhubctl upgrade` applies the provider's add-on plan (EKS's managed add-ons; against the EKS fake in
    tests/providers/test_aws.py), asking first like `cluster create`. Without --yes and a terminal it cannot ask:
    it shows the changes and what to run, moves none of them, and goes on with the add-on release and the rest."""
    from qhubctl import providers

    moved = Plan("aws", "demo", [Action("update", "eks-addon", "vpc-cni", {"version": ("v1.19.6", "v1.20.4")})])
    plans = [moved, Plan("aws", "demo")]
    applied: list[Plan] = []
    released: list[str] = []

    class Cloud(Provider):  # the AWS provider's managed add-ons without AWS
        name = "aws"
        managed_addons = ("vpc-cni", "aws-ebs-csi-driver")
        # the rest of the interface is not called by upgrade
        check_credentials = destroy_plan = destroy = kubeconfig = plan = None  # type: ignore[assignment]

        def addon_plan(self) -> Plan:
            return plans.pop(0)

        def apply(self, plan: Plan) -> None:
            applied.append(plan)

    monkeypatch.setattr(providers, "get", lambda cfg, log=print: Cloud(cfg, log))
    monkeypatch.setattr(addons, "ensure_for", lambda provider, path, context, say: released.append(path) or True)
    kubeconfig = tmp_path / "demo.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    path = tmp_path / "qhub-config.yaml"
    path.write_text(V1_AWS)

    skipped = CliRunner().invoke(app, ["upgrade", "-c", str(path), "--kubeconfig", str(kubeconfig)])
    assert skipped.exit_code == 0, skipped.output
    text = " ".join(skipped.output.split())
    assert "~ eks-addon vpc-cni version: v1.19.6 -> v1.20.4" in text and applied == []
    assert ("managed add-ons not updated (no terminal to ask on, and no --yes): run `qhubctl upgrade --yes` (or "
            "`qhubctl cluster create`) to apply the 1 change(s) above") in text
    assert released == [str(kubeconfig)], "only the managed add-on step is skipped: the release still moves"
    assert "next: `qhubctl validate" in text, "and upgrade ends as it does without managed add-ons"

    plans[:] = [moved, Plan("aws", "demo")]
    done = CliRunner().invoke(app, ["upgrade", "-c", str(path), "--kubeconfig", str(kubeconfig), "--yes"])
    assert done.exit_code == 0, done.output
    assert applied == [moved] and released == [str(kubeconfig)] * 2, "the managed add-ons, then the release"
    assert "updated eks-addon vpc-cni: version: v1.19.6 -> v1.20.4" in done.output

    newer = "vpc-cni v1.21.0 is newer than EKS's default v1.20.4 for Kubernetes 1.33: left as it is"
    plans[:] = [Plan("aws", "demo", notes=[newer])]
    noted = CliRunner().invoke(app, ["upgrade", "-c", str(path), "--kubeconfig", str(kubeconfig)])
    assert noted.exit_code == 0 and applied == [moved], noted.output
    assert f"up to date for the cluster's Kubernetes version note: {newer}" in " ".join(noted.output.split())


def test_destroy_of_an_unreachable_cluster_notes_the_release_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    class Gone:
        cfg = config("aws")

        def kubeconfig(self) -> dict[str, Any]:
            raise QHubError("EKS cluster demo not found")

    cluster_cmd.remove_addons(Gone(), Gone.cfg)  # type: ignore[arg-type]
    assert "release qhub-cluster-addons not removed (EKS cluster demo not found); it goes with the cluster" in \
        capsys.readouterr().out
    cluster_cmd.remove_addons(Gone(), config("existing"))  # type: ignore[arg-type]
    assert capsys.readouterr().out == "", "no add-on release on an existing cluster: nothing to say"


@pytest.fixture
def existing_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakeHelm, Path]:
    """An existing cluster reached without a cluster: the provider's node listing and kubeconfig, and the add-on
    release's helm, are fakes. (FakeHelm, a config with Traefik opted in.)"""
    from qhubctl.providers.existing import Existing

    monkeypatch.setattr(Existing, "check_credentials", lambda self: "kubeconfig context mine: 3 node(s)")
    monkeypatch.setattr(Existing, "kubeconfig", lambda self: {"apiVersion": "v1", "clusters": []})
    helm = FakeHelm()
    monkeypatch.setattr(addons, "helm_for", lambda kubeconfig, context: helm)
    path = tmp_path / "qhub-config.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo",
                                    "cluster": {"provider": "existing", "kube_context": "mine"},
                                    "ingress": {"controller": {"enabled": True}}}))
    return helm, path


def test_destroy_on_an_existing_cluster_removes_the_traefik_it_opted_into(
        existing_cluster: tuple[FakeHelm, Path]) -> None:
    """The existing provider has nothing of its own to destroy; the add-on release the config opted into still goes,
    and destroy says what it removed and that the cluster stays."""
    helm, config_file = existing_cluster
    assert addons.ensure(load_config(config_file), FACTS, helm, print) is True  # type: ignore[arg-type]
    refused = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config_file)])
    assert refused.exit_code != 0 and "needs confirmation" in refused.output and helm.current is not None

    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config_file), "--yes"])
    assert res.exit_code == 0, res.output
    assert helm.current is None, "the release was uninstalled"
    text = " ".join(res.output.split())
    assert "qhubctl keeps cluster mine (existing): it did not create it; 1 change" in text
    assert ("removed the cluster add-on release kube-system/qhub-cluster-addons (traefik); cluster mine itself "
            "stays") in text
    assert "nothing to destroy" not in text

    again = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config_file), "--yes"])
    assert again.exit_code == 0, again.output
    assert ("nothing to destroy: qhubctl keeps cluster mine (existing): it did not create it, and the add-on "
            "release qhub-cluster-addons is not installed in kube-system") in " ".join(again.output.split())


def test_destroy_on_an_existing_cluster_without_add_ons_touches_no_release(
        existing_cluster: tuple[FakeHelm, Path]) -> None:
    helm, config_file = existing_cluster
    helm.current = Deployed(1, "deployed", "0.1.0", {"traefik": {"enabled": True}})  # not this config's to remove
    config_file.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo",
                                           "cluster": {"provider": "existing", "kube_context": "mine"}}))
    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(config_file), "--yes"])
    assert res.exit_code == 0, res.output
    assert "this config installs no cluster add-on release on it" in " ".join(res.output.split())
    assert helm.current is not None


def test_cloud_destroy_names_the_release_among_what_it_removed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cloud's destroy removes the release first and lists it, with its parts, in the closing line."""
    helm = FakeHelm()
    cfg = gpu_config("azure")
    helm.current = Deployed(1, "deployed", helm.chart_version, addons.values(cfg, FACTS))
    order: list[str] = []

    class Cloud:
        name, cluster_name = "azure", "demo"

        def __init__(self, cfg: Any, log: Any = print) -> None:
            self.cfg, self.gone = cfg, False

        def check_credentials(self) -> str:
            return "subscription 0000"

        def destroy_plan(self) -> Plan:
            return Plan(self.name, self.cluster_name, [] if self.gone else [Action("delete", "aks-cluster", "demo")])

        def destroy(self, plan: Plan) -> None:
            order.append("release gone" if helm.current is None else "release still there")
            self.gone = True

        def kubeconfig(self) -> dict[str, Any]:
            return {"apiVersion": "v1", "clusters": []}

    monkeypatch.setattr(cluster_cmd.providers, "get", lambda cfg, log=print: Cloud(cfg, log))
    monkeypatch.setattr(addons, "helm_for", lambda kubeconfig, context: helm)
    path = tmp_path / "qhub-config.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "azure"},
                                    "node_groups": {"gpu": {"gpu": {"count": 1}}}}))
    res = CliRunner().invoke(app, ["cluster", "destroy", "-c", str(path), "--yes"])
    assert res.exit_code == 0, res.output
    assert order == ["release gone"], "the release goes before the cluster"
    assert ("cluster demo destroyed; removed add-on release kube-system/qhub-cluster-addons (nvidia-device-plugin, "
            "traefik), aks-cluster demo") in " ".join(res.output.split())


def test_docs_list_every_pinned_add_on_image() -> None:
    """docs/providers.md names each upstream image and tag the add-on chart pins (values.yaml is the one list)."""
    values = yaml.safe_load((addons_chart_dir() / "values.yaml").read_text())
    docs = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    autoscaler, plugin = values["clusterAutoscaler"]["image"], values["nvidiaDevicePlugin"]["image"]
    pinned = [autoscaler["repository"], plugin["repository"], f"`{plugin['tag']}`"]
    pinned += [f"{minor} `{tag}`" for minor, tag in autoscaler["tags"].items()]
    assert [p for p in pinned if p not in docs] == []
