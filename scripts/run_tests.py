"""`make test`: every tier, in pytest sessions side by side.

Most of the node tier's time is waiting: for containers to start on the real node, for idle timeouts, for
controllers. The cluster tier mostly waits on the API server, and the other tiers (unit, chart, images, cloud) need
no cluster and mostly compute. So four sessions run at once:

- `node`: the node tier but its longest journeys (its output streams live), on the shared local cluster;
- `journeys`: those journeys (marked `long_journey`: about half the node tier's time), on the same cluster and
  node, each in namespaces of its own;
- `cluster`: the cluster tier, on the same cluster (every test there uses namespaces of its own);
- `other`: unit, chart, images and cloud, under `nice`, without the cluster;

then, once the first two are done, the tests that stop and restart the shared cluster (`restarts_cluster`), alone.
The cluster is started by whichever session needs it first (tests/conftest.py's `cluster` fixture, under a lock)
and, under CI, deleted only by the last session. The other sessions' output is written to logs and printed whole
at the end, so nothing interleaves. Arguments are passed on to every session (e.g. `-k upgrade`); a session that
the arguments leave without tests counts as passed. The exit code is the first failing session's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

NO_TESTS = 5  # pytest's exit code when the selection is empty
NICENESS = 10
# tests/conftest.py reads these: the `cluster` fixture refuses to start in a session with NO_CLUSTER (a test that
# needs the cluster is marked cluster or node), and leaves the cluster running under CI with KEEP_CLUSTER.
NO_CLUSTER_ENV = "QHUB_TEST_NO_CLUSTER"
KEEP_CLUSTER_ENV = "QHUB_TEST_KEEP_CLUSTER"


@dataclass(frozen=True)
class Session:
    name: str
    marks: str
    env: dict[str, str]
    live: bool = False  # output to the terminal as it comes, else to a log printed at the end
    nice: bool = False


BESIDE = (
    Session("node", "node and not restarts_cluster and not long_journey", {KEEP_CLUSTER_ENV: "1"}, live=True),
    Session("journeys", "long_journey and not restarts_cluster", {KEEP_CLUSTER_ENV: "1"}),
    Session("cluster", "cluster and not restarts_cluster", {KEEP_CLUSTER_ENV: "1"}),
    Session("other", "unit or chart or images or cloud", {NO_CLUSTER_ENV: "1"}, nice=True),
)
LAST = Session("restarts", "restarts_cluster", {}, live=True)


def _passed(code: int) -> bool:
    return code in (0, NO_TESTS)


class _Running:
    def __init__(self, session: Session, args: list[str], work: Path) -> None:
        self.session = session
        self.log_path = work / f"{session.name}.log"
        self.log: IO[bytes] | None = None if session.live else open(self.log_path, "wb")  # noqa: SIM115
        argv = [sys.executable, "-m", "pytest", "-m", session.marks, f"--basetemp={work / session.name}", *args]
        if session.nice:
            argv = ["nice", "-n", str(NICENESS), *argv]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT if self.log else None,  # noqa: S603
                                     env={**os.environ, **session.env})
        self.seconds = 0.0

    def wait(self) -> int:
        code = self.proc.wait()
        self.seconds = self.seconds or time.monotonic() - self.started
        if self.log:
            self.log.close()
        return code

    def done(self) -> bool:
        if self.proc.poll() is not None and not self.seconds:
            self.seconds = time.monotonic() - self.started
        return self.proc.poll() is not None


def main(args: list[str]) -> int:
    start = time.monotonic()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"qhub-tests-{os.getuid()}"
    work.mkdir(parents=True, exist_ok=True)
    print("[test] sessions side by side: " + "; ".join(f"{s.name} ({s.marks})" for s in BESIDE)
          + f"; then {LAST.name} ({LAST.marks}). Logs of the quiet ones in {work}, printed at the end.", flush=True)
    running = [_Running(s, args, work) for s in BESIDE]
    codes: dict[str, int] = {}
    try:
        while not all([r.done() for r in running]):  # a list, not a generator: each session's end is noted
            time.sleep(1)
        codes = {r.session.name: r.wait() for r in running}
        last = _Running(LAST, args, work)
        codes[LAST.name] = last.wait()
    except KeyboardInterrupt:
        for r in running:
            r.proc.terminate()
        raise
    for r in running:
        if not r.session.live:
            print(f"\n[test] ===== session {r.session.name} ({r.session.marks}): {r.log_path} =====", flush=True)
            sys.stdout.write(r.log_path.read_text(errors="replace"))
    times = ", ".join(f"{r.session.name} {r.seconds:.0f}s (exit {codes[r.session.name]})" for r in running)
    print(f"\n[test] {times}, {LAST.name} {last.seconds:.0f}s (exit {codes[LAST.name]}); "
          f"all done after {time.monotonic() - start:.0f}s", flush=True)
    if all(code == NO_TESTS for code in codes.values()):
        print("[test] no test matched the arguments", flush=True)
        return NO_TESTS
    failed = [code for code in codes.values() if not _passed(code)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
