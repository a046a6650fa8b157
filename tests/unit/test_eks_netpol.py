"""EKS's NetworkPolicy enforcement plan, pure: the vpc-cni add-on is created with its network policy agent on, an
add-on without the setting (or with it off, in JSON or YAML configuration values) is updated, one with it on is
left alone. The calls themselves run against the add-on fake in tests/providers/test_aws.py."""

from __future__ import annotations

import pytest

from qhubctl.providers import eks_netpol

pytestmark = pytest.mark.unit


def test_absent_add_on_is_created_with_the_agent_on() -> None:
    (action,) = eks_netpol.plan_actions(None)
    assert (action.op, action.kind, action.name) == ("create", "eks-addon", "vpc-cni")
    assert "enableNetworkPolicy=true" in action.detail


@pytest.mark.parametrize(("values", "have"), [
    ("", "false"),
    ('{"env": {"WARM_IP_TARGET": "2"}}', "false"),
    ('{"enableNetworkPolicy": "false"}', "false"),
    ("enableNetworkPolicy: 'false'\nenv: {}\n", "false"),
])
def test_agent_off_is_turned_on(values: str, have: str) -> None:
    (action,) = eks_netpol.plan_actions({"addonName": "vpc-cni", "status": "ACTIVE", "configurationValues": values})
    assert (action.op, dict(action.changes)) == ("update", {"enableNetworkPolicy": (have, "true")})


@pytest.mark.parametrize("values", ['{"enableNetworkPolicy": "true"}', "enableNetworkPolicy: 'true'\n"])
def test_agent_on_needs_nothing(values: str) -> None:
    assert eks_netpol.plan_actions({"addonName": "vpc-cni", "configurationValues": values}) == []
    assert eks_netpol.config_values({"configurationValues": values}) == {"enableNetworkPolicy": "true"}
