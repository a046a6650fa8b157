"""Which version of an EKS managed add-on qhubctl asks for (providers.eks_addon_versions), against a stand-in for
boto3's DescribeAddonVersions paginator: EKS's default for the Kubernetes version wherever it is in the pages, else
the highest compatible version compared by its numbers, a clear error when there is none; the `addonVersion`
argument a plan's action carries to CreateAddon/UpdateAddon; never a downgrade (an installed version newer than the
wanted one is left as it is, with a note), and a note on a vpc-cni move that skips minor versions. The requests
themselves are checked against botocore's model by the add-on fake in tests/providers/test_aws.py."""

from __future__ import annotations

from typing import Any

import pytest

from qhubctl.errors import UserError
from qhubctl.providers import eks_addon_versions as versions
from qhubctl.providers.base import Action, Plan

pytestmark = pytest.mark.unit


def item(version: str, **compat: bool) -> dict[str, Any]:
    """An addonVersions entry compatible with the Kubernetes versions given as `k1_33=True` (default) or False."""
    return {"addonVersion": version, "compatibilities": [
        {"clusterVersion": k.removeprefix("k").replace("_", "."), "platformVersions": ["*"], "defaultVersion": d}
        for k, d in compat.items()]}


class Paginated:
    """`eks.get_paginator("describe_addon_versions").paginate(...)`: the pages given, the arguments recorded."""

    def __init__(self, *pages: list[dict[str, Any]]) -> None:
        self.pages = [{"addons": addons} for addons in pages]
        self.asked: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> Paginated:
        assert operation == "describe_addon_versions"
        return self

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.asked.append(kwargs)
        return self.pages


def test_the_default_for_the_kubernetes_version_wherever_it_is_in_the_pages() -> None:
    eks = Paginated(
        [{"addonName": "vpc-cni", "addonVersions": [item("v1.21.0-eksbuild.1", k1_34=True, k1_33=False)]}],
        [{"addonName": "coredns", "addonVersions": [item("v1.11.4-eksbuild.2", k1_33=True)]},
         {"addonName": "vpc-cni", "addonVersions": [item("v1.19.6-eksbuild.1", k1_33=True),
                                                     item("v1.20.4-eksbuild.2", k1_33=False)]}])
    assert versions.wanted(eks, "vpc-cni", "1.33") == "v1.19.6-eksbuild.1", "the default, not the newest"
    assert versions.wanted(eks, "vpc-cni", "1.34") == "v1.21.0-eksbuild.1"
    assert eks.asked[0] == {"addonName": "vpc-cni", "kubernetesVersion": "1.33"}


def test_without_a_default_the_highest_compatible_compared_as_numbers() -> None:
    eks = Paginated([{"addonName": "aws-ebs-csi-driver", "addonVersions": [
        item("v1.9.0-eksbuild.1", k1_33=False), item("v1.10.0-eksbuild.2", k1_33=False),
        item("v1.10.0-eksbuild.10", k1_33=False), item("v1.11.0-eksbuild.1", k1_34=False)]}])
    assert versions.wanted(eks, "aws-ebs-csi-driver", "1.33") == "v1.10.0-eksbuild.10"
    assert versions.version_key("v1.41.0-eksbuild.1") == (1, 41, 0, 1)


def test_no_version_for_the_kubernetes_version_names_the_field() -> None:
    eks = Paginated([{"addonName": "vpc-cni", "addonVersions": [item("v1.19.6-eksbuild.1", k1_33=True)]}])
    with pytest.raises(UserError) as err:
        versions.wanted(eks, "vpc-cni", "1.40")
    assert "EKS offers no version of the add-on vpc-cni for Kubernetes 1.40" in err.value.message
    assert "cluster.kubernetes_version" in err.value.hint


def test_the_action_carries_the_version_to_the_request() -> None:
    created = Action("create", "eks-addon", "vpc-cni", versions.version_change(None, "v2"))
    assert created.lines()[1] == "    version: (none) -> v2"
    assert versions.pinned(created) == {"addonVersion": "v2"}
    moved = Action("update", "eks-addon", "vpc-cni", versions.version_change({"addonVersion": "v1"}, "v2"))
    assert versions.pinned(moved) == {"addonVersion": "v2"}
    assert versions.version_change({"addonVersion": "v2"}, "v2") == {}
    settings_only = Action("update", "eks-addon", "vpc-cni", {"enableNetworkPolicy": ("false", "true")})
    assert versions.pinned(settings_only) == {}, "an update of settings only keeps the add-on's version"


def test_a_newer_installed_version_is_never_downgraded_and_the_plan_says_so() -> None:
    """Updated by hand, or EKS's default lagging: EKS does not downgrade an add-on, so no change is planned."""
    newer = {"addonVersion": "v1.20.1-eksbuild.1"}
    assert versions.version_change(newer, "v1.19.0-eksbuild.1") == {}
    assert versions.version_change({"addonVersion": "v1.10.0-eksbuild.1"}, "v1.9.0-eksbuild.3") == {}, \
        "compared as numbers, not as text"
    assert versions.version_change({"addonVersion": "v1.19.0-eksbuild.2"}, "v1.19.0-eksbuild.10") == {
        "version": ("v1.19.0-eksbuild.2", "v1.19.0-eksbuild.10")}
    assert versions.note("vpc-cni", newer, "v1.19.0-eksbuild.1", "1.33") == (
        "vpc-cni v1.20.1-eksbuild.1 is newer than EKS's default v1.19.0-eksbuild.1 for Kubernetes 1.33: left as it "
        "is (EKS does not downgrade an add-on)")
    assert versions.note("vpc-cni", {"addonVersion": "v1.19.0"}, "v1.19.0", "1.33") is None
    assert versions.note("vpc-cni", None, "v1.19.0", "1.33") is None, "a new add-on: the plan creates it"


def test_a_vpc_cni_move_past_a_minor_version_is_noted_and_planned_in_one_update() -> None:
    """AWS advises one minor at a time for the VPC CNI; qhubctl moves it in one update and says how to step."""
    skip = versions.note("vpc-cni", {"addonVersion": "v1.18.3-eksbuild.1"}, "v1.20.4-eksbuild.2", "1.33")
    assert skip is not None and "vpc-cni v1.18.3-eksbuild.1 -> v1.20.4-eksbuild.2 skips minor versions" in skip
    assert "describe-addon-versions --addon-name vpc-cni --kubernetes-version 1.33" in skip
    assert versions.version_change({"addonVersion": "v1.18.3-eksbuild.1"}, "v1.20.4-eksbuild.2") == {
        "version": ("v1.18.3-eksbuild.1", "v1.20.4-eksbuild.2")}
    assert versions.note("vpc-cni", {"addonVersion": "v1.19.6-eksbuild.1"}, "v1.20.4-eksbuild.2", "1.33") is None
    assert versions.note("aws-ebs-csi-driver", {"addonVersion": "v1.45.0"}, "v1.48.0", "1.33") is None, \
        "the advice is the VPC CNI's"


def test_a_plan_renders_its_notes_after_its_actions() -> None:
    note = "vpc-cni v1.20.1 is newer than EKS's default v1.19.0 for Kubernetes 1.33: left as it is"
    quiet = Plan("aws", "demo", notes=[note])
    assert not quiet.changed
    assert quiet.render().splitlines() == [
        "cluster demo (aws): no changes, the cloud matches the config", f"note: {note}"]
    busy = Plan("aws", "demo", [Action("update", "eks-addon", "aws-ebs-csi-driver", {"version": ("v1", "v2")})],
                [note])
    assert busy.render().splitlines()[-1] == f"note: {note}"
