"""Provider-neutral planning: desired groups from the config, the diff against observed groups, how a plan prints,
and the pure helpers of the AWS and existing providers."""

from __future__ import annotations

import importlib
from pathlib import Path

import botocore.exceptions
import pytest
import yaml

from qhubctl import nodegroups as ng
from qhubctl.config import load_config
from qhubctl.errors import UserError
from qhubctl.providers import REGISTRY, aws, existing, get
from qhubctl.providers.base import Action, GroupSpec, Plan, desired_groups, diff_groups

pytestmark = pytest.mark.unit


def cfg(tmp_path: Path, provider: dict, groups: dict | None = None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "demo", "cluster": provider,
                                    "node_groups": groups or {}}))
    return load_config(path)


def test_desired_groups_use_the_shared_definition(tmp_path: Path) -> None:
    groups = {g.name: g for g in desired_groups(cfg(tmp_path, {"provider": "aws"}, {
        "worker": {"taints": [{"key": "workload", "value": "dask"}], "labels": {"team": "a"}},
        "gpu": {"gpu": {"count": 2}}}))}
    assert list(groups) == ["general", "user", "worker", "gpu"]
    assert groups["general"].taints == frozenset() and groups["general"].min_nodes == 1
    assert groups["worker"].labels == {"team": "a", ng.LABEL: "worker"}
    assert groups["worker"].taints == {ng.Taint(ng.LABEL, "worker"), ng.Taint("workload", "dask")}
    assert ng.Taint(ng.GPU_TAINT_KEY, ng.GPU_TAINT_VALUE) in groups["gpu"].taints and groups["gpu"].gpu_count == 2


def test_diff_creates_updates_replaces_deletes() -> None:
    want = [GroupSpec("a", "m", 0, 3), GroupSpec("b", "m", 0, 3), GroupSpec("c", "m", 1, 2)]
    have = {"b": GroupSpec("b", "m", 0, 5), "c": GroupSpec("c", "big", 1, 2), "old": GroupSpec("old", "m", 0, 1)}
    actions = diff_groups(want, have)
    assert [(a.op, a.name) for a in actions] == [("create", "a"), ("update", "b"), ("replace", "c"), ("delete", "old")]
    assert actions[1].changes == {"max_nodes": (5, 3)}
    assert diff_groups(want, {g.name: g for g in want}) == []


def test_plan_prints_like_a_diff() -> None:
    plan = Plan("aws", "demo", [Action("create", "vpc", "demo", detail="10.10.0.0/16"),
                                Action("update", "nodegroup", "worker", {"max_nodes": (5, 8)}),
                                Action("delete", "nodegroup", "old")])
    assert plan.render().splitlines() == ["cluster demo (aws): 3 change(s)", "+ vpc demo (10.10.0.0/16)",
                                          "~ nodegroup worker", "    max_nodes: 5 -> 8", "- nodegroup old"]
    assert "no changes" in Plan("aws", "demo").render() and not Plan("aws", "demo").changed


def test_registry_names_every_provider(tmp_path: Path) -> None:
    assert set(REGISTRY) == {"aws", "gcp", "azure", "digitalocean", "existing", "local"}
    assert type(get(cfg(tmp_path, {"provider": "local"}))).__name__ == "Local"


def test_every_provider_is_described_by_its_config_block(tmp_path: Path) -> None:
    """Each provider's config block names an implementation that exists and carries the same name, and the
    config `qhubctl init` writes for it validates and selects that block."""
    from qhubctl.config.loader import parse_config
    from qhubctl.scaffold import config_text
    from ruamel.yaml import YAML

    for name, block in REGISTRY.items():
        module, cls = block.implementation.split(":")
        assert getattr(importlib.import_module(module), cls).name == name
        assert block.provider_name() == name and block.network_policy_enforcer and block.network_policy_turn_on
        parsed = parse_config(YAML().load(config_text(name, gcp_project="my-gcp-project")), environ={})
        assert type(parsed.cluster) is block


def test_aws_helpers(tmp_path: Path) -> None:
    layout = aws.subnet_layout("10.10.0.0/16", ["us-east-1a", "us-east-1b"])
    assert layout == {"public-us-east-1a": ("us-east-1a", "10.10.0.0/20"),
                      "private-us-east-1a": ("us-east-1a", "10.10.128.0/20"),
                      "public-us-east-1b": ("us-east-1b", "10.10.16.0/20"),
                      "private-us-east-1b": ("us-east-1b", "10.10.144.0/20")}
    assert aws.ami_type(GroupSpec("x", "m7g.large", 0, 1)) == "AL2023_ARM_64_STANDARD"
    assert aws.ami_type(GroupSpec("x", "m6i.large", 0, 1)) == "AL2023_x86_64_STANDARD"
    assert aws.ami_type(GroupSpec("x", "g5.xlarge", 0, 1, gpu_count=1)) == "AL2023_x86_64_NVIDIA"
    with pytest.raises(UserError, match="too small"):
        aws.subnet_layout("10.0.0.0/28", ["a", "b", "c"])


@pytest.mark.parametrize(("code", "message", "expected"), [
    ("ExpiredToken", "The security token included in the request is expired", "AWS rejected the credentials"),
    ("UnauthorizedOperation", "You are not authorized to perform: ec2:CreateVpc", "grant the identity `ec2:CreateVpc`"),
    ("AddressLimitExceeded", "The maximum number of addresses has been reached.", "AWS quota reached in CreateVpc"),
    ("ResourceLimitExceededException", "Cluster limit exceeded", "request a quota increase"),
])
def test_aws_errors_are_explained(code: str, message: str, expected: str) -> None:
    exc = botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "CreateVpc")
    err = aws.explain(exc)
    assert isinstance(err, UserError) and expected in str(err)
    assert "no AWS credentials" in str(aws.explain(botocore.exceptions.NoCredentialsError()))


def test_existing_reports_missing_labels() -> None:
    places = {"general": ng.placement("general", node_selector={"pool": "core"}),
              "worker": ng.placement("worker", node_selector={"pool": "dask"})}
    nodes = [{"pool": "core", "kubernetes.io/os": "linux"}, {"pool": "other"}]
    problems, notes = existing.missing_labels(places, {"general": 1, "worker": 0}, nodes)
    assert problems == []
    assert notes == ["node group worker: no node has the labels pool=dask (pool is set on some nodes, to core, other, "
                     "not dask) - fine if the group is scaled to zero now"]
    problems, _ = existing.missing_labels(places, {"general": 1, "worker": 2}, [{"x": "y"}])
    assert problems == ["node group general: no node has the labels pool=core (no node has the label key pool)",
                        "node group worker: no node has the labels pool=dask (no node has the label key pool)"]
