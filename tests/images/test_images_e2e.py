"""End to end: a spec on the local conda channel -> `qhubctl images build` -> a real registry (Debian's
docker-registry on loopback) -> `docker pull` and `docker run` on Debian's dockerd."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import shutil
import socketserver
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from qhubctl.images import registry as reg
from qhubctl.images.build import build, clear_cache
from qhubctl.proc import run
from typer.testing import CliRunner

pytestmark = pytest.mark.images

runner = CliRunner()
HELLO_1 = "qhub-hello 1.0 prefix=/opt/conda data=greetings from the local channel"


def cli(*args: str) -> tuple[int, str]:
    from qhubctl.commands.images import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def build_push(spec: Path, tag: str, host: str) -> str:
    code, out = cli("build", str(spec), "--tag", tag, "--push", host)
    assert code == 0, out
    match = re.search(r"@(sha256:[0-9a-f]{64})", out)
    assert match, out
    return match.group(1)


def test_build_push_pull_run(make_spec, registry, docker, qhub_cache) -> None:  # noqa: ANN001
    spec = make_spec(["qhub-hello 1.*"])
    qhubctl = Path(sys.executable).with_name("qhubctl")  # the installed command, as a user runs it
    out = run([qhubctl, "images", "build", spec, "--tag", "demo/hello:1", "--push", registry.host]).stdout
    digest = out.strip().rsplit("@", 1)[1]
    assert out.strip() == f"{registry.host}/demo/hello:1@{digest}"
    lock = (spec / "environment.lock").read_text()
    assert "qhub-hello-1.0-" in lock and "libqhub-2.0-" in lock and "qhub-data-1.0-" in lock
    assert json.loads((spec / "base.lock.json").read_text())["packages"][0]["name"] == "busybox-static"

    ref = f"{registry.host}/demo/hello:1"
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref, "qhub-hello").strip() == HELLO_1
    assert docker("run", "--rm", "--network", "none", ref, "id", "-u").strip() == "1000"
    assert docker("run", "--rm", "--network", "none", ref, "sh", "-c", "echo $HOME; pwd").split() == [
        "/home/qhub", "/home/qhub"]
    inspected = json.loads(docker("image", "inspect", ref))[0]
    assert f"{registry.host}/demo/hello@{digest}" in inspected["RepoDigests"]
    assert inspected["Config"]["User"] == "1000:1000"


def test_rebuild_gives_same_digest_and_uploads_nothing(make_spec, registry, qhub_cache) -> None:  # noqa: ANN001
    spec = make_spec(["qhub-hello 1.*"])
    first = build_push(spec, "demo/same:1", registry.host)
    uploads = registry.blob_uploads("demo/same")
    clear_cache()  # lay every layer out again from the packages: still the same bytes
    assert build(spec).image.manifest_digest == first
    assert build_push(spec, "demo/same:1", registry.host) == first
    assert registry.blob_uploads("demo/same") == uploads
    # the lock pins the result: a fresh spec directory with the same lock gives the same image too
    copy = spec.parent / "copy"
    shutil.copytree(spec, copy)
    assert build(copy).image.manifest_digest == first


def test_changed_spec_pushes_only_changed_layers(make_spec, registry, docker, qhub_cache) -> None:  # noqa: ANN001
    spec = make_spec(["qhub-hello 1.*"])
    before = build(spec).image
    build_push(spec, "demo/change:1", registry.host)
    pushed = registry.blob_uploads("demo/change")
    assert pushed == len(before.layers) + 1  # every layer and the config, the first time

    make_spec(["qhub-hello 1.*", "qhub-extra"], directory=spec)
    after = build(spec).image
    target = reg.parse_target(registry.host, "demo/change:2")
    report = reg.push(after, target)
    new = {layer.digest for layer in after.layers} - {layer.digest for layer in before.layers}
    assert len(new) == 2  # the qhub-extra layer and the top layer (it carries the spec)
    assert set(report.uploaded) == new | {after.config_digest}
    assert registry.blob_uploads("demo/change") - pushed == 3
    assert len(report.skipped) == len(before.layers) - 1  # base and the three unchanged packages
    ref = f"{registry.host}/demo/change:2"
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref, "cat", "/opt/conda/share/qhub-extra/README") == "extra\n"

    # an update of one package (hello 1 -> 2; its libqhub dependency is already 2.0) moves one package layer
    make_spec(["qhub-hello 2.*", "qhub-extra"], directory=spec)
    report = reg.push(build(spec).image, reg.parse_target(registry.host, "demo/change:3"))
    assert len(report.uploaded) == 3
    ref = f"{registry.host}/demo/change:3"
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref, "qhub-hello").startswith("qhub-hello 2.0 ")


@pytest.mark.parametrize(
    ("deps", "channels", "message"),
    [
        (["qhub-broken"], None, "cannot be solved"),
        (["qhub-hello 1.*", "libqhub 3.*"], None, "cannot be solved"),
        (["qhub-hello >=>1"], None, "'qhub-hello >=>1' is not a valid conda match spec"),
        (["qhub-hello"], ["file:///nonexistent/qhub-channel"], "channel 'file:///nonexistent/qhub-channel' not found"),
        (["qhub-hello"], ["no-such-channel"], "channel 'no-such-channel' not found"),
    ],
    ids=["unsolvable", "conflicting-pins", "bad-pin", "unknown-channel-url", "unknown-named-channel"],
)
def test_bad_specs_fail_before_anything_is_pushed(make_spec, registry, channel, qhub_cache, monkeypatch,
                                                   deps, channels, message) -> None:  # noqa: ANN001
    monkeypatch.setenv("QHUB_CHANNEL_ALIAS", str(channel.parent))  # named channels resolve beside the test one
    spec = make_spec(deps, channels=channels)
    code, out = cli("build", str(spec), "--tag", "demo/bad:1", "--push", registry.host)
    assert code == 1, out
    assert message in out
    assert "Traceback" not in out
    assert registry.requests("[A-Z]+", "demo/bad") == []
    assert not (spec / "environment.lock").exists()


def test_unreachable_channel_names_the_mirror_setting(make_spec, qhub_cache, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("QHUB_CHANNEL_ALIAS", "http://127.0.0.1:9/")  # discard port: nothing listens
    code, out = cli("build", str(make_spec(["qhub-hello"], channels=["conda-forge"])), "--tag", "x:1")
    assert code == 1
    assert "channel 'conda-forge' is unreachable at http://127.0.0.1:9/conda-forge/" in out
    assert "QHUB_CHANNEL_ALIAS" in out


def test_docker_archive_and_oci_layout(make_spec, docker, qhub_cache, tmp_path) -> None:  # noqa: ANN001
    spec = make_spec(["qhub-hello 1.*"])
    archive = tmp_path / "hello.tar"
    code, out = cli("build", str(spec), "--tag", "demo/archived:1", "--docker-archive", str(archive))
    assert code == 0, out
    assert "demo/archived:1" in docker("load", "-i", str(archive))
    assert docker("run", "--rm", "--network", "none", "demo/archived:1", "qhub-hello").strip() == HELLO_1

    layout = tmp_path / "layout"
    code, out = cli("build", str(spec), "--tag", "demo/archived:1", "--oci-layout", str(layout))
    assert code == 0, out
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    assert digest in out
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    for blob in [manifest["config"], *manifest["layers"]]:
        assert (layout / "blobs" / "sha256" / blob["digest"].split(":")[1]).stat().st_size == blob["size"]


def test_basic_auth_and_chunked_upload(make_spec, auth_registry, docker, qhub_cache,  # noqa: ANN001
                                       monkeypatch) -> None:  # noqa: ANN001
    registry, user, password = auth_registry
    image = build(make_spec(["qhub-hello 1.*"])).image
    target = reg.parse_target(registry.host, "private/hello:1")
    monkeypatch.delenv("QHUB_REGISTRY_USERNAME", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(qhub_cache / "no-docker-config"))
    with pytest.raises(reg.RegistryError, match="asks for a user name and password"):
        reg.push(image, target)
    assert registry.blob_uploads("private/hello") == 0

    monkeypatch.setenv("QHUB_REGISTRY_USERNAME", user)
    monkeypatch.setenv("QHUB_REGISTRY_PASSWORD", password)
    client = reg.RegistryClient(target, chunk_size=256 << 10, monolithic_max=256 << 10)
    report = reg.push(image, target, client=client)
    base = image.layers[0]
    assert base.size > 3 * (256 << 10)  # the base layer (busybox) goes in chunks
    assert len(registry.requests("PATCH", "private/hello/blobs/uploads/")) >= 4
    assert set(report.uploaded) == {d for d, _ in image.blobs()}
    assert client.manifest_digest("1") == image.manifest_digest

    run(["docker", "login", "-u", user, "--password-stdin", registry.host], env=docker.env, input=password)
    ref = f"{registry.host}/private/hello:1"
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref, "qhub-hello").strip() == HELLO_1


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the registry, but answers every third request with 503 first."""

    upstream = ""
    counter = 0
    failed = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass

    def _handle(self) -> None:
        with self.lock:
            type(self).counter += 1
            fail = type(self).counter % 3 == 0
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fail:
            type(self).failed += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = urllib.request.Request(self.upstream + self.path, data=body if body else None, method=self.command)
        for key, value in self.headers.items():
            if key.lower() not in ("content-length", "connection"):
                request.add_header(key, value)
        try:
            resp = urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback registry
        except urllib.error.HTTPError as exc:
            resp = exc
        data = resp.read()
        self.send_response(resp.status if hasattr(resp, "status") else resp.code)
        for key, value in resp.headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle  # noqa: N815


def test_push_retries_through_a_flaky_registry(make_spec, registry, qhub_cache) -> None:  # noqa: ANN001
    handler = type("Flaky", (_FlakyProxy,), {"upstream": f"http://{registry.host}", "counter": 0, "failed": 0})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        image = build(make_spec(["qhub-hello 1.*"])).image
        target = reg.parse_target(host, "demo/flaky:1")
        report = reg.push(image, target, client=reg.RegistryClient(target, backoff=0.01))
        assert handler.failed > 0
        assert report.retries >= handler.failed
        direct = reg.RegistryClient(reg.parse_target(registry.host, "demo/flaky:1"))
        assert direct.manifest_digest("1") == image.manifest_digest
    finally:
        server.shutdown()
        server.server_close()


def _wheel(directory: Path) -> Path:
    """A pure-Python wheel with a module and a console script, written by hand."""
    import base64
    import hashlib
    import zipfile

    files = {
        "qhubdemo.py": "def main():\n    print('qhubdemo says hi')\n",
        "qhubdemo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: qhubdemo\nVersion: 1.0\n",
        "qhubdemo-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: qhub-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        "qhubdemo-1.0.dist-info/entry_points.txt": "[console_scripts]\nqhubdemo = qhubdemo:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("qhubdemo-1.0.dist-info/RECORD,,")
    files["qhubdemo-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "qhubdemo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_pip_section_lands_in_site_packages(make_spec, qhub_cache) -> None:  # noqa: ANN001
    import gzip
    import io
    import tarfile

    spec = make_spec(["python 3.12.*", "qhub-hello 1.*", {"pip": ["./wheels/qhubdemo-1.0-py3-none-any.whl"]}])
    _wheel(spec / "wheels")
    image = build(spec).image
    top = image.store.path(image.layers[-1].digest).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(top))) as tar:
        names = set(tar.getnames())
        assert "opt/conda/lib/python3.12/site-packages/qhubdemo.py" in names
        raw = tar.extractfile("opt/conda/bin/qhubdemo").read()
        assert tar.getmember("opt/conda/bin/qhubdemo").mode == 0o755
        record = tar.extractfile("opt/conda/lib/python3.12/site-packages/qhubdemo-1.0.dist-info/RECORD").read()
    script = raw.decode()
    assert script.startswith("#!/opt/conda/bin/python\n")
    assert "from qhubdemo import main" in script
    # the RECORD names the script where it is, with the hash of what the image holds (not of pip's copy, whose #!
    # line named the builder's Python), so the layer does not depend on where qhubctl runs
    digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
    assert f"../../../bin/qhubdemo,sha256={digest},{len(raw)}" in record.decode().splitlines()
    assert sys.executable.encode() not in record


def test_pip_section_without_python_is_refused(make_spec, qhub_cache) -> None:  # noqa: ANN001
    spec = make_spec(["qhub-hello 1.*", {"pip": ["rich==13.7.1"]}])
    code, out = cli("build", str(spec), "--tag", "demo/pip:1")
    assert code == 1
    assert "pip section but no python" in out


def test_make_images_fails_clearly_without_a_reachable_channel(repo, qhub_cache, tmp_path) -> None:  # noqa: ANN001
    # every image of the repository is a system spec: a conda spec (a user environment's image) in a copy of the
    # script's tree stands for the conda specs build_images.sh still builds
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy2(repo / "scripts" / "build_images.sh", tree / "scripts")
    (tree / "charts" / "qhub").mkdir(parents=True)
    shutil.copy2(repo / "charts" / "qhub" / "Chart.yaml", tree / "charts" / "qhub")
    spec = tree / "images" / "user-env"
    spec.mkdir(parents=True)
    (spec / "environment.yaml").write_text("name: user-env\nchannels: [conda-forge]\ndependencies: [python 3.12.*]\n")
    env = {"QHUB_CHANNEL_ALIAS": "http://127.0.0.1:9/", "IMAGES": "user-env", "OUT": str(tmp_path / "out"),
           "QHUBCTL": str(Path(sys.executable).with_name("qhubctl"))}
    before = sorted((p.name, p.stat().st_mtime_ns) for p in spec.iterdir())
    result = run(["bash", tree / "scripts" / "build_images.sh"], env=env, check=False)
    assert result.returncode == 1
    assert "channel 'conda-forge' is unreachable at http://127.0.0.1:9/conda-forge/" in result.stderr
    assert "build_images: failed: user-env" in result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in spec.iterdir()) == before  # no lock written
    assert not (tmp_path / "out").exists()


def test_bearer_token_auth(make_spec, token_registry, qhub_cache, monkeypatch) -> None:  # noqa: ANN001
    registry, tokens = token_registry
    image = build(make_spec(["qhub-hello 1.*"])).image
    target = reg.parse_target(registry.host, "team/hello:1")
    monkeypatch.setenv("DOCKER_CONFIG", str(qhub_cache / "no-docker-config"))
    monkeypatch.setenv("QHUB_REGISTRY_USERNAME", tokens.user)
    monkeypatch.setenv("QHUB_REGISTRY_PASSWORD", "wrong")
    with pytest.raises(reg.RegistryError, match="token service .* answered HTTP 401"):
        reg.push(image, target)
    assert tokens.refused == 1

    monkeypatch.setenv("QHUB_REGISTRY_PASSWORD", tokens.password)
    client = reg.RegistryClient(target)
    report = reg.push(image, target, client=client)
    assert tokens.scopes == ["repository:team/hello:pull,push"]  # one token serves the whole push
    assert set(report.uploaded) == {d for d, _ in image.blobs()}
    assert client.manifest_digest("1") == image.manifest_digest


def test_glibc_base_runs_a_dynamically_linked_program(make_spec, registry, docker, qhub_cache,  # noqa: ANN001
                                                       tmp_path) -> None:
    """The default base carries the C library: a dynamically linked binary from a package runs, and the
    entrypoint applies the environment's activation scripts first."""
    from localchannel import Pkg, make_channel

    program = Path("/usr/bin/env").read_bytes()
    assert b"libc.so.6" in program  # dynamically linked, as conda-forge binaries are
    channel = make_channel(tmp_path / "glibc-channel", [
        Pkg("qhub-env", "1.0", files={
            "bin/qhub-env": (program, 0o755),
            "etc/conda/activate.d/qhub-env.sh": ("export QHUB_ACTIVATED=yes\n", 0o644),
        }),
    ])
    spec = make_spec(["qhub-env"], name="glibc", channels=[channel.as_uri()], image={"base": "glibc"})
    build_push(spec, "demo/glibc:1", registry.host)
    assert json.loads((spec / "base.lock.json").read_text())["base"] == "glibc"
    ref = f"{registry.host}/demo/glibc:1"
    docker("pull", ref)
    out = docker("run", "--rm", "--network", "none", ref, "qhub-env").splitlines()
    assert "CONDA_PREFIX=/opt/conda" in out
    assert "QHUB_ACTIVATED=yes" in out
    assert "HOME=/home/qhub" in out
