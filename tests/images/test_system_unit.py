"""System image specs (`kind: system`): parsing, validation messages, the published tag, the image config.
Pure Python: nothing here runs apt, Go or a registry."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from qhubctl.errors import UserError
from qhubctl.images import gobuild, pythonpkgs, rootfs
from qhubctl.images.oci import LayerBuilder
from qhubctl.images.spec import load_spec, published_tag, spec_kind
from qhubctl.images.sysspec import DEFAULT_UID, GoBinary, load_system_spec
from qhubctl.images.system import image_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGES = ("pause", "coredns", "local-path-provisioner", "busybox")


def spec_dir(tmp_path: Path, image_yaml: str, name: str = "demo") -> Path:
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "image.yaml").write_text(image_yaml)
    return directory


MINIMAL = "kind: system\nversion: 1.0.0\nentrypoint: [/bin/x]\n"


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec = load_system_spec(spec_dir(tmp_path, MINIMAL + "debian: [busybox-static]\n"))
    assert (spec.name, spec.version, spec.user, spec.username, spec.home) == (
        "demo", "1.0.0", DEFAULT_UID, "nonroot", "/home/nonroot")
    assert spec.debian == ["busybox-static"] and spec.go == [] and spec.pip is None and spec.npm is None
    cfg = image_config(spec)
    assert cfg.user == "65532:65532"
    assert cfg.workdir == "/home/nonroot"
    assert cfg.env[0] == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert cfg.labels["org.opencontainers.image.version"] == "1.0.0"


def test_go_entries_default_version_dest_and_ldflags(tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, "kind: system\nname: dns\nversion: 1.15.0\nentrypoint: [/usr/local/bin/coredns]\n"
                         "go:\n  - name: coredns\n    module: github.com/coredns/coredns\n"
                         "    ldflags: -X main.v={version}\n"
                         "  - name: tool\n    source: src\n    dest: /tool\n")
    (directory / "src").mkdir()
    (directory / "src" / "go.mod").write_text("module qhub.local/tool\n\ngo 1.22\n")
    spec = load_system_spec(directory)
    coredns, tool = spec.go
    assert (coredns.version, coredns.package, coredns.dest, coredns.ldflags) == (
        "v1.15.0", "github.com/coredns/coredns", "/usr/local/bin/coredns", "-X main.v=v1.15.0")
    assert tool.source == (directory / "src").resolve() and tool.package == "." and tool.dest == "/tool"
    assert published_tag(directory) == "qhub/dns:1.15.0"
    assert published_tag(directory, "example") == "example/dns:1.15.0"


@pytest.mark.parametrize(
    ("image_yaml", "message", "hint"),
    [
        ("kind: system\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c}]\n",
         "go[0].version: missing (and the image has no `version:` to follow)", "version: v1.15.0"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\npip: {sdists: [a b]}\n", "no file requirements.lock", ""),
        ("kind: system\nversion: 'v1:2'\nentrypoint: [/x]\ndebian: [a1]\n", "version: 'v1:2' is not allowed",
         "an image tag"),
        ("kind: system\nversion: 1.10\nentrypoint: [/x]\ndebian: [a1]\n", "version: 1.1 is a YAML number",
         'version: "1.10"'),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [a1]\ncolour: red\n", "unknown keys ['colour']",
         "known keys"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [a1]\nuser: 0\n", "user: 0 is not a non-root uid",
         "never run as root"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [a1]\nuser: nobody\n", "user: 'nobody' is not",
         "user: 65532"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [a1]\nusername: root\n", "username: 'root' is taken",
         "username: nonroot"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [a1]\nhome: relative\n",
         "home: 'relative' is not an absolute path", "absolute directory"),
        ("kind: system\nversion: 1\ndebian: [a1]\n", "neither entrypoint nor cmd", "entrypoint: ["),
        ("kind: system\nversion: 1\nentrypoint: /x\ndebian: [a1]\n", "entrypoint: expected a list of strings",
         "entrypoint: [first, second]"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ndebian: [Busybox=1.0]\n",
         "debian: 'Busybox=1.0' is not a Debian package name", "system.lock.json"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\nenv: [A=b]\ndebian: [a1]\n", "env: expected a mapping",
         "{NAME: value}"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\n", "the image has no content", "debian:"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ngo: {name: x}\n", "go: expected a list", "go: [{"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ngo: [x]\n", "go[0]: expected a mapping", "go: [{"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{module: a.b/c}]\n", "go[0].name: missing",
         "name: coredns"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ngo: [{name: c}]\n", "give exactly one of `module:` and `source:`",
         "Go module proxy"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c, source: s}]\n",
         "give exactly one of", "inside the spec directory"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ngo: [{name: c, source: nowhere}]\n",
         "go[0].source: no go.mod in 'nowhere'", "holding go.mod"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c, version: latest}]\n",
         "go[0].version: 'latest' is not a Go module version", "version: v1.15.0"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c, package: x.y/z}]\n",
         "go[0].package: 'x.y/z' is not inside module 'a.b/c'", "a.b/c/cmd/<name>"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c, flags: -v}]\n",
         "go[0].unknown keys ['flags']", "ldflags"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c}, {name: c, module: a.b/d}]\n",
         "binary names repeat", "its own `name:`"),
        ("kind: system\nversion: 1.2.3\nentrypoint: [/x]\ngo: [{name: c, module: a.b/c, build_in_module: 'yes'}]\n",
         "go[0].build_in_module: 'yes' is not true or false", "build_in_module: true"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\ngo: [{name: c, source: s, build_in_module: true}]\n",
         "go[0].build_in_module: not used with source:", "always built inside itself"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\npip: {}\n", "pip.requirements: no file requirements.lock",
         "--generate-hashes"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\nnpm: {prefix: /opt/n}\n",
         "npm.directory: ", "package-lock-only"),
        ("kind: system\nversion: 1\nentrypoint: [/x]\nnpm: [x]\n", "npm: expected a mapping", "npm:"),
        ("kind: system\nversion: 1\nentrypoint: [/x\n", "not valid YAML", ""),
        ("kind: sytem\nversion: 1\nentrypoint: [/x]\n", "kind: 'sytem' is not a system image", "kind: system"),
    ],
)
def test_spec_errors_name_the_field_and_the_fix(tmp_path: Path, image_yaml: str, message: str, hint: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as err:
        load_system_spec(spec_dir(tmp_path, image_yaml))
    assert hint in err.value.hint
    assert "image.yaml" in err.value.message


def test_kind_routes_specs(tmp_path: Path) -> None:
    system = spec_dir(tmp_path, MINIMAL + "debian: [busybox-static]\n", "sys")
    assert spec_kind(system) == "system"
    conda = spec_dir(tmp_path, "base: busybox\n", "conda")
    (conda / "environment.yaml").write_text("channels: [c]\ndependencies: [a]\n")
    assert spec_kind(conda) == "conda"
    assert load_spec(conda).image.base == "busybox"
    assert published_tag(conda, app_version="0.3.0") == "qhub/conda:0.3.0"  # conda specs: the chart's appVersion
    with pytest.raises(UserError, match="no `version:`"):
        published_tag(conda)
    (conda / "image.yaml").write_text("kind: system\n")
    with pytest.raises(UserError, match="kind 'system' with an environment.yaml"):
        load_spec(conda)


@pytest.mark.parametrize("name", NODE_IMAGES)
def test_node_image_specs_load_and_run_non_root(name: str) -> None:
    directory = REPO / "images" / name
    spec = load_system_spec(directory)
    assert spec_kind(directory) == "system"
    assert published_tag(directory) == f"qhub/{name}:{spec.version}"
    assert spec.user != 0 and image_config(spec).user == f"{spec.user}:{spec.user}"
    binaries = {b.dest for b in spec.go}
    assert spec.entrypoint[:1] or spec.cmd
    if spec.go:
        assert spec.entrypoint[0] in binaries


def test_build_in_module_builds_the_package_relative_to_the_module(tmp_path: Path) -> None:
    go = ("go:\n  - {name: t, module: a.b/t/v3, package: a.b/t/v3/cmd/t, build_in_module: true}\n"
          "  - {name: u, module: a.b/u, build_in_module: false}\n")
    t, u = load_system_spec(spec_dir(tmp_path, MINIMAL + go)).go
    assert (t.in_module, t.package_in_module) == (True, "./cmd/t")
    assert (u.in_module, u.package_in_module) == (False, ".")


def test_build_in_module_changes_only_its_own_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.26.0")
    wrapper = GoBinary("t", "a.b/t", "/t", module="a.b/t", version="v1.0.0")
    inside = GoBinary("t", "a.b/t", "/t", module="a.b/t", version="v1.0.0", in_module=True)
    assert gobuild.cache_key(wrapper) != gobuild.cache_key(inside)


def test_go_modules_pin_the_image_version() -> None:
    """The version lives once, in image.yaml's `version:`; the Go module versions follow it."""
    coredns = load_system_spec(REPO / "images" / "coredns")
    assert coredns.go[0].version == f"v{coredns.version}" == "v1.15.0"
    lpp = load_system_spec(REPO / "images" / "local-path-provisioner")
    assert lpp.go[0].version == lpp.version == "v0.0.30"
    assert lpp.go[0].ldflags == "-X main.VERSION=v0.0.30"


def test_unhashed_requirements_are_refused(tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, MINIMAL + "debian: [python3-minimal]\npip: {}\n")
    (directory / "requirements.lock").write_text("# pinned\nsix==1.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert load_system_spec(directory).pip.prefix == "/opt/venv"
    (directory / "requirements.lock").write_text("six==1.16.0  # no hash\n")
    with pytest.raises(UserError, match=re.escape("`six==1.16.0` has no --hash=sha256:")):
        load_system_spec(directory)


def test_version_is_optional_when_the_tag_gives_it(tmp_path: Path) -> None:
    """Platform images carry no `version:`: their tag (the chart's appVersion) is given when they are built."""
    directory = spec_dir(tmp_path, "kind: system\nentrypoint: [/x]\ndebian: [a1]\n", "hub")
    spec = load_system_spec(directory)
    assert spec.version == ""
    assert published_tag(directory, app_version="0.2.0") == "qhub/hub:0.2.0"
    assert published_tag(spec_dir(tmp_path, MINIMAL + "debian: [a1]\n", "own"), app_version="0.2.0") == "qhub/own:1.0.0"
    with pytest.raises(UserError, match="no `version:`") as err:
        published_tag(directory)
    assert "--app-version" in err.value.hint
    assert image_config(spec, version="0.2.0").labels["org.opencontainers.image.version"] == "0.2.0"
    assert "org.opencontainers.image.version" not in image_config(spec).labels


def test_pip_sdists_and_home_tmp(tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, MINIMAL + "home: /tmp\ndebian: [python3]\npip: {sdists: [onetimepass]}\n")
    (directory / "requirements.lock").write_text("onetimepass==1.0.1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    spec = load_system_spec(directory)
    assert spec.pip.sdists == ("onetimepass",) and spec.home == "/tmp"
    (directory / "image.yaml").write_text(MINIMAL + "debian: [python3]\npip: {sdists: ['a b']}\n")
    with pytest.raises(UserError, match="'a b' is not a PyPI project name"):
        load_system_spec(directory)


def test_cli_reports_bad_specs_without_a_traceback(tmp_path: Path) -> None:
    from qhubctl.commands.images import app
    from typer.testing import CliRunner

    directory = spec_dir(tmp_path, "kind: system\nversion: 1.0.0\nentrypoint: [/x]\nuser: 0\ndebian: [a1]\n")
    result = CliRunner().invoke(app, ["build", str(directory), "--tag", "x/demo:1"])
    assert result.exit_code == 1
    assert "user: 0 is not a non-root uid" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["tag", str(directory.parent / "nowhere")])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_ca_bundle_is_every_certificate_of_ca_certificates_in_order(tmp_path: Path) -> None:
    """What update-ca-certificates would write: each certificate once, sorted by path, newline-terminated."""
    builder = LayerBuilder()
    assert not rootfs.add_ca_bundle(builder, tmp_path), "no certificates unpacked: no bundle"
    assert len(builder) == 0
    source = tmp_path / rootfs.CA_SOURCE / "mozilla"
    source.mkdir(parents=True)
    (source / "B_CA.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----")
    (source / "A_CA.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n")
    assert rootfs.add_ca_bundle(builder, tmp_path)
    bundle = builder.entries[rootfs.CA_BUNDLE].data
    assert bundle == (b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
                      b"-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")


def test_rootfs_directories_are_laid_in_order(tmp_path: Path) -> None:
    """`rootfs:` shares a sibling image's files: its directories go into the top layer in order, a later file
    replacing an earlier one; without the field the spec's own rootfs/ is used when there is one."""
    import gzip
    import io
    import tarfile

    from qhubctl.images.oci import BlobStore
    from qhubctl.images.system import _top_layer

    sibling = tmp_path / "cpu" / "rootfs" / "etc"
    sibling.mkdir(parents=True)
    (sibling / "shared.conf").write_text("sibling\n")
    (sibling / "mine.conf").write_text("sibling\n")
    directory = spec_dir(tmp_path, MINIMAL + "debian: [a1]\nrootfs: [../cpu/rootfs, rootfs]\n", "gpu")
    (directory / "rootfs" / "etc").mkdir(parents=True)
    (directory / "rootfs" / "etc" / "mine.conf").write_text("own\n")
    spec = load_system_spec(directory)
    assert spec.rootfs == [directory / "../cpu/rootfs", directory / "rootfs"]
    layer = _top_layer(spec, BlobStore(tmp_path / "store"))
    blob = BlobStore(tmp_path / "store").path(layer.digest).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        files = {name: tar.extractfile(name).read() for name in ("etc/shared.conf", "etc/mine.conf")}
    assert files == {"etc/shared.conf": b"sibling\n", "etc/mine.conf": b"own\n"}

    (directory / "image.yaml").write_text(MINIMAL + "debian: [a1]\n")
    assert load_system_spec(directory).rootfs == [directory / "rootfs"]
    (directory / "image.yaml").write_text(MINIMAL + "debian: [a1]\nrootfs: [../nowhere]\n")
    with pytest.raises(UserError, match=re.escape("rootfs: '../nowhere' is not a directory beside the spec")) as err:
        load_system_spec(directory)
    assert "rootfs: [../jupyterlab/rootfs, rootfs]" in err.value.hint


def test_shared_layer_takes_the_named_pins_alike_from_two_locks(tmp_path: Path) -> None:
    """Two locks pinning CUDA alike (comments and hash order aside) give the same shared entries, so the shared layer
    has the same key (and blob) in both images; the rest stays with each image."""
    h1, h2, h3 = ("1" * 64, "2" * 64, "3" * 64)
    lab = (f"--index-url https://pypi.org/simple\nnvidia-cublas-cu12==12.9.3.13 \\\n    --hash=sha256:{h2} \\\n"
           f"    --hash=sha256:{h1}\n    # via cupy-cuda12x\njupyterlab==4.5.0 \\\n    --hash=sha256:{h3}\n")
    worker = (f"--index-url https://pypi.org/simple\nNvidia_Cublas.cu12==12.9.3.13 --hash=sha256:{h1} "
              f"--hash=sha256:{h2}  # via -r cuda.in\ndistributed==2025.1.0 --hash=sha256:{h3}\n")
    options, shared, rest = pythonpkgs.split_lock(lab, ("nvidia-*",))
    assert options == ["--index-url https://pypi.org/simple"]
    assert shared == [f"nvidia-cublas-cu12==12.9.3.13 --hash=sha256:{h1} --hash=sha256:{h2}"]
    assert rest == [f"jupyterlab==4.5.0 --hash=sha256:{h3}"]
    _, shared_worker, rest_worker = pythonpkgs.split_lock(worker, ("nvidia-*",))
    assert shared_worker == shared
    assert rest_worker == [f"distributed==2025.1.0 --hash=sha256:{h3}"]


def test_shared_layer_errors_name_the_field(tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, MINIMAL + "debian: [python3]\npip: {shared_layer: [nvidia-*, cupy-cuda12x]}\n")
    (directory / "requirements.lock").write_text("nvidia-ml-py==13.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    spec = load_system_spec(directory)
    assert spec.pip.shared_layer == ("nvidia-*", "cupy-cuda12x")
    python = [SimpleNamespace(name="python3.11-minimal")]
    with pytest.raises(UserError, match=re.escape("pip.shared_layer: ['cupy-cuda12x'] match no package")):
        pythonpkgs.layers(spec, python, None, print)  # type: ignore[arg-type]
    (directory / "image.yaml").write_text(MINIMAL + "debian: [python3]\npip: {shared_layer: ['NVIDIA stuff']}\n")
    with pytest.raises(UserError, match="pip.shared_layer: 'NVIDIA stuff' is not a PyPI project name or pattern"):
        load_system_spec(directory)
