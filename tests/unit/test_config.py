"""Config model: data-driven fixtures tests/configs/<provider>.<ok|error>.<what>.yaml, env secrets, migrations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qhubctl import nodegroups as ng
from qhubctl.config import SCHEMA_VERSION, load_config, parse_config
from qhubctl.config.migrate import migrate, upgrade_file
from qhubctl.config.loader import load_raw
from qhubctl.deploy import check_immutable, immutable_paths
from qhubctl.errors import ConfigError, ImmutableFieldError

pytestmark = pytest.mark.unit
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OK = sorted(CONFIGS.glob("*.ok.*.yaml"))
ERRORS = sorted(CONFIGS.glob("*.error.*.yaml"))


def _expect(path: Path) -> str:
    match = re.match(r"# expect: (\S+)", path.read_text())
    assert match, f"{path.name} lacks its '# expect: <field.path>' header"
    return match.group(1)


def test_fixture_counts() -> None:
    assert len(ERRORS) >= 40
    providers = {p.name.split(".")[0] for p in OK}
    assert providers == {"aws", "gcp", "azure", "digitalocean", "existing", "local"}


@pytest.mark.parametrize("path", OK, ids=lambda p: p.name)
def test_ok_configs_validate(path: Path) -> None:
    cfg = load_config(path, environ={})
    assert cfg.cluster.provider == path.name.split(".")[0]
    assert {"general", "user", "worker"} <= set(cfg.node_groups)


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.name)
def test_error_configs_name_the_field(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    field = _expect(path)
    assert re.search(rf"(^|\s|-\s){re.escape(field)}[:\s]", text), f"{field!r} not in:\n{text}"
    assert "Traceback" not in text
    # every problem line carries a path and a message
    for line in info.value.problems:
        assert re.match(r"^[\w.\[\]/-]+(\.[\w\[\]-]+)*: \S", line) or line.startswith("(top level)"), line


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "aws.error.provider-typo.yaml", environ={})
    assert "allowed here:" in str(info.value) and "region" in str(info.value)


def test_secret_from_environment_and_never_dumped() -> None:
    raw = {"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": {"provider": "local"},
           "auth": {"type": "github", "client_id": "id", "allowed_organizations": ["org"]}}
    cfg = parse_config(raw, environ={"QHUB_SECRET__auth__client_secret": "s3cr3t-value"})
    assert cfg.secrets()[("auth", "client_secret")].get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in str(cfg.redacted())
    assert "s3cr3t-value" not in repr(cfg)


def test_env_override_sets_plain_fields() -> None:
    raw = {"schema_version": SCHEMA_VERSION, "project_name": "demo", "cluster": {"provider": "aws"}}
    cfg = parse_config(raw, environ={"QHUB_SECRET__cluster__region": "eu-west-1",
                                     "QHUB_SECRET__node_groups__user__max_nodes": "9"})
    assert cfg.cluster.region == "eu-west-1"
    assert cfg.node_groups["user"].max_nodes == 9


def test_secret_ref_is_kept_as_reference() -> None:
    cfg = load_config(CONFIGS / "aws.ok.full.yaml", environ={})
    assert cfg.auth.client_secret.secret_ref.name == "github-oauth"
    assert cfg.secrets() == {}


def test_node_group_defaults_follow_shared_definition() -> None:
    cfg = load_config(CONFIGS / "aws.ok.full.yaml", environ={})
    placements = cfg.placements()
    assert placements["general"].taints == ()
    assert [str(t) for t in placements["gpu"].taints] == [
        f"{ng.LABEL}=gpu:NoSchedule", "nvidia.com/gpu=present:NoSchedule"]
    assert placements["highmem"].node_selector == {ng.LABEL: "highmem"}
    assert placements["worker"].taints[-1].key == "workload"
    assert cfg.node_groups["general"].instance_type == "m6i.2xlarge"
    assert cfg.node_groups["highmem"].min_nodes == 0


def test_existing_cluster_groups_use_own_labels_without_qhub_taints() -> None:
    cfg = load_config(CONFIGS / "existing.ok.selectors.yaml", environ={})
    user = cfg.placements()["user"]
    assert user.node_selector == {"node-role": "users"}
    assert [t.key for t in user.taints] == ["dedicated"]
    assert cfg.placements()["worker"].node_selector == {ng.LABEL: "worker"}


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("schema_version: 2\nproject_name: [x\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+:\d+: not valid YAML"):
        load_config(bad, environ={})


def test_missing_file_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "qhubctl init" in info.value.hint


def test_immutable_paths_and_refusal() -> None:
    assert immutable_paths() == [("cluster", "provider"), ("project_name",), ("storage", "server_namespace"),
                                 ("storage", "type")]
    cfg = load_config(CONFIGS / "aws.ok.minimal.yaml", environ={})
    stored = cfg.redacted()
    check_immutable(stored, cfg)  # unchanged: fine
    stored["storage"]["type"] = "existing"
    stored["project_name"] = "other"
    with pytest.raises(ImmutableFieldError) as info:
        check_immutable(stored, cfg)
    assert "storage.type" in str(info.value) and "project_name" in str(info.value)
    assert info.value.exit_code == 1


V1 = """\
# my old QHub config
project_name: oldqhub
provider: aws
aws:
  region: eu-west-1  # closest to us
  kubernetes_version: "1.33"
node_groups:
  general: {instance: m5.xlarge, min_nodes: 1, max_nodes: 1}
  user: {instance: m5.large, min_nodes: 0, max_nodes: 4}
security:
  authentication:
    type: GitHub
    config: {client_id: abc, client_secret: leaked}
  users:
    ann: {uid: 1000, primary_group: ds, secondary_groups: []}
  groups:
    ds: {gid: 3000}
profiles:
  jupyterlab:
    - display_name: Small Instance
      default: true
      kubespawner_override: {cpu_limit: 2, cpu_guarantee: 1, mem_limit: 8G, mem_guarantee: 4G}
  dask_worker:
    Small Worker: {worker_cores: 1, worker_cores_limit: 2, worker_memory: 4G, worker_memory_limit: 8G, worker_threads: 2}
storage: {type: nfs, shared_filesystem: 200Gi}
certificate: {type: self-signed}
default_images: {jupyterlab: old/lab:1}
"""


def test_migrate_v1_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "qhub-config.yaml"
    path.write_text(V1)
    start, changes, backup = upgrade_file(path)
    assert start == 1 and backup is not None and backup.read_text() == V1
    text = path.read_text()
    assert "# my old QHub config" in text and "# closest to us" in text  # comments survive
    assert "leaked" not in text
    cfg = load_config(path, environ={})
    assert cfg.schema_version == SCHEMA_VERSION
    assert (cfg.cluster.provider, cfg.cluster.region) == ("aws", "eu-west-1")
    assert cfg.node_groups["user"].instance_type == "m5.large"
    assert cfg.auth.type == "github" and cfg.auth.client_secret.secret_ref.key == "client-secret"
    assert cfg.profiles.dask_worker[0].name == "small-worker"
    assert cfg.storage.size == "200Gi"
    assert any("security moved to auth" in c for c in changes)
    assert all(c.startswith("[1 -> 2]") for c in changes)
    assert upgrade_file(path)[2] is None  # a second upgrade changes nothing


def test_migrate_rejects_future_version(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"schema_version: {SCHEMA_VERSION + 1}\nproject_name: x\n")
    with pytest.raises(ConfigError, match="newer"):
        migrate(load_raw(path))
