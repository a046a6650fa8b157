"""`make test`: every tier, in two pytest sessions side by side.

The tiers that use the local test cluster (cluster, node) run one after another in one session, as they share the
cluster and its single real node. Most of that session's time is spent waiting: for pods to start on the node, for
idle timeouts, for controllers. The other tiers (unit, chart, images, cloud) need no cluster and mostly compute,
so they run in a second session at the same time under `nice`, taking the CPU the cluster session leaves idle.

The cluster session's output streams live; the other session's is written to a log and printed whole when both are
done, so neither interleaves with the other. Arguments are passed on to both sessions (e.g. `-k upgrade`); a
session that the arguments leave without tests counts as passed. The exit code is the worse of the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CLUSTER_TIERS = "cluster or node"
OTHER_TIERS = "unit or chart or images or cloud"
NO_TESTS = 5  # pytest's exit code when the selection is empty
NICENESS = 10
# Set in the session of the tiers that must not touch the shared cluster; tests/conftest.py's `cluster` fixture
# refuses to start there (a test that needs the cluster is marked cluster or node).
NO_CLUSTER_ENV = "QHUB_TEST_NO_CLUSTER"


def _session(marks: str, args: list[str], basetemp: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", marks, f"--basetemp={basetemp}", *args]


def _passed(code: int) -> bool:
    return code in (0, NO_TESTS)


def main(args: list[str]) -> int:
    start = time.monotonic()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"qhub-tests-{os.getuid()}"
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "other-tiers.log"
    other_env = {**os.environ, NO_CLUSTER_ENV: "1"}
    print(f"[test] tiers {OTHER_TIERS!r} run alongside, niced; their output: {log_path} (printed at the end)",
          flush=True)
    with open(log_path, "wb") as log:
        other = subprocess.Popen(  # noqa: S603 - our own interpreter and pytest
            ["nice", "-n", str(NICENESS), *_session(OTHER_TIERS, args, work / "other")],
            stdout=log, stderr=subprocess.STDOUT, env=other_env)
        try:
            cluster_code = subprocess.call(_session(CLUSTER_TIERS, args, work / "cluster"))  # noqa: S603
            cluster_seconds = time.monotonic() - start
            other_code = other.wait()
        except KeyboardInterrupt:
            other.terminate()
            other.wait()
            raise
    print(f"\n[test] ===== tiers {OTHER_TIERS}: {log_path} =====", flush=True)
    sys.stdout.write(log_path.read_text(errors="replace"))
    print(f"[test] tiers {CLUSTER_TIERS}: exit {cluster_code} after {cluster_seconds:.0f}s; "
          f"tiers {OTHER_TIERS}: exit {other_code}; both done after {time.monotonic() - start:.0f}s", flush=True)
    if cluster_code == NO_TESTS and other_code == NO_TESTS:
        print("[test] no test matched the arguments", flush=True)
        return NO_TESTS
    failed = [code for code in (cluster_code, other_code) if not _passed(code)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
