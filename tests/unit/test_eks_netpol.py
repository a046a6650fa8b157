"""EKS's NetworkPolicy enforcement plan, pure: the vpc-cni add-on is created with its network policy agent on at the
wanted version, an add-on without the setting (or with it off, in JSON or YAML configuration values) or at another
version is updated (never to an older version: one newer than the wanted one keeps its version), one with it on at
the wanted version is left alone. The calls themselves run against the
add-on fake in tests/providers/test_aws.py."""

from __future__ import annotations

import pytest

from qhubctl.providers import eks_netpol

pytestmark = pytest.mark.unit
WANT = "v1.20.4-eksbuild.2"


def test_absent_add_on_is_created_with_the_agent_on() -> None:
    (action,) = eks_netpol.plan_actions(None, WANT)
    assert (action.op, action.kind, action.name) == ("create", "eks-addon", "vpc-cni")
    assert "enableNetworkPolicy=true" in action.detail
    assert dict(action.changes) == {"version": (None, WANT)}, "the plan shows the version it creates"


@pytest.mark.parametrize(("values", "have"), [
    ("", "false"),
    ('{"env": {"WARM_IP_TARGET": "2"}}', "false"),
    ('{"enableNetworkPolicy": "false"}', "false"),
    ("enableNetworkPolicy: 'false'\nenv: {}\n", "false"),
])
def test_agent_off_is_turned_on(values: str, have: str) -> None:
    addon = {"addonName": "vpc-cni", "status": "ACTIVE", "configurationValues": values, "addonVersion": WANT}
    (action,) = eks_netpol.plan_actions(addon, WANT)
    assert (action.op, dict(action.changes)) == ("update", {"enableNetworkPolicy": (have, "true")})


@pytest.mark.parametrize("values", ['{"enableNetworkPolicy": "true"}', "enableNetworkPolicy: 'true'\n"])
def test_agent_on_needs_nothing(values: str) -> None:
    addon = {"addonName": "vpc-cni", "configurationValues": values, "addonVersion": WANT}
    assert eks_netpol.plan_actions(addon, WANT) == []
    assert eks_netpol.config_values({"configurationValues": values}) == {"enableNetworkPolicy": "true"}


def test_another_version_is_moved_to_the_wanted_one() -> None:
    addon = {"addonName": "vpc-cni", "configurationValues": '{"enableNetworkPolicy": "true"}',
             "addonVersion": "v1.19.6-eksbuild.1"}
    (action,) = eks_netpol.plan_actions(addon, WANT)
    assert (action.op, dict(action.changes)) == ("update", {"version": ("v1.19.6-eksbuild.1", WANT)})
    assert action.lines() == ["~ eks-addon vpc-cni", f"    version: v1.19.6-eksbuild.1 -> {WANT}"]


def test_a_newer_version_is_kept_when_the_agent_is_turned_back_on() -> None:
    addon = {"addonName": "vpc-cni", "configurationValues": "", "addonVersion": "v1.21.0-eksbuild.1"}
    (action,) = eks_netpol.plan_actions(addon, WANT)
    assert dict(action.changes) == {"enableNetworkPolicy": ("false", "true")}, "no version: UpdateAddon keeps it"
    assert eks_netpol.plan_actions({**addon, "configurationValues": '{"enableNetworkPolicy": "true"}'}, WANT) == []
