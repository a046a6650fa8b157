"""Docs that state a fact the code also holds say what the code does (issue 15, item 16): the test tiers (pytest
markers, tests/conftest.py, the Makefile's targets and comments, README, CONTRIBUTING), the number of images in
docs/images.md, and the dummy login's generated passwords in the config reference and the chart."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from qhubctl.config.auth import DummyAuth

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
# the tiers as tests/conftest.py enforces them (read, not imported: other test folders have a conftest.py too)
TIERS: tuple[str, ...] = next(
    ast.literal_eval(node.value) for node in ast.parse((REPO / "tests" / "conftest.py").read_text()).body
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TIERS" for t in node.targets))
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
           "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15}


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_tier_is_a_marker_a_make_target_and_in_the_readme() -> None:
    markers = {m.split(":", 1)[0] for m in
               tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    assert set(TIERS) <= markers, f"register every tier as a marker in pyproject.toml: {set(TIERS) - markers}"
    makefile = (REPO / "Makefile").read_text()
    targets = dict(re.findall(r"^test-(\w+):.*\n\t@\$\(PY\) -m pytest -m (\w+) ", makefile, re.M))
    assert targets == {t: t for t in TIERS}, "one `make test-<tier>` per tier, running `pytest -m <tier>`"
    listed = ", ".join(TIERS)
    assert f"make test   install everything and run every test ({listed})" in makefile
    assert f"test: setup  ## every tier: {listed}" in makefile
    section = _readme_section("Tests")
    assert re.findall(r"^- \*\*(\w+)\*\* \(`-m (\w+)`\)", section, re.M) == [(t, t) for t in TIERS], \
        "README's Tests section: one `- **<tier>** (`-m <tier>`)` entry per tier, in TIERS order"
    named = re.findall(r"`make (test-\w+)`", " ".join(section.split()))
    assert named == [f"test-{t}" for t in TIERS], "README names every `make test-<tier>`"
    readme = (REPO / "README.md").read_text()
    assert f"make test   # installs everything and runs every test ({listed})" in readme
    assert f"pytest: {', '.join(TIERS[:-1])} and {TIERS[-1]} tiers" in readme
    contributing = (REPO / "CONTRIBUTING.md").read_text()
    assert "tiers marked " + ", ".join(f"`{t}`" for t in TIERS) in contributing


def test_images_doc_counts_what_it_lists() -> None:
    """A count of images in words or digits, if the page gives one, is the number of rows of its image table."""
    text = (REPO / "docs" / "images.md").read_text()
    table = text.split("These are the names the chart's values expect:", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `qhub/")]
    assert len(rows) >= 10, table
    for word in re.findall(r"\b(\w+) (?:platform |default )?images\b", text, re.I):
        count = NUMBERS.get(word.lower(), int(word) if word.isdigit() else None)
        assert count is None or count == len(rows), f"docs/images.md says {word} images and lists {len(rows)}"


def test_dummy_login_text_names_the_generated_keys_the_chart_has() -> None:
    doc = DummyAuth.__doc__ or ""
    secret = (REPO / "charts/qhub/charts/jupyterhub/templates/hub/secret.yaml").read_text()
    keys = re.findall(r"`(dummy-[a-z-]+)`", doc)
    assert keys == ["dummy-password", "dummy-admin-password"] and "generated" in doc, doc
    for key in keys:
        assert f'"key" "{key}"' in secret, f"the hub Secret has no generated {key}"
    reference = " ".join((REPO / "docs" / "config-reference.md").read_text().split())
    assert " ".join(doc.split()) in reference, "run: python scripts/gen_config_reference.py"
