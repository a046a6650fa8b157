"""Shared pytest fixtures. The `cluster` fixture gives every cluster-tier test the same local control plane."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qhubctl import localcluster

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "qhub"


TIERS = ("unit", "chart", "cluster", "node", "images", "cloud")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `-m <tier>` selections together cover the whole suite."""
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError("tests without a tier marker (" + ", ".join(TIERS) + "): " + ", ".join(untiered))
    # a test that stops and restarts the shared cluster runs after every other test
    items.sort(key=lambda item: item.get_closest_marker("restarts_cluster") is not None)


# Measured figures tests print (lines starting with one of these), repeated in the session's summary so that a run
# without -s shows them too.
FIGURE_PREFIXES = ("[node]", "[backup]", "[restore]", "[schedule]", "[bench]")
_figures: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _figures.extend(line for line in report.capstdout.splitlines() if line.lstrip().startswith(FIGURE_PREFIXES))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _figures:
        terminalreporter.section("figures measured by the tests")
        for line in _figures:
            terminalreporter.write_line(line.strip())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART


@pytest.fixture(scope="session")
def tool_env() -> dict[str, str]:
    """Environment with the pinned tools ($QHUB_CACHE/bin) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{localcluster.bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def cluster() -> Iterator[localcluster.LocalCluster]:
    """The local test cluster (real kube-apiserver, etcd, controller-manager, scheduler; one real node running
    containers; simulated node groups).

    Started once per session, or reused when already running. Under CI (CI set) it is deleted at the end of the
    session, unless QHUB_TEST_KEEP_CLUSTER is set (scripts/run_tests.py: a later session still needs it); on a
    workstation it is kept for the next run (`make cluster-down` deletes it). A missing tool is a test failure,
    never a skip: every tool is built by `make tools`.
    """
    if os.environ.get("QHUB_TEST_NO_CLUSTER"):  # scripts/run_tests.py: the session of the tiers without a cluster
        pytest.fail("this test uses the local test cluster but is not marked `cluster` or `node`: `make test` runs "
                    "the other tiers in a session of their own, without the cluster", pytrace=False)
    name = os.environ.get("QHUB_TEST_CLUSTER", "qhub-test")
    lock_path = localcluster.cluster_dir(name).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions share one cluster and start it once
        try:
            started = localcluster.up(name)
        except localcluster.QHubError as err:
            pytest.fail(f"the local test cluster could not start: {err}", pytrace=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    os.environ["KUBECONFIG"] = str(started.kubeconfig)
    yield started
    if os.environ.get("CI") and not os.environ.get("QHUB_TEST_KEEP_CLUSTER"):  # run_tests.py: a later session's
        localcluster.down(name)
