"""Pure-logic tests of the image builder: spec parsing, layer tars, layer planning, references, auth challenges,
lock checks and the two file outputs. Nothing here starts a daemon or reaches a network."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import rattler
from qhubctl.errors import UserError
from qhubctl.images import oci, registry, solve
from qhubctl.images.build import image_config, plan_layers
from qhubctl.images.spec import load_spec

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- spec ---------------------------------------------------------------------------------------------------------


def test_spec_defaults_and_pip_section(tmp_path: Path) -> None:
    write(tmp_path / "environment.yaml",
          "name: lab\nchannels: [conda-forge]\ndependencies:\n  - python=3.12\n  - pip:\n    - rich==13.7.1\n")
    spec = load_spec(tmp_path / "environment.yaml")
    assert spec.name == "lab"
    assert spec.dependencies == ["python=3.12"]
    assert spec.pip == ["rich==13.7.1"]
    assert spec.image.user == 1000 and spec.image.prefix == "/opt/conda" and spec.image.base == "glibc"
    assert spec.lock_path == tmp_path / "environment.lock"
    cfg = image_config(spec)
    assert cfg.user == "1000:1000"
    assert "PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in cfg.env
    assert cfg.workdir == "/home/qhub"


@pytest.mark.parametrize(
    ("env", "image", "message"),
    [
        ("name: x\ndependencies: [a]\n", None, "no channels"),
        ("channels: [c]\ndependencies: []\n", None, "no conda dependencies"),
        ("channels: [c]\ndependencies: [a]\nbogus: 1\n", None, "unknown keys ['bogus']"),
        ("channels: [c]\ndependencies: [{npm: [x]}]\n", None, "only a `pip:` list"),
        ("channels: [c]\ndependencies: [a\n", None, "not valid YAML"),
        ("channels: [c]\ndependencies: [a]\n", "base: ubuntu\n", "unknown base 'ubuntu'"),
        ("channels: [c]\ndependencies: [a]\n", "prefix: /usr\n", "prefix must be an absolute path"),
        ("channels: [c]\ndependencies: [a]\n", "user: root\n", "user must be a non-negative integer"),
        ("channels: [c]\ndependencies: [a]\n", "colour: red\n", "unknown keys ['colour']"),
    ],
)
def test_spec_errors(tmp_path: Path, env: str, image: str | None, message: str) -> None:
    write(tmp_path / "environment.yaml", env)
    if image:
        write(tmp_path / "image.yaml", image)
    with pytest.raises(UserError, match=__import__("re").escape(message)):
        load_spec(tmp_path)


def test_bad_pin_is_a_clear_error() -> None:
    with pytest.raises(solve.SpecError, match=r"dependency 'numpy >=>1' is not a valid conda match spec"):
        solve.parse_specs(["python", "numpy >=>1"])


# -- layers -------------------------------------------------------------------------------------------------------


def _members(store: oci.BlobStore, layer: oci.Layer) -> list[tarfile.TarInfo]:
    data = store.path(layer.digest).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest
    raw = gzip.decompress(data)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


def test_layers_are_reproducible_and_normalised(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "b.txt", "b")
    write(src / "sub" / "run.sh", "#!/bin/sh\n").chmod(0o4775)  # setuid and group-writable: both dropped
    (src / "link").symlink_to("b.txt")
    store = oci.BlobStore(tmp_path / "store")

    first = oci.LayerBuilder("one")
    first.add_tree(src, "/opt/x")
    first.add_dir("/home/u", 0o755, uid=1000, gid=1000)
    second = oci.LayerBuilder("two")
    second.add_dir("/home/u", 0o755, uid=1000, gid=1000)
    os.utime(src / "b.txt", (1, 1))  # another mtime on disk must not matter
    for name in ("sub/run.sh", "link", "b.txt"):  # nor another insertion order
        second.add_path(f"/opt/x/{name}", src / name)
    a, b = first.write(store), second.write(store)
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)

    members = _members(store, a)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["home", "home/u", "opt", "opt/x", "opt/x/b.txt", "opt/x/link", "opt/x/sub", "opt/x/sub/run.sh"]
    by_name = {m.name: m for m in members}
    assert {m.mtime for m in members} == {oci.FIXED_MTIME}
    assert by_name["home/u"].uid == 1000 and by_name["opt/x"].uid == 0
    assert {m.uname for m in members} == {""}
    assert by_name["opt/x/sub/run.sh"].mode == 0o755
    assert by_name["opt/x/b.txt"].mode == 0o644
    assert by_name["opt/x/link"].issym() and by_name["opt/x/link"].linkname == "b.txt"


def test_layer_paths_are_checked() -> None:
    with pytest.raises(ValueError, match="bad path"):
        oci.LayerBuilder().add_bytes("/opt/../etc/passwd", b"")


def _record(name: str, size: int) -> rattler.RepoDataRecord:
    pkg = rattler.PackageRecord(name=name, version="1.0", build=rattler.BuildString("0"), build_number=0,
                                subdir="linux-64", size=size, sha256=hashlib.sha256(name.encode()).digest())
    return rattler.RepoDataRecord(pkg, f"{name}-1.0-0.conda", f"https://example.invalid/{name}-1.0-0.conda",
                                  "https://example.invalid/")


def test_plan_one_layer_per_package_within_budget() -> None:
    records = [_record(n, 10) for n in ("c", "a", "b")]
    assert [[r.name.normalized for r in g] for g in plan_layers(records, 10)] == [["a"], ["b"], ["c"]]


def test_plan_groups_past_budget_and_one_change_moves_one_layer() -> None:
    records = [_record(f"pkg{i:03d}", 1000 + i) for i in range(200)]
    budget = 40
    groups = plan_layers(records, budget)
    assert len(groups) <= budget
    assert sorted(r.name.normalized for g in groups for r in g) == sorted(r.name.normalized for r in records)
    biggest = {r.name.normalized for r in sorted(records, key=lambda r: -r.size)[: budget - 8]}
    assert all(len(g) == 1 for g in groups if g[0].name.normalized in biggest)

    def keyset(gs: list[list[rattler.RepoDataRecord]]) -> set[frozenset[str]]:
        return {frozenset(r.name.normalized for r in g) for g in gs}

    before = keyset(groups)
    after = keyset(plan_layers([*records, _record("newcomer", 1)], budget))  # small: lands in a shared bucket
    assert len(after - before) == 1 and len(before - after) == 1
    (changed,) = after - before
    assert "newcomer" in changed


# -- references and auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reg", "tag", "expected"),
    [
        ("127.0.0.1:5000", "qhub-jupyterlab:2025.1", ("http", "127.0.0.1:5000", "qhub-jupyterlab", "2025.1")),
        ("ghcr.io/org", "lab", ("https", "ghcr.io", "org/lab", "latest")),
        ("http://registry.lan:5000/a/b", "x/y:v1", ("http", "registry.lan:5000", "a/b/x/y", "v1")),
        ("localhost:5000", "lab:1", ("http", "localhost:5000", "lab", "1")),
    ],
)
def test_parse_target(reg: str, tag: str, expected: tuple[str, str, str, str]) -> None:
    t = registry.parse_target(reg, tag)
    assert (t.scheme, t.host, t.repository, t.tag) == expected


@pytest.mark.parametrize(("tag", "message"), [("Lab:1", "not a valid repository"), ("lab:-x", "not a valid tag")])
def test_parse_target_rejects(tag: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        registry.parse_target("127.0.0.1:5000", tag)


def test_parse_challenge() -> None:
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull"}
    assert registry.parse_challenge('Basic realm="qhub"') == ("basic", {"realm": "qhub"})


def test_docker_config_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    auth = base64.b64encode(b"alice:pw:with:colons").decode()
    write(tmp_path / "config.json", json.dumps({"auths": {"https://reg.example": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry.docker_config_credentials("reg.example") == ("alice", "pw:with:colons")
    assert registry.docker_config_credentials("other.example") is None


# -- lock check ---------------------------------------------------------------------------------------------------


def test_lock_satisfies() -> None:
    chan = [rattler.Channel("https://example.invalid/")]

    def rec(name: str, version: str, depends: list[str]) -> rattler.RepoDataRecord:
        pkg = rattler.PackageRecord(name=name, version=version, build=rattler.BuildString("0"), build_number=0,
                                    subdir="linux-64", depends=depends)
        filename = f"{name}-{version}-0.conda"
        return rattler.RepoDataRecord(pkg, filename, f"https://example.invalid/linux-64/{filename}",
                                      "https://example.invalid/")

    locked = [rec("app", "2.0", ["lib >=1", "__glibc >=2.17"]), rec("lib", "1.5", [])]
    specs = solve.parse_specs
    assert solve.lock_satisfies(locked, specs(["app 2.*"]), chan)
    assert not solve.lock_satisfies(locked, specs(["app 3.*"]), chan)  # pin moved
    assert not solve.lock_satisfies(locked, specs(["app", "extra"]), chan)  # package added
    assert not solve.lock_satisfies([*locked, rec("stray", "1", [])], specs(["app"]), chan)  # package removed
    assert not solve.lock_satisfies(locked, specs(["app"]), [rattler.Channel("https://other.invalid/")])
    assert not solve.lock_satisfies([rec("app", "2.0", ["lib >=2"]), rec("lib", "1.5", [])], specs(["app"]), chan)


# -- outputs ------------------------------------------------------------------------------------------------------


def _image(tmp_path: Path) -> oci.Image:
    store = oci.BlobStore(tmp_path / "store")
    layer = oci.LayerBuilder("hello")
    layer.add_bytes("/opt/conda/bin/hi", b"#!/bin/sh\necho hi\n", 0o755)
    cfg = oci.ImageConfig(user="1000:1000", env=["A=1"], entrypoint=["/bin/sh"], cmd=[], workdir="/home/qhub")
    return oci.assemble(store, [layer.write(store)], cfg)


def test_manifest_and_config(tmp_path: Path) -> None:
    image = _image(tmp_path)
    manifest = json.loads(image.manifest)
    config = json.loads(image.config)
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST
    assert manifest["config"] == {"mediaType": oci.MEDIA_CONFIG, "digest": image.config_digest,
                                  "size": len(image.config)}
    assert [x["digest"] for x in manifest["layers"]] == [image.layers[0].digest]
    assert config["config"]["User"] == "1000:1000"
    assert config["rootfs"]["diff_ids"] == [image.layers[0].diff_id]
    assert image.manifest_digest == "sha256:" + hashlib.sha256(image.manifest).hexdigest()
    assert _image(tmp_path / "again").manifest_digest == image.manifest_digest


def test_oci_layout_and_docker_archive(tmp_path: Path) -> None:
    image = _image(tmp_path)
    layout = tmp_path / "layout"
    oci.write_oci_layout(image, layout, "v1")
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == image.manifest_digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    for digest, _ in [*image.blobs(), (image.manifest_digest, 0)]:
        blob = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == digest
    oci.write_oci_layout(image, layout, "v1")  # rewriting the same ref keeps one entry
    assert len(json.loads((layout / "index.json").read_text())["manifests"]) == 1

    archive = tmp_path / "img.tar"
    oci.write_docker_archive(image, archive, "qhub/demo:v1")
    first = hashlib.sha256(archive.read_bytes()).hexdigest()
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["qhub/demo:v1"]
        config = json.load(tar.extractfile(manifest[0]["Config"]))
        assert config["rootfs"]["diff_ids"] == [image.layers[0].diff_id]
        assert tar.getmember(manifest[0]["Layers"][0]).size == image.layers[0].size
    oci.write_docker_archive(image, archive, "qhub/demo:v1")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == first
