"""Every image a pod of the chart runs by default is either QHub's own build (`qhub/<name>`, from images/<name>/) or
an upstream image docs/images.md names with its exact tag. Rendered with every component and option that adds a pod
on (Jitsi, conda-store's MinIO), so a new component, a bumped upstream tag or a forgotten spec fails here before a
user meets ImagePullBackOff. Pods made at run time take their images from configuration the chart renders (user
servers' profiles, GPU ones included, Dask schedulers and workers, conda-store's build pods, the admission policy
that pins them): every QHub image named anywhere in the render, Secrets decoded, must have its spec too.
(The add-on chart's images: tests/unit/test_cluster_addons_release.py checks docs/providers.md lists them.)"""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from qhubctl.proc import run

from .manifests import POD_KINDS, pod_spec

pytestmark = pytest.mark.chart

REPO = Path(__file__).resolve().parents[2]
EVERYTHING_ON = ["--set", "jitsi.enabled=true", "--set", "jitsi.host=meet.qhub.example.org",
                 "--set", "jupyterhub.hub.services.jitsi.enabled=true", "--set", "conda-store.storage.type=minio"]
OWN = re.compile(r"^qhub/(?P<name>[a-z0-9-]+):(?P<tag>\S+)$")
OWN_ANYWHERE = re.compile(r"(?<![\w/.-])qhub/[a-z0-9-]+:[A-Za-z0-9._-]+")


@cache
def rendered() -> tuple[dict, ...]:
    out = run(["helm", "template", "qhub", str(REPO / "charts" / "qhub"), "--namespace", "qhub", *EVERYTHING_ON],
              timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def configured_images() -> dict[str, str]:
    """{QHub image reference: the object naming it} over the whole render, Secrets' data decoded."""
    found: dict[str, str] = {}
    for doc in rendered():
        texts = [yaml.safe_dump(doc)]
        for value in (doc.get("data") or {}).values() if doc["kind"] == "Secret" else ():
            try:
                texts.append(base64.b64decode(value).decode())
            except (binascii.Error, UnicodeDecodeError):
                continue
        for ref in (r for text in texts for r in OWN_ANYWHERE.findall(text)):
            found.setdefault(ref, f"{doc['kind']}/{doc['metadata']['name']}")
    return found


@cache
def images() -> dict[str, str]:
    """{image reference: the first workload/container running it} of the defaults with everything on."""
    found: dict[str, str] = {}
    for doc in (d for d in rendered() if d["kind"] in POD_KINDS):
        spec = pod_spec(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            found.setdefault(container["image"], f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}")
    return found


def test_the_render_runs_own_and_upstream_images() -> None:
    refs = images()
    assert any("jitsi" in r for r in refs) and any("minio" in r for r in refs), sorted(refs)
    assert any(OWN.match(r) for r in refs) and any(not OWN.match(r) for r in refs), sorted(refs)


def test_every_image_is_built_here_or_a_documented_upstream_one() -> None:
    docs = (REPO / "docs" / "images.md").read_text()
    problems = []
    for ref, who in sorted(images().items()):
        own = OWN.match(ref)
        if own and not (REPO / "images" / own["name"] / "image.yaml").is_file():
            problems.append(f"{who}: {ref} names no spec images/{own['name']}/image.yaml")
        if not own and f"`{ref}`" not in docs:
            problems.append(f"{who}: the upstream image {ref} is not listed, with this tag, in docs/images.md")
    assert not problems, "\n".join(problems)


def test_every_qhub_image_named_in_the_configuration_has_a_spec() -> None:
    refs = configured_images()
    # the run-time images are among them: GPU profiles' lab, Dask's worker (and GPU worker), the build pods'
    for name in ("jupyterlab-gpu", "dask-worker", "dask-worker-gpu", "conda-store"):
        assert any(r.startswith(f"qhub/{name}:") for r in refs), (name, sorted(refs))
    missing = [f"{who}: {ref}" for ref, who in sorted(refs.items())
               if not (REPO / "images" / OWN.match(ref)["name"] / "image.yaml").is_file()]
    assert not missing, "QHub images without a spec in images/:\n" + "\n".join(missing)
