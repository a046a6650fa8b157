"""The test suite's own layout: pytest imports test modules by basename (tests/ is on its path and the tier folders
are not packages), so two modules with one name in different tiers stop the whole run at collection."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_test_modules_outside_packages_have_unique_names() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: places for name, places in seen.items() if len(places) > 1}
    assert not clashes, f"rename one of each: {clashes}"
    assert len(seen) > 20, "the walk found the test modules"
