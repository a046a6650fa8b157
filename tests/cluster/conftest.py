"""Fixtures shared by the cluster tier's modules."""

from __future__ import annotations

from pathlib import Path

import pytest

import distkit


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) of qhubctl built from this checkout, once per session (distkit.build)."""
    return distkit.build(tmp_path_factory.mktemp("build"))
