"""qhubctl cost: the baseline from the dated price table, overrides, and a simulated load on the local cluster."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qhubctl import localcluster
from qhubctl.cli import app
from qhubctl.config import load_config
from qhubctl.cost import load_prices, pricing
from qhubctl.cost.shapes import allocatable
from qhubctl.cost.simulate import Load, Result, Usage, load_pods, parse_load
from qhubctl.errors import UserError
from qhubctl.providers.local import local_groups


def write(path: Path, provider: dict, groups: dict) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 2, "project_name": "costdemo", "cluster": provider,
                                    "node_groups": groups}))
    return path


@pytest.mark.unit
def test_baseline_is_control_plane_plus_min_nodes(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", {"provider": "aws", "region": "us-east-1"}, {
        "general": {"instance_type": "m6i.2xlarge", "min_nodes": 2, "max_nodes": 3},
        "worker": {"min_nodes": 1, "spot": True}}))
    table = load_prices()
    assert table["as_of"] and table["clouds"]["aws"]["source"]
    price = pricing(cfg, table)
    aws = table["clouds"]["aws"]
    expected = 730 * (aws["control_plane"] + 2 * aws["instances"]["m6i.2xlarge"]
                      + 1 * aws["instances"]["m6i.xlarge"] * aws["spot_factor"])
    assert price.baseline_monthly() == pytest.approx(expected)
    assert price.groups["user"].monthly_min == 0


@pytest.mark.unit
def test_the_built_in_table_has_the_shape_price_files_are_checked_against() -> None:
    from importlib import resources

    from qhubctl.cost import PriceFile

    PriceFile.model_validate(yaml.safe_load(resources.files("qhubctl").joinpath("data/prices.yaml").read_text()))


@pytest.mark.unit
def test_a_misspelt_or_bad_price_file_is_refused_naming_each_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", {"provider": "aws", "region": "us-east-1"}, {"general": {}})
    bad = tmp_path / "prices.yaml"
    bad.write_text(yaml.safe_dump({"hours_per_mont": 700,
                                   "clouds": {"aws": {"instancs": {"m6i.large": 0.1}, "spot_factor": 3,
                                                      "accelerators": {"t4": -1}}}}))
    with pytest.raises(UserError) as err:
        load_prices(bad)
    text = str(err.value)
    assert "hours_per_mont: unknown key (known: as_of, hours_per_month, clouds)" in text
    assert "clouds.aws.instancs: unknown key" in text and "instances" in text
    assert "clouds.aws.spot_factor" in text and "clouds.aws.accelerators" in text
    result = CliRunner().invoke(app, ["cost", "-c", str(cfg), "--prices", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output and "instancs" in result.output
    bad.write_text("clouds: [aws]\n")
    with pytest.raises(UserError, match="clouds"):
        load_prices(bad)
    bad.write_text("clouds: {aws: {instances: {a: 1}\n")
    with pytest.raises(UserError, match="cannot read the price file"):
        load_prices(bad)


@pytest.mark.unit
def test_override_file_and_unknown_type(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", {"provider": "gcp", "project": "my-project-1"}, {
        "general": {"instance_type": "c3-standard-4"}}))
    with pytest.raises(UserError, match="general: c3-standard-4"):
        pricing(cfg, load_prices())
    extra = tmp_path / "prices.yaml"
    extra.write_text(yaml.safe_dump({"clouds": {"gcp": {"instances": {"c3-standard-4": 0.25}, "control_plane": 0}}}))
    price = pricing(cfg, load_prices(extra))
    assert price.groups["general"].hourly == 0.25 and price.control_plane_hourly == 0
    result = CliRunner().invoke(app, ["cost", "-c", str(tmp_path / "c.yaml"), "--prices", str(extra)])
    assert result.exit_code == 0, result.output
    assert f"overridden by {extra}" in result.output
    assert "monthly baseline (730 h): $182.50" in result.output  # 1 general node x 0.25 x 730


@pytest.mark.unit
def test_gpu_accelerator_price_and_other_cloud(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", {"provider": "gcp", "project": "my-project-1"}, {
        "gpu": {"gpu": {"type": "nvidia-tesla-t4", "count": 2}, "min_nodes": 1}}))
    gcp = load_prices()["clouds"]["gcp"]
    price = pricing(cfg, load_prices())
    assert price.groups["gpu"].hourly == pytest.approx(gcp["instances"]["n1-standard-8"]
                                                      + 2 * gcp["accelerators"]["nvidia-tesla-t4"])
    local = load_config(write(tmp_path / "l.yaml", {"provider": "local"}, {}))
    as_aws = pricing(local, load_prices(), "aws")
    assert as_aws.groups["general"].instance_type == "m6i.xlarge"
    assert pricing(local, load_prices()).baseline_monthly() == 0


@pytest.mark.unit
def test_parse_load_and_pods(tmp_path: Path) -> None:
    assert parse_load("users=3,dask-workers=5,hours=1.5") == Load(3, 5, 1.5)
    for bad in ("users=x", "cpus=3", "hours=0", "users=1.5"):
        with pytest.raises(UserError):
            parse_load(bad)
    cfg = load_config(write(tmp_path / "c.yaml", {"provider": "local"}, {}))
    pods = load_pods(cfg, Load(2, 1, 1))
    assert [p["metadata"]["name"] for p in pods] == ["jupyter-0", "jupyter-1", "dask-worker-0"]
    assert pods[0]["spec"]["nodeSelector"] == {"qhub.dev/node-group": "user"}
    assert pods[2]["spec"]["tolerations"] == [{"key": "qhub.dev/node-group", "operator": "Equal", "value": "worker",
                                               "effect": "NoSchedule"}]


@pytest.mark.unit
def test_allocatable_is_capacity_minus_the_system_reservation() -> None:
    # 4 vCPU: 60 + 10 + 2 x 5 millicores reserved; 16 GiB: 1 GiB + 0.8 GiB + 0.8 GiB, and 100 MiB for eviction
    assert allocatable(4, 16) == (3920, math.floor(1024 * (16 - 1 - 0.8 - 0.8)) - 100)
    cpu_m, memory_mib = allocatable(16, 128)
    assert cpu_m == 16000 - 60 - 10 - 10 - 30 and memory_mib == math.floor(1024 * (128 - 1 - 0.8 - 0.8 - 6.72)) - 100


@pytest.mark.unit
def test_every_priced_instance_type_has_a_shape() -> None:
    for cloud, entry in load_prices()["clouds"].items():
        assert set(entry.get("instances") or {}) == set(entry.get("shapes") or {}), cloud


@pytest.mark.unit
def test_simulation_uses_the_configured_instance_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated nodes of each group are its instance type's allocatable, not a fixed local shape; the report
    says what it assumes."""
    config = write(tmp_path / "c.yaml", {"provider": "aws", "region": "us-east-1"}, {
        "user": {"instance_type": "r6i.2xlarge"}, "worker": {"instance_type": "m6i.large", "max_nodes": 3}})
    seen: dict[str, object] = {}

    def fake_simulate(cfg, load, *, shapes, **_kwargs):  # noqa: ANN001, ANN202
        seen["groups"] = {g.name: (g.cpu, g.memory) for g in local_groups(cfg, {n: (s.cpu, s.memory)
                                                                                 for n, s in shapes.items()})}
        return Result(load, 10, load.hours, {n: Usage(n, 0) for n in cfg.node_groups}, 0)

    monkeypatch.setattr("qhubctl.commands.cost.simulate", fake_simulate)
    res = CliRunner().invoke(app, ["cost", "-c", str(config), "--simulate", "users=1"])
    assert res.exit_code == 0, res.output
    user, worker = allocatable(8, 64), allocatable(2, 8)
    assert seen["groups"]["user"] == (f"{user[0]}m", f"{user[1]}Mi")
    assert seen["groups"]["worker"] == (f"{worker[0]}m", f"{worker[1]}Mi")
    assert seen["groups"]["general"] == ("3920m", f"{allocatable(4, 16)[1]}Mi")  # the default m6i.xlarge
    assert "minus the kubelet's system reservation" in res.output
    assert re.search(r"user\s+r6i\.2xlarge, 7\.91 CPU / 5\d\.\d GiB allocatable", res.output), res.output

    local = write(tmp_path / "l.yaml", {"provider": "local"}, {})
    res = CliRunner().invoke(app, ["cost", "-c", str(local), "--simulate", "users=1"])
    assert res.exit_code == 0 and re.search(r"user\s+local standard shape, 4 CPU / 32\.0 GiB", res.output), res.output


@pytest.mark.unit
def test_an_instance_type_without_a_shape_is_named(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", {"provider": "aws", "region": "us-east-1"},
                   {"worker": {"instance_type": "c7i.48xlarge"}})
    prices = tmp_path / "p.yaml"
    prices.write_text(yaml.safe_dump({"clouds": {"aws": {"instances": {"c7i.48xlarge": 8.5}}}}))
    res = CliRunner().invoke(app, ["cost", "-c", str(config), "--prices", str(prices), "--simulate", "users=1"])
    assert res.exit_code == 1 and "worker: c7i.48xlarge" in res.output and "clouds.aws.shapes" in res.output, \
        res.output
    prices.write_text(yaml.safe_dump({"clouds": {"aws": {"shapes": {"c7i.48xlarge": {"cpus": 192}}}}}))
    with pytest.raises(UserError, match=r"clouds\.aws\.shapes\.c7i\.48xlarge\.cpus: unknown key \(known: cpu, "
                                        r"memory_gib\)"):
        load_prices(prices)


@pytest.mark.cluster
def test_simulate_scales_worker_up_and_down(tmp_path: Path) -> None:
    """A small Dask load on the simulated cluster: only the worker group scales, and returns to zero."""
    config = write(tmp_path / "c.yaml", {"provider": "aws", "region": "us-east-1"}, {"worker": {"max_nodes": 3}})
    # 2 simulated hours of 10 s each (the default): on a loaded machine, 5 s ones ended before the simulated
    # autoscaler had added a node
    result = CliRunner().invoke(app, ["cost", "-c", str(config), "--simulate", "users=0,dask-workers=6,hours=2",
                                      "--seconds-per-hour", "10"])
    assert result.exit_code == 0, result.output
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), int(m.group(4)), float(m.group(5)))
            for m in re.finditer(r"^\s+(\w+)\s+([\d.]+)\s+([\d.]+)\s+(\d+) \$\s*([\d.,]+)$", result.output, re.M)}
    assert set(rows) == {"general", "user", "worker"}, result.output
    window = float(re.search(r"= ([\d.]+) simulated hours", result.output).group(1))
    worker_hours, worker_above, worker_peak, worker_cost = rows["worker"]
    assert worker_peak >= 2, "6 workers of 1 core/4Gi need two 4-CPU nodes"
    # the nodes' up time lags the load by the (simulated) autoscaler's reaction, longer on a busy machine
    assert 0 < worker_hours <= worker_peak * window and worker_above == worker_hours and worker_cost > 0
    assert rows["user"] == (0.0, 0.0, 0, 0.0)
    assert rows["general"][1] == 0 and rows["general"][0] == pytest.approx(window, rel=0.1)
    assert "1 h = 10 s" in result.output
    assert not localcluster.cluster_dir("qhub-costdemo-sim").exists(), "the simulation's folder is left behind"
