"""A user's first visit, in a real browser, to QHub on the real node: headless Chromium (Debian's package, driven by
playwright-core through tests/node/browser/journey.cjs) logs in through the hub's login form, picks a profile on
the spawn page, waits for JupyterLab, opens a notebook, runs a cell and reads its output from the page; the output
must come from the user's own pod. The GPU profile is listed only for members of the GPU group, and a user outside
it who posts its slug anyway is refused (this machine has no GPU: nothing is spawned on one).

Artifacts in build/test-artifacts/node/browser/: the lab screenshot with the output and every page's console log
always; on failure also a screenshot of the failed step, and the namespace's pods, events and logs in
build/test-artifacts/node/."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qhubkit
from qhubkit import Platform, demo_access

from nodekit import ARTIFACTS
from qhubctl import localcluster, realnode
from qhubctl.errors import ToolNotFoundError
from qhubctl.localcluster import LocalCluster
from qhubctl.proc import run, which

pytestmark = pytest.mark.node

NS = "qhub-browser"
RELEASE = "qbrowser"
IMAGES = ("jupyterhub", "jupyterlab")
DRIVER = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (ci/apt-packages.txt)
SHOTS = ARTIFACTS / "browser"
GPU_GROUP = "gpu-users"
# ada runs the journey and cleo only looks (both in the GPU group); ben is not in it
USERS = {"ada": [GPU_GROUP], "ben": [], "cleo": [GPU_GROUP]}
PROFILES = [
    {"name": "small", "display_name": "Small (1 CPU, 1 GiB)", "default": True,
     "cpu": {"guarantee": 0.1, "limit": 1}, "memory": {"guarantee": "256Mi", "limit": "1Gi"}},
    {"name": "standard", "display_name": "Standard (1 CPU, 2 GiB)",
     "cpu": {"guarantee": 0.1, "limit": 1}, "memory": {"guarantee": "256Mi", "limit": "2Gi"}},
    # requests a GPU and names no groups: only profiles.gpu_group's members (gpu-users, the default) may use it
    {"name": "gpu", "display_name": "GPU (1 NVIDIA GPU)", "gpus": 1, "node_group": "gpu",
     "cpu": {"guarantee": 0.1, "limit": 1}, "memory": {"guarantee": "256Mi", "limit": "2Gi"}},
]
CELL = "import os, socket; print(os.getuid(), socket.gethostname(), os.environ['JUPYTERHUB_USER'])"


def _config() -> dict[str, Any]:
    """The config `qhubctl init local` writes, in its own namespace and release, with the users, the GPU group and
    the profiles above (Dask-Gateway, conda-store, Jitsi and SSH off: this journey needs none of them)."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["node_groups"]["gpu"] = {"min_nodes": 0, "max_nodes": 1, "gpu": {"count": 1}}
    auth = cfg["auth"]
    auth["users"] = {**{u: {"groups": g} for u, g in USERS.items()}, **{a: {} for a in auth.get("admins", [])}}
    auth["groups"] = {GPU_GROUP: {"gid": 3100}}
    cfg["profiles"] = {"jupyterlab": PROFILES}
    cfg.setdefault("components", {})["kubessh"] = False
    return cfg


def _playwright() -> Path:
    """node_modules with playwright-core, installed by ci/setup.sh from tests/node/browser/package-lock.json into
    $QHUB_CACHE/browser/<hash of the lock file>."""
    key = hashlib.sha256((DRIVER / "package-lock.json").read_bytes()).hexdigest()[:16]
    modules = localcluster.cache_dir() / "browser" / key / "node_modules"
    if not (modules / "playwright-core" / "package.json").is_file():
        pytest.fail(f"playwright-core is not installed in {modules}: run `make setup` (ci/setup.sh installs "
                    "tests/node/browser/package-lock.json there)", pytrace=False)
    return modules


@pytest.fixture(scope="module")
def browser() -> dict[str, str]:
    """What the driver needs: node, playwright-core and Debian's chromium; a missing one fails naming it."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` (Debian package chromium, ci/apt-packages.txt)",
                    pytrace=False)
    try:
        node = which("node")
    except ToolNotFoundError as err:
        pytest.fail(f"{err}: run `make setup` (Debian package nodejs)", pytrace=False)
    return {"node": node, "NODE_PATH": str(_playwright())}


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Images pushed to the node's registry, QHub deployed by `qhubctl deploy`, the login checked."""
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("qhub-browser"), NS, RELEASE, _config(),
                          IMAGES) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _report_on_failure(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed assertion after the browser is done also leaves the namespace's pods, events and logs."""
    yield from qhubkit.report_on_failure(platform, request)


def drive(browser: dict[str, str], platform: Platform, spec: dict[str, Any], timeout: float = 600) -> dict:
    """Run the browser driver; a failed step fails the test naming the step, its screenshot and the reports."""
    spec = {"artifacts": str(SHOTS), "chromium": str(CHROMIUM), **spec}
    result = run([browser["node"], str(DRIVER / "journey.cjs"), json.dumps(spec)],
                 env={"NODE_PATH": browser["NODE_PATH"]}, check=False, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"the browser driver printed no result (exit {result.returncode}):\n{result.stderr[-3000:]}",
                    pytrace=False)
    if not answer["ok"]:
        error = re.sub(r"\x1b\[[0-9;]*m", "", answer.get("error", "")).splitlines()  # no terminal colours
        report = platform.report(re.sub(r"[^A-Za-z0-9]+", "-", f"browser {answer['step']}"))
        pytest.fail(f"browser step {answer['step']!r} failed for {spec['username']} at {answer.get('url')}: "
                    f"{' / '.join(error[:6])}\nscreenshot: {answer.get('screenshot')}\n"
                    f"console: {SHOTS / (spec['username'] + '-console.log')}\n"
                    f"pods, events, logs: {report}",
                    pytrace=False)
    return answer


def _slugs(answer: dict) -> list[str]:
    return [p["slug"] for p in answer["profiles"]]


def test_login_pick_a_profile_and_run_a_cell_in_the_users_pod(cluster: LocalCluster, platform: Platform,
                                                              browser: dict[str, str]) -> None:
    user = "ada"
    answer = drive(browser, platform, {"mode": "lab", "url": platform.url, "username": user,
                                       "password": platform.password, "profile": "standard", "code": CELL,
                                       "timeoutMs": 420_000})
    assert _slugs(answer) == ["small", "gpu", "standard"], answer["profiles"]  # a member of the GPU group
    uid, hostname, jupyterhub_user = answer["output"].split()
    pod = json.loads(cluster.kubectl("get", "pod", f"jupyter-{user}", "-n", NS, "-o", "json"))
    container = pod["spec"]["containers"][0]
    expected_uid = container.get("securityContext", {}).get("runAsUser",
                                                            pod["spec"]["securityContext"].get("runAsUser"))
    assert (hostname, jupyterhub_user) == (pod["metadata"]["name"], user), answer["output"]
    assert int(uid) == expected_uid, f"the cell ran as uid {uid}, the pod runs as {expected_uid}"
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert container["resources"]["limits"]["memory"] in ("2Gi", str(2 * 1024**3)), "not the picked profile"
    shot = SHOTS / f"{user}-lab.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    t = answer["timings"]
    print(f"\n[browser] login to JupyterLab {answer['loginToLabMs'] / 1000:.1f}s (spawn page to lab "
          f"{t['wait-for-jupyterlab'] / 1000:.1f}s), login to cell output {answer['loginToOutputMs'] / 1000:.1f}s, "
          f"kernel start {t['wait-for-kernel'] / 1000:.1f}s, run cell {t['run-cell'] / 1000:.1f}s "
          f"(re-sent {answer.get('reruns', 0)}x); screenshot {shot}")


def test_the_gpu_profile_is_listed_only_for_the_gpu_group(platform: Platform, browser: dict[str, str]) -> None:
    listed = {user: _slugs(drive(browser, platform, {"mode": "profiles", "url": platform.url, "username": user,
                                                     "password": platform.password}))
              for user in ("ben", "cleo")}
    assert listed == {"ben": ["small", "standard"], "cleo": ["small", "gpu", "standard"]}, listed


def test_a_gpu_profile_posted_by_a_user_outside_the_group_is_refused(cluster: LocalCluster,
                                                                     platform: Platform) -> None:
    url, user = platform.url, "ben"
    session = demo_access.login(url, user, platform.password)
    form = session.get(f"{url}hub/spawn", timeout=30)
    assert 'value="gpu"' not in form.text and 'value="small"' in form.text
    xsrf = next(c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/hub"))
    answer = session.post(f"{url}hub/spawn", data={"_xsrf": xsrf, "profile": "gpu"}, allow_redirects=False,
                          timeout=120)
    assert answer.status_code != 302 or f"/user/{user}/" not in answer.headers.get("Location", ""), answer.headers
    hub_log = cluster.kubectl("logs", "-n", NS, f"deployment/{RELEASE}-hub", "--tail=400")
    assert re.search(r"No such profile: gpu\. Options include: small, standard\b", hub_log), hub_log[-2000:]
    model = session.get(f"{url}hub/api/user", timeout=30,
                        headers={"X-XSRFToken": xsrf, "Referer": f"{url}hub/home"}).json()
    assert not model.get("servers"), model
    pods = json.loads(cluster.kubectl("get", "pods", "-n", NS, "-l", f"hub.jupyter.org/username={user}",
                                      "-o", "json"))["items"]
    assert not pods, [p["metadata"]["name"] for p in pods]

