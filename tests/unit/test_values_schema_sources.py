"""Each chart's values.schema.json and README.md are generated (scripts/gen_values_schema.py, `make schema`) from
its values.schema.yaml and the comments of its values.yaml: the committed files are what the generator writes,
both sources name the same keys, and the defaults satisfy the schema."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_values_schema", REPO / "scripts" / "gen_values_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = load_generator()
CHARTS = gen.charts()


def test_every_chart_has_its_sources() -> None:
    assert {c.name for c in CHARTS} == {"qhub", "jupyterhub", "dask-gateway", "conda-store", "kubessh", "jitsi", "nfs",
                                         "qhub-cluster-addons"}
    assert all((c / "values.schema.yaml").exists() and (c / "values.yaml").exists() for c in CHARTS)


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_generated_files_are_up_to_date(chart: Path) -> None:
    files, _ = gen.generate(chart)
    stale = [p.relative_to(REPO).as_posix() for p, text in files.items() if not p.exists() or p.read_text() != text]
    assert not stale, f"run `make schema` and commit: {stale}"


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_values_and_schema_name_the_same_keys(chart: Path) -> None:
    _, problems = gen.generate(chart)
    assert not problems


def leaf_paths(node: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in leaf_paths(value, (*path, key))]
    return [path]


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_defaults_satisfy_the_schema_and_every_value_is_described(chart: Path) -> None:
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text) or {}
    schema = json.loads((chart / "values.schema.json").read_text())
    jsonschema.validate(values, schema)
    assert schema["additionalProperties"] is False
    notes = gen.comments(text)
    undescribed = [".".join(p) for p in leaf_paths(values) if not any(p[:i] in notes for i in range(1, len(p) + 1))]
    assert not undescribed, f"comment these values (or a key enclosing them) in values.yaml: {undescribed}"
    top = [k for k in schema["properties"] if k in values and not schema["properties"][k].get("description")]
    assert not top, f"comment these top-level keys in values.yaml: {top}"


def test_coverage_finds_a_key_missing_on_either_side() -> None:
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "kept": {"type": "string"}, "only-in-schema": {"type": "string"},
        "old": {"x-optional": "renamed"},
        "named": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": False,
                                                             "properties": {"size": {"type": "integer"}}}}}}
    values = {"kept": "", "only-in-values": 1, "named": {"a": {"size": 1, "colour": "red"}}}
    found = gen.coverage(schema, values)
    assert found.not_in_schema == ["only-in-values", "named.a.colour"]
    assert found.not_in_values == ["only-in-schema"]


def test_comments_become_descriptions() -> None:
    text = "# top\na:\n  # about b\n  # continued\n  b: 1\n\n  # c's\n\n  c: [x]\n  d:\n    - e: 1\n      # not a key of d\n      f: 2\n"
    assert gen.comments(text) == {("a",): "top", ("a", "b"): "about b continued"}
    schema = gen.describe({"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "integer"}, "c": {"type": "array"}}}}}, gen.comments(text), yaml.safe_load(text))
    assert schema["properties"]["a"]["description"] == "top"
    assert schema["properties"]["a"]["properties"]["b"]["description"] == "about b continued"
    assert "description" not in schema["properties"]["a"]["properties"]["c"], "a blank line ends a comment block"
