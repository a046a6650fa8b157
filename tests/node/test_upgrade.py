"""Upgrade and rollback keep data, on the real node: QHub deployed by `qhubctl deploy` with alice and bob in group
analysts. Alice has a notebook in her home and a file in /shared/analysts, her token issued; both servers run.
Then three changes, each followed by the same checks: `qhubctl deploy` of a changed config (a profile's
description, a new user), `qhubctl --chart <copy> deploy` of the chart with its and its subcharts' versions bumped
(the hub and the proxy restart), and `helm rollback` to the revision before the bump, after which `qhubctl deploy`
takes over again; last a Helm change to the proxy alone (it restarts with no routes, the hub puts them back within
its one-minute route check). After each: the files are there, owned as before and readable by the group's
member; every user, group and uid is kept (the hub's `<release>-identities` record); the hub Secret's generated
passwords and tokens are the same and the shared password still logs in; alice's token still authenticates at
/hub/api/user and reaches her server; and neither user's pod was restarted (same pod UID, same restart counts)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import qhubkit
import requests
import yaml
from jupyterkit import Kernel
from qhubkit import REPO, Platform, demo_access

from nodekit import wait_for
from qhubctl.localcluster import LocalCluster

pytestmark = pytest.mark.node

NS = "qhub-upgrade"
RELEASE = "qupg"
IMAGES = ("jupyterhub", "jupyterlab")
GID = 3001
USERS = ("alice", "bob")
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": "print('kept across upgrades')"}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
CSV = "run,score\n1,0.93\n2,0.95\n"


def _config() -> dict[str, Any]:
    """`qhubctl init local`'s config with alice and bob in analysts; Dask-Gateway and SSH off, this journey needs
    neither."""
    cfg = qhubkit.local_config(NS, RELEASE)
    cfg["auth"]["users"] = {u: {"groups": ["analysts"]} for u in USERS} | {a: {} for a in cfg["auth"]["admins"]}
    cfg["auth"]["groups"] = {"analysts": {"gid": GID, "description": "shares /shared/analysts"}}
    cfg["components"].update(dask_gateway=False, kubessh=False)
    return cfg


@dataclass
class Kept:
    """What must survive: taken once before the first change."""

    identities: dict[str, Any]
    secret: dict[str, str]  # the hub Secret's data
    pods: dict[str, tuple[str, list[int]]]  # user -> (pod UID, restart count of each container)
    users: set[str]
    groups: dict[str, list[str]]
    token: str  # alice's, issued before any change
    figures: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def platform(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with qhubkit.deployed(cluster, tmp_path_factory.mktemp("upgrade"), NS, RELEASE, _config(), IMAGES) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _report(platform: Platform, request: pytest.FixtureRequest) -> Iterator[None]:
    yield from qhubkit.report_on_failure(platform, request)


@pytest.fixture(scope="module")
def kept(platform: Platform) -> Kept:
    """Both servers running, alice's notebook and group file written, her token issued; the record of it all."""
    for user in USERS:
        platform.start_server(user)
    written = platform.kernel("alice").run(
        "import json, os\n"
        f"open(os.path.expanduser('~/analysis.ipynb'), 'w').write({json.dumps(json.dumps(NOTEBOOK))})\n"
        f"open('/shared/analysts/results.csv', 'w').write({CSV!r})\n"
        "print(json.dumps(sorted(os.listdir(os.path.expanduser('~')))))")
    assert "analysis.ipynb" in json.loads(written)
    admin = platform.access["admin_username"]
    return Kept(identities=platform.identities(), secret=_hub_secret(platform), pods=_user_pods(platform),
                users=_hub_users(platform, admin), groups=_hub_groups(platform, admin),
                token=platform.token("alice"), figures={"first deploy, s": platform.deploy_seconds})


def _hub_secret(platform: Platform) -> dict[str, str]:
    """The hub Secret's generated values (passwords, tokens, keys): all but values.yaml, the config it carries."""
    secret = json.loads(platform.cluster.kubectl("get", "secret", f"{RELEASE}-hub", "-n", NS, "-o", "json"))
    generated = {k: v for k, v in secret["data"].items() if k != "values.yaml"}
    assert {"cookie-secret", "proxy-token", "dummy-password", "dummy-admin-password"} <= set(generated), generated
    return generated


def _user_pods(platform: Platform) -> dict[str, tuple[str, list[int]]]:
    found = {}
    for user in USERS:
        pods = [p for p in platform.pods(f"hub.jupyter.org/username={user}")
                if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == 1, f"{user}'s server pod: {[p['metadata']['name'] for p in pods]}"
        statuses = pods[0]["status"].get("containerStatuses") or []
        found[user] = (pods[0]["metadata"]["uid"], [s["restartCount"] for s in statuses])
    return found


def _hub_users(platform: Platform, admin: str) -> set[str]:
    answer = platform.hub_api("GET", "/users", platform.token(admin))
    assert answer.status_code == 200, answer.text[:300]
    return {u["name"] for u in answer.json()}


def _hub_groups(platform: Platform, admin: str) -> dict[str, list[str]]:
    answer = platform.hub_api("GET", "/groups", platform.token(admin))
    assert answer.status_code == 200, answer.text[:300]
    return {g["name"]: sorted(g["users"]) for g in answer.json()}


def _helm_pods(platform: Platform) -> dict[str, str]:
    """Pod UID of the hub and the proxy."""
    return {c: platform.pods(f"app.kubernetes.io/component={c}")[0]["metadata"]["uid"] for c in ("hub", "proxy")}


def _check_kept(platform: Platform, kept: Kept, stage: str, reach_timeout: float = 60) -> None:
    """Everything in `kept` is still there and works after `stage`; alice reaches her server within
    `reach_timeout` seconds of the hub answering."""
    url, alice = platform.url, {"Authorization": f"token {kept.token}"}

    def hub_knows_alice() -> requests.Response | None:
        try:
            answer = requests.get(f"{url}hub/api/user", headers=alice, timeout=10)
        except requests.RequestException:
            return None
        return None if answer.status_code in (502, 503, 504) else answer  # the proxy or the hub still starting

    whoami = wait_for(f"the hub to answer after {stage}", hub_knows_alice, timeout=120, interval=2)
    assert whoami.status_code == 200 and whoami.json()["name"] == "alice", (stage, whoami.status_code, whoami.text)
    begun = time.monotonic()

    def notebook() -> requests.Response | None:
        try:
            # a route the proxy lacks sends her to the hub (a redirect): not followed, it counts as unreachable
            answer = requests.get(f"{url}user/alice/api/contents/analysis.ipynb", headers=alice, timeout=10,
                                  allow_redirects=False)
        except requests.RequestException:
            return None
        return answer if answer.status_code == 200 else None

    found = wait_for(f"alice's token to reach her server after {stage}", notebook, timeout=reach_timeout,
                     interval=2)
    kept.figures[f"{stage}: alice's server reachable again, s"] = time.monotonic() - begun
    assert found.json()["type"] == "notebook"
    assert found.json()["content"]["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]
    assert _user_pods(platform) == kept.pods, f"{stage} restarted a user's server pod"
    ids = platform.identities()
    assert {u: ids["users"][u] for u in kept.identities["users"]} == kept.identities["users"], stage
    assert ids["groups"] == kept.identities["groups"] == {"analysts": GID}, stage
    secret = _hub_secret(platform)
    assert {k: secret.get(k) for k in kept.secret} == kept.secret, f"{stage} changed generated secrets"
    admin = platform.access["admin_username"]
    demo_access.login(url, admin, platform.access["admin_password"])  # the generated passwords still log in
    assert _hub_users(platform, admin) >= kept.users, stage
    assert _hub_groups(platform, admin) == kept.groups, stage
    bob = Kernel(url, "bob", platform.token("bob")).start()  # a fresh kernel: the proxy may have restarted
    try:
        seen = json.loads(bob.run(
            "import json, os\n"
            "st = os.stat('/shared/analysts/results.csv')\n"
            "print(json.dumps([open('/shared/analysts/results.csv').read(), st.st_uid, st.st_gid]))"))
    finally:
        bob.stop()
    assert seen == [CSV, kept.identities["users"]["alice"], GID], stage
    demo_access.login(url, "bob", platform.password)


def test_a_changed_config_keeps_data_users_and_tokens(platform: Platform, kept: Kept) -> None:
    cfg = platform.config_dict()
    cfg["profiles"]["jupyterlab"][0]["display_name"] = "Tiny (0.05-1 CPU, 256 MiB-1 GiB)"
    cfg["auth"]["users"]["erin"] = {}
    helm_pods = _helm_pods(platform)
    result, seconds = platform.redeploy(cfg)
    assert result.returncode == 0, result.stdout
    kept.figures["qhubctl deploy of a changed config, s"] = seconds
    assert _helm_pods(platform)["hub"] != helm_pods["hub"], "the hub took the new config"
    _check_kept(platform, kept, "a changed config")
    erin = wait_for("the hub to give erin a uid", lambda: platform.identities()["users"].get("erin"), timeout=60)
    assert erin == kept.identities["nextUid"], "a new user takes the next uid; nobody else's changes"
    form = platform.login("erin").get(f"{platform.url}hub/spawn", timeout=30)  # the new user logs in
    assert "Tiny (0.05-1 CPU, 256 MiB-1 GiB)" in form.text, form.text[:500]


def _bumped_chart(work: Path) -> tuple[Path, str]:
    """A copy of charts/qhub as the next patch release would ship it: the umbrella's and every subchart's version
    one patch up (with the umbrella's dependency pins), the appVersion - so the images - unchanged."""
    chart = work / "qhub"
    shutil.rmtree(chart, ignore_errors=True)
    shutil.copytree(REPO / "charts" / "qhub", chart)

    def bump(found: re.Match[str]) -> str:
        major, minor, patch = found.group(2).split(".")
        return f"{found.group(1)}{major}.{minor}.{int(patch) + 1}"

    for meta in [chart / "Chart.yaml", *sorted(chart.glob("charts/*/Chart.yaml"))]:
        meta.write_text(re.sub(r"^(\s*(?:- )?\s*version: *)(\d+\.\d+\.\d+)\s*$", bump, meta.read_text(), flags=re.M))
    umbrella = yaml.safe_load((chart / "Chart.yaml").read_text())
    original = yaml.safe_load((REPO / "charts" / "qhub" / "Chart.yaml").read_text())
    assert umbrella["version"] != original["version"] and umbrella["appVersion"] == original["appVersion"]
    for dep in umbrella["dependencies"]:
        sub = yaml.safe_load((chart / "charts" / dep["name"] / "Chart.yaml").read_text())
        assert dep["version"] == sub["version"] != original["version"], (dep, sub["version"])
    return chart, str(umbrella["version"])


def test_a_chart_version_bump_keeps_data_users_and_tokens(platform: Platform, kept: Kept, tmp_path: Path) -> None:
    chart, version = _bumped_chart(tmp_path)
    helm_pods = _helm_pods(platform)
    result, seconds = platform.redeploy(platform.config_dict(), chart=chart)
    assert result.returncode == 0, result.stdout
    restarted = sorted(c for c, uid in _helm_pods(platform).items() if helm_pods[c] != uid)
    print(f"[node] the chart version bump restarted: {', '.join(restarted) or 'nothing'}")
    assert f"with chart {version}" in result.stdout, result.stdout
    kept.figures["qhubctl deploy of a bumped chart version, s"] = seconds
    history = json.loads(qhubkit.helm(platform.cluster, "history", RELEASE, "-n", NS, "-o", "json").stdout)
    assert history[-1]["chart"] == f"qhub-{version}" and history[-1]["status"] == "deployed", history[-1]
    _check_kept(platform, kept, "a chart version bump")


def test_a_helm_rollback_keeps_data_users_and_tokens(platform: Platform, kept: Kept) -> None:
    history = json.loads(qhubkit.helm(platform.cluster, "history", RELEASE, "-n", NS, "-o", "json").stdout)
    before_bump = history[-2]
    begun = time.monotonic()
    qhubkit.helm(platform.cluster, "rollback", RELEASE, str(before_bump["revision"]), "-n", NS, "--wait",
                 "--timeout", "5m")
    kept.figures["helm rollback to before the bump, s"] = time.monotonic() - begun
    history = json.loads(qhubkit.helm(platform.cluster, "history", RELEASE, "-n", NS, "-o", "json").stdout)
    assert history[-1]["chart"] == before_bump["chart"] and history[-1]["status"] == "deployed", history[-1]
    _check_kept(platform, kept, "a helm rollback")
    assert "erin" in platform.identities()["users"], "the rollback went to the changed config, erin included"
    # qhubctl takes over again after a rollback made behind its back: the same config deploys cleanly
    result, seconds = platform.redeploy(platform.config_dict())
    assert result.returncode == 0, result.stdout
    kept.figures["qhubctl deploy after the rollback, s"] = seconds
    _check_kept(platform, kept, "qhubctl deploy after the rollback")


def test_a_change_to_the_proxy_alone_keeps_users_reaching_their_servers(platform: Platform, kept: Kept) -> None:
    """A Helm user's change to the proxy only (its memory request): the new proxy starts without routes and sends
    everyone to the hub, which keeps running and puts the routes back at its next check, within a minute."""
    helm_pods = _helm_pods(platform)
    begun = time.monotonic()
    qhubkit.helm(platform.cluster, "upgrade", RELEASE, str(REPO / "charts" / "qhub"), "-n", NS, "--reuse-values",
                 "--set", "jupyterhub.proxy.resources.requests.memory=130Mi", "--wait", "--timeout", "5m")
    kept.figures["helm upgrade of the proxy alone, s"] = time.monotonic() - begun
    now = _helm_pods(platform)
    assert now["proxy"] != helm_pods["proxy"] and now["hub"] == helm_pods["hub"], "only the proxy restarted"
    _check_kept(platform, kept, "a change to the proxy alone", reach_timeout=90)
    print("[node] upgrade journey: " + json.dumps({k: round(v, 1) for k, v in kept.figures.items()}))
