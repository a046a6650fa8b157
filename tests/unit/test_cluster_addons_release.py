"""qhubctl.addons without a cluster: which providers get a release at all, when `ensure` installs, upgrades or
leaves the release alone, and what `qhubctl status` says about autoscaling on each provider."""

from __future__ import annotations

from typing import Any

import pytest

from qhubctl import addons
from qhubctl.config import PROVIDERS, parse_config
from qhubctl.helm import Deployed
from qhubctl.providers.base import AddonFacts

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


def config(provider: str, **cluster: Any) -> Any:
    block = {"provider": provider, **({"project": "my-gcp-project"} if provider == "gcp" else {}), **cluster}
    return parse_config({"schema_version": 2, "project_name": "demo", "cluster": block}, environ={})


def test_only_aws_gets_a_release_and_the_device_plugin_only_with_a_gpu_group() -> None:
    assert {p: addons.parts(config(p)) for p in PROVIDERS} == {
        "aws": ["cluster-autoscaler", "storage-class"], "gcp": [], "azure": [], "digitalocean": [], "existing": [],
        "local": []}
    gpu = parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "aws"},
                        "node_groups": {"gpu": {"gpu": {"count": 1}}}}, environ={})
    assert addons.parts(gpu) == ["cluster-autoscaler", "storage-class", "nvidia-device-plugin"]


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


def test_ensure_does_nothing_where_the_cloud_runs_its_own() -> None:
    helm = FakeHelm()
    for provider in ("gcp", "azure", "digitalocean", "existing", "local"):
        assert addons.ensure(config(provider), FACTS, helm, print) is False  # type: ignore[arg-type]
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
                        "cluster-autoscaler, storage-class")
