"""Fixtures for tests on the real node; a failing test leaves its namespace's pods, events and logs under
build/test-artifacts/node/ and prints where."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodekit import ARTIFACTS, Node
from qhubctl.localcluster import LocalCluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    if report.when == "call":
        item.stash.setdefault(_FAILED, report.failed)
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def node(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[Node]:
    """A namespace on the real node; on failure its pods, events, descriptions and logs are saved and printed."""
    n = Node(cluster)
    yield n
    if request.node.stash.get(_FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}.txt"
        path.write_text(n.report())
        print(f"\n[node] what the pods of {n.ns} did: {path}")
    cluster.kubectl("delete", "namespace", n.ns, "--wait=false")
