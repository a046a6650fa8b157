"""qhubctl's own hardening: kubeconfigs private from the first byte, the registry client keeping credentials off
plain HTTP and off foreign upload locations, the namespace's Pod Security labels, the EKS API's public ranges.

The registry tests talk to real HTTP servers on this machine: a registry that is misconfigured or hostile (it
asks for credentials over plain HTTP on a network address, or sends uploads elsewhere), and the place it points
at. They assert what reached those servers, not only what the client said.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qhubctl.config import parse_config
from qhubctl.errors import UserError
from qhubctl.images import registry
from qhubctl.podsecurity import namespace_labels, namespaces
from qhubctl.private import write_private
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit


# -- kubeconfig files ------------------------------------------------------------------------------------------


def test_private_file_is_0600_even_with_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private(tmp_path / "demo.kubeconfig", "apiVersion: v1\n")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "apiVersion: v1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.kubeconfig"], "no temporary file left behind"


def test_private_file_replaces_a_readable_one_without_widening(tmp_path: Path) -> None:
    """An older kubeconfig left world-readable is replaced by a new 0600 inode: a reader holding the old file open
    keeps reading the old bytes, never the new credentials."""
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    with path.open() as reader:
        before = path.stat().st_ino
        write_private(path, "new-credentials")
        assert reader.read() == "old"
    assert path.stat().st_ino != before
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == "new-credentials"


def test_private_file_in_a_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        write_private(tmp_path / "nope" / "kubeconfig", "x")


# -- registry client -------------------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """One HTTP server's requests, answered by `answer(handler) -> (status, headers)` set per server."""

    def do_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        status, headers = self.server.answer(self)  # type: ignore[attr-defined]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    started: list[ThreadingHTTPServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def serve(started: list[ThreadingHTTPServer], answer, bind: str = "127.0.0.1") -> ThreadingHTTPServer:  # noqa: ANN001
    server = ThreadingHTTPServer((bind, 0), Recorder)
    server.seen = []  # type: ignore[attr-defined]
    server.answer = answer  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started.append(server)
    return server


def network_address() -> str:
    """This machine's address on its network (not loopback): where a remote registry would be."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = s.getsockname()[0]
    assert not address.startswith("127."), "this machine has no network address besides loopback"
    return address


def basic_realm(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str]]:
    if handler.headers.get("Authorization"):
        return 200, {}
    return 401, {"WWW-Authenticate": 'Basic realm="registry"'}


def test_credentials_never_go_over_plain_http_to_a_network_host(servers: list[ThreadingHTTPServer]) -> None:
    server = serve(servers, basic_realm, bind="0.0.0.0")
    host = f"{network_address()}:{server.server_port}"
    client = registry.RegistryClient(registry.parse_target(f"http://{host}", "qhub/lab:1"),
                                     username="alice", password="s3cret")
    with pytest.raises(registry.RegistryError, match="refusing to send registry credentials") as info:
        client.ping()
    assert f"https://{host}" in info.value.hint
    assert server.seen, "the anonymous request reached the registry"
    assert not [h for _, _, h, _ in server.seen if "Authorization" in h], "no credentials went over the wire"


def test_bearer_realm_on_plain_http_gets_no_credentials(servers: list[ThreadingHTTPServer]) -> None:
    tokens = serve(servers, lambda h: (200, {}), bind="0.0.0.0")
    realm = f"http://{network_address()}:{tokens.server_port}/token"
    reg = serve(servers, lambda h: (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}))
    client = registry.RegistryClient(registry.parse_target(f"127.0.0.1:{reg.server_port}", "qhub/lab:1"),
                                     username="alice", password="s3cret")
    with pytest.raises(registry.RegistryError, match="refusing to send registry credentials"):
        client.ping()
    assert tokens.seen == [], "the token service on plain HTTP was never asked with the password"


def test_loopback_registry_over_http_gets_credentials(servers: list[ThreadingHTTPServer]) -> None:
    """The local cluster's registry on 127.0.0.1 is plain HTTP: credentials stay on this machine, so they go."""
    server = serve(servers, basic_realm)
    client = registry.RegistryClient(registry.parse_target(f"127.0.0.1:{server.server_port}", "qhub/lab:1"),
                                     username="alice", password="s3cret")
    client.ping()
    assert server.seen[-1][2]["Authorization"].startswith("Basic ")


def upload_registry(location: str):  # noqa: ANN201
    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str]]:
        if handler.command == "POST":
            return 202, {"Location": location}
        return 201, {}
    return answer


@pytest.mark.parametrize("where", ["other-port", "https-same-host", "other-host"])
def test_upload_location_elsewhere_is_refused(servers: list[ThreadingHTTPServer], tmp_path: Path,
                                              where: str) -> None:
    elsewhere = serve(servers, lambda h: (201, {}))
    location = {
        "other-port": f"http://127.0.0.1:{elsewhere.server_port}/v2/qhub/lab/blobs/uploads/1",
        "https-same-host": "https://127.0.0.1:{port}/v2/qhub/lab/blobs/uploads/1",
        "other-host": f"http://{network_address()}:{elsewhere.server_port}/upload",
    }[where]
    reg = serve(servers, lambda h: (0, {}))
    reg.answer = upload_registry(location.format(port=reg.server_port))  # type: ignore[attr-defined]
    blob = tmp_path / "blob"
    blob.write_bytes(b"layer")
    client = registry.RegistryClient(registry.parse_target(f"127.0.0.1:{reg.server_port}", "qhub/lab:1"), retries=0)
    with pytest.raises(registry.RegistryError, match="refusing to send the image"):
        client.upload_blob(blob, "sha256:" + "0" * 64, 5)
    assert elsewhere.seen == [], "nothing was sent to the foreign location"
    assert [m for m, *_ in reg.seen] == ["POST"]


def test_relative_upload_location_is_followed_on_the_registry(servers: list[ThreadingHTTPServer],
                                                              tmp_path: Path) -> None:
    reg = serve(servers, upload_registry("/v2/qhub/lab/blobs/uploads/abc?state=1"))
    blob = tmp_path / "blob"
    blob.write_bytes(b"layer")
    client = registry.RegistryClient(registry.parse_target(f"127.0.0.1:{reg.server_port}", "qhub/lab:1"))
    client.upload_blob(blob, "sha256:" + "0" * 64, 5)
    (_, _, _, _), (method, path, _, body) = reg.seen
    assert method == "PUT" and path.startswith("/v2/qhub/lab/blobs/uploads/abc?state=1&digest=sha256%3A")
    assert body == b"layer"


# -- namespace Pod Security labels --------------------------------------------------------------------------------


def _config(storage: dict[str, object]) -> object:
    return parse_config({"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"},
                         "auth": {"type": "dummy", "users": {"demo": {}}}, "storage": storage}, environ={})


def test_namespace_enforces_restricted_without_the_nfs_server() -> None:
    labels = namespace_labels(_config({"type": "existing", "storage_class": "rwx"}))
    assert labels == {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/audit-version": "latest",
    }


def test_namespace_with_the_nfs_server_still_warns_at_restricted() -> None:
    labels = namespace_labels(_config({"type": "nfs", "size": "10Gi"}))
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_nfs_server_in_its_own_namespace_leaves_the_deployment_restricted() -> None:
    cfg = _config({"type": "nfs", "size": "10Gi", "server_namespace": "qhub-nfs"})
    found = namespaces(cfg)
    assert found["qhub"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert found["qhub-nfs"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert chart_values(cfg)["nfs"]["server"] == {"namespace": "qhub-nfs"}
    same = namespaces(_config({"type": "nfs", "size": "10Gi", "server_namespace": "qhub"}))
    assert list(same) == ["qhub"] and same["qhub"]["pod-security.kubernetes.io/enforce"] == "privileged"
