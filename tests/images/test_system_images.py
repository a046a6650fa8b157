"""System images end to end: the node images' specs (images/pause, images/busybox) built from clean private
caches, rebuilt to the same digest, pushed to Debian's docker-registry on loopback, read back over the
distribution API, and run on Debian's dockerd."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess  # the pause binary is a long-lived process signalled mid-run: proc.run does not fit
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from qhubctl.images import debs
from qhubctl.images.build import build
from qhubctl.images.oci import MEDIA_MANIFEST
from qhubctl.images.spec import published_tag
from qhubctl.proc import run
from typer.testing import CliRunner

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[2]
APPLETS = ("sh", "mkdir", "rm", "chmod", "chown", "cat", "ls", "sleep", "wget", "nc", "httpd", "id", "touch", "echo",
           "test")


@pytest.fixture
def clean_cache(tmp_path: Path) -> Iterator[Path]:
    """An empty $QHUB_CACHE for one test: every package is downloaded, every binary built, every layer laid out."""
    cache = tmp_path / "qhub-cache"
    old = os.environ.get("QHUB_CACHE")
    os.environ["QHUB_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("QHUB_CACHE", None)
    else:
        os.environ["QHUB_CACHE"] = old


def copy_spec(name: str, tmp_path: Path) -> Path:
    """A copy of images/<name> (with its lock): builds write the lock, and the repository must stay untouched."""
    target = tmp_path / "specs" / name
    shutil.copytree(REPO / "images" / name, target)
    return target


def layer_members(image) -> dict[str, tarfile.TarInfo]:  # noqa: ANN001 - an oci.Image
    members: dict[str, tarfile.TarInfo] = {}
    for layer in image.layers:
        raw = gzip.decompress(image.store.path(layer.digest).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members.update({m.name: m for m in tar.getmembers()})
    return members


def extract(image, path: str, target: Path) -> Path:  # noqa: ANN001 - an oci.Image
    for layer in reversed(image.layers):
        raw = gzip.decompress(image.store.path(layer.digest).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            try:
                member = tar.getmember(path)
            except KeyError:
                continue
            target.write_bytes(tar.extractfile(member).read())
            target.chmod(0o755)
            return target
    raise AssertionError(f"{path} is in no layer")


def config_of(image) -> dict:  # noqa: ANN001 - an oci.Image
    return json.loads(image.config)


def test_pause_is_reproducible_from_clean_caches(tmp_path: Path, clean_cache: Path,
                                                 monkeypatch) -> None:  # noqa: ANN001
    spec = copy_spec("pause", tmp_path)
    logs: list[str] = []
    first = build(spec, log=logs.append)
    assert any(line.startswith("go: building pause") for line in logs), logs
    cfg = config_of(first.image)
    assert cfg["config"]["User"] == "65535:65535"
    assert cfg["config"]["Entrypoint"] == ["/pause"]
    assert len(first.image.layers) == 2  # the binary, then user and spec files
    members = layer_members(first.image)
    assert members["pause"].mode == 0o755 and members["pause"].uid == 0
    assert b"pause:x:65535:65535:" in extract(first.image, "etc/passwd", tmp_path / "passwd").read_bytes()
    lock = json.loads((spec / "system.lock.json").read_text())
    binary = extract(first.image, "pause", tmp_path / "pause")
    assert lock["go"]["pause"]["sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    assert b"/lib64/ld-linux" not in binary.read_bytes()  # static: no dynamic loader named

    # A second machine: no QHUB_CACHE and no Go build cache at all. Same bytes.
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setenv("GOCACHE", str(tmp_path / "other-gocache"))
    second = build(spec)
    assert second.image.manifest_digest == first.image.manifest_digest
    logs.clear()
    warm = build(spec, log=logs.append)  # warm: no compiler run
    assert warm.image.manifest_digest == first.image.manifest_digest
    assert not any(line.startswith("go: building") for line in logs), logs
    assert warm.seconds < 5


def test_pause_exits_zero_on_sigterm_and_sigint(tmp_path: Path, clean_cache: Path) -> None:
    image = build(copy_spec("pause", tmp_path)).image
    binary = extract(image, "pause", tmp_path / "pause")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([binary], stderr=subprocess.PIPE)  # noqa: S603
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)  # it blocks until told to stop
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert b"exiting" in proc.stderr.read()


def test_busybox_closure_lock_and_applets(tmp_path: Path, clean_cache: Path, monkeypatch) -> None:  # noqa: ANN001
    spec = copy_spec("busybox", tmp_path)
    (spec / "system.lock.json").unlink(missing_ok=True)  # resolve afresh with apt
    first = build(spec)
    lock = json.loads((spec / "system.lock.json").read_text())
    assert [p["name"] for p in lock["debian"]["packages"]] == ["busybox-static"]  # static: no libc6 pulled in
    members = layer_members(first.image)
    busybox = "bin/busybox"
    assert members[busybox].isfile()
    for applet in APPLETS:
        links = [m for name, m in members.items() if name.rsplit("/", 1)[-1] == applet and m.issym()]
        assert links and all(m.linkname == "/" + busybox for m in links), applet
    assert config_of(first.image)["config"]["User"] == "65532:65532"
    status = extract(first.image, "var/lib/dpkg/status", tmp_path / "status").read_text()
    assert "Package: busybox-static\nStatus: install ok installed\n" in status

    # from the lock, in an empty cache: downloads that exact version again and checks its sha256
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path / "other-cache"))
    again = build(spec)
    assert again.image.manifest_digest == first.image.manifest_digest
    assert not again.relocked


def test_a_deb_that_differs_from_the_lock_is_refused(tmp_path: Path, clean_cache: Path) -> None:
    spec = copy_spec("busybox", tmp_path)
    build(spec)
    lock = json.loads((spec / "system.lock.json").read_text())
    lock["debian"]["packages"][0]["sha256"] = "0" * 64
    (spec / "system.lock.json").write_text(json.dumps(lock))
    code, out = cli("build", str(spec), "--tag", "x/busybox:1")
    assert code == 1, out
    assert "differs from system.lock.json" in out and "--relock" in out and "Traceback" not in out


def test_apt_closure_is_complete() -> None:
    closure = dict(debs.resolve(["python3-minimal"]))
    assert {"libc6", "python3.11-minimal", "libpython3.11-minimal", "libssl3", "zlib1g"} <= set(closure)
    assert all(closure.values())


runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    from qhubctl.commands.images import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def get(url: str, accept: str = "") -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback registry
        return resp.read(), dict(resp.headers)


@pytest.mark.parametrize("name", ["pause", "busybox"])
def test_push_and_read_back(name: str, tmp_path: Path, clean_cache: Path, registry) -> None:  # noqa: ANN001
    spec = copy_spec(name, tmp_path)
    tag = published_tag(spec)
    code, out = cli("build", str(spec), "--tag", tag, "--push", registry.host)
    assert code == 0, out
    ref, digest = out.strip().splitlines()[-1].rsplit("@", 1)
    assert ref == f"{registry.host}/{tag}"
    repository, version = tag.rsplit(":", 1)
    body, headers = get(f"http://{registry.host}/v2/{repository}/manifests/{version}", MEDIA_MANIFEST)
    assert headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    manifest = json.loads(body)
    assert manifest["mediaType"] == MEDIA_MANIFEST
    config, _ = get(f"http://{registry.host}/v2/{repository}/blobs/{manifest['config']['digest']}")
    user = json.loads(config)["config"]["User"]
    assert user.split(":")[0] not in ("", "0", "root")
    for layer in manifest["layers"]:
        blob, _ = get(f"http://{registry.host}/v2/{repository}/blobs/{layer['digest']}")
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]


def test_node_images_run_in_docker(tmp_path: Path, clean_cache: Path, registry, docker) -> None:  # noqa: ANN001
    refs = {}
    for name in ("busybox", "pause"):
        spec = copy_spec(name, tmp_path)
        code, out = cli("build", str(spec), "--tag", published_tag(spec), "--push", registry.host)
        assert code == 0, out
        refs[name] = out.strip().splitlines()[-1].rsplit("@", 1)[0]
        docker("pull", refs[name])
    script = "id -u; id -un; for a in " + " ".join(APPLETS) + "; do command -v $a >/dev/null || echo missing $a; done"
    out = docker("run", "--rm", "--network", "none", refs["busybox"], "sh", "-c", script).split()
    assert out == ["65532", "nonroot"]
    container = docker("run", "-d", "--network", "none", refs["pause"]).strip()
    docker("stop", "-t", "10", container)
    state = json.loads(docker("inspect", container))[0]["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"]
    docker("rm", container)


SIX_WHEEL_SHA256 = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"  # six-1.16.0-py2.py3-none-any


def test_pip_and_npm_sections(tmp_path: Path, clean_cache: Path, registry, docker) -> None:  # noqa: ANN001
    spec = tmp_path / "langs"
    (spec / "npm").mkdir(parents=True)
    (spec / "image.yaml").write_text(
        "kind: system\nversion: 0.1.0\nentrypoint: [/opt/venv/bin/python]\n"
        "debian: [python3-minimal, nodejs]\npip: {prefix: /opt/venv}\nnpm: {directory: npm, prefix: /opt/js}\n"
    )
    (spec / "requirements.lock").write_text(f"six==1.16.0 \\\n    --hash=sha256:{SIX_WHEEL_SHA256}\n")
    (spec / "npm" / "package.json").write_text('{"name": "langs", "private": true}\n')
    run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "ms@2.1.3"], cwd=spec / "npm")
    first = build(spec)
    lock = json.loads((spec / "system.lock.json").read_text())
    assert lock["pip"]["python"] == "3.11" and lock["npm"]["package_lock_sha256"]
    assert [layer.comment.split()[2] for layer in first.image.layers[1:3]] == ["pip", "npm"]
    config = config_of(first.image)["config"]
    assert config["Env"][0].startswith("PATH=/opt/venv/bin:/opt/js/node_modules/.bin:")
    # pip and npm install again (the Debian layer, the slow one, comes from the cache): the same bytes
    for index in (clean_cache / "images" / "layers").glob("*.json"):
        if index.name.startswith(("pip-", "npm-")):
            index.unlink()
    logs: list[str] = []
    assert build(spec, log=logs.append).image.manifest_digest == first.image.manifest_digest
    assert [line.split(":")[0] for line in logs if line.startswith(("pip:", "npm:"))] == ["pip", "npm"]

    code, out = cli("build", str(spec), "--tag", "test/langs:0.1.0", "--push", registry.host)
    assert code == 0, out
    ref = out.strip().splitlines()[-1].rsplit("@", 1)[0]
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref, "-c", "import six, sys; print(six.__version__, sys.prefix)"
                  ).split() == ["1.16.0", "/opt/venv"]
    assert docker("run", "--rm", "--network", "none", "--entrypoint", "node", ref, "-e",
                  "console.log(require('/opt/js/node_modules/ms')(60000))").strip() == "1m"



def test_a_platform_image_is_reproducible_from_empty_caches(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A platform image (kubessh: Debian packages, a hash-pinned PyPI lock, rootfs files) built on a machine that has
    never built anything - empty $QHUB_CACHE, empty pip cache, so every package is downloaded again - has the digest
    the regular cache's build has. (All of `make images` from empty caches: measured, docs/images.md.)"""
    spec = copy_spec("kubessh", tmp_path)
    regular = build(spec)
    monkeypatch.setenv("QHUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "empty-pip-cache"))
    logs: list[str] = []
    cold = build(spec, log=logs.append)
    assert any(line.startswith("pip: installing") for line in logs), logs  # really built, not found in a cache
    assert (tmp_path / "empty-cache").is_dir() and any((tmp_path / "empty-cache").iterdir())
    assert cold.image.manifest_digest == regular.image.manifest_digest
    print(f"\n[images] kubessh from empty caches in {cold.seconds:.1f} s: {cold.image.manifest_digest[:19]}, "
          f"as the regular cache's build")
