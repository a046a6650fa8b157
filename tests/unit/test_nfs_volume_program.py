"""The nfs subchart's volume Job program (charts/qhub/charts/nfs/files/nfs_volume.py) against a fake API server: what
it does with no volume, with one it made before, with one an earlier install left behind, and with one it must not
touch."""

from __future__ import annotations

import copy
import datetime
import importlib.util
import ipaddress
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.unit

PROGRAM = Path(__file__).resolve().parents[2] / "charts" / "qhub" / "charts" / "nfs" / "files" / "nfs_volume.py"
NAME = "qhub-qhub-shared"
PATH = f"/api/v1/persistentvolumes/{NAME}"
OWNER = {"meta.helm.sh/release-name": "qhub", "meta.helm.sh/release-namespace": "qhub"}


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nfs_volume", PROGRAM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nv = load()


def wanted(server: str = "") -> dict[str, Any]:
    """The volume as the chart hands it to the Job (QHUB_NFS_PV), optionally with the server filled in."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "nfs-0.2.0"},
                     "annotations": dict(OWNER)},
        "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "mountOptions": ["nfsvers=4.1", "nosuid", "nodev"],
                 "claimRef": {"namespace": "qhub", "name": "qhub-shared"},
                 "nfs": {"server": server, "path": "/"}},
    }


def live(server: str, phase: str, **annotations: str) -> dict[str, Any]:
    """A volume as the API server returns it: bound once (claimRef with a uid), older labels and options."""
    pv = wanted(server)
    pv["metadata"].update(resourceVersion="7", labels={"helm.sh/chart": "nfs-0.1.0", "team": "data"},
                          annotations={"pv.kubernetes.io/bound-by-controller": "yes", **annotations})
    pv["spec"]["claimRef"] = {"namespace": "qhub", "name": "qhub-shared", "uid": "old-uid", "kind":
                              "PersistentVolumeClaim"}
    pv["spec"]["mountOptions"] = ["nfsvers=4.0"]
    pv["spec"]["volumeMode"] = "Filesystem"
    pv["status"] = {"phase": phase}
    return pv


class FakeApi:
    """Answers GET from `objects`, records every request; `fail` holds errors to raise first, one per request."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None, fail: list[Exception] | None = None) -> None:
        self.objects = objects or {}
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.fail = fail or []

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        self.calls.append((method, path, copy.deepcopy(body)))
        if self.fail:
            raise self.fail.pop(0)
        if method == "GET":
            return copy.deepcopy(self.objects.get(path))
        if method == "DELETE":
            self.objects.pop(path, None)
        else:
            assert body is not None
            self.objects[f"/api/v1/persistentvolumes/{body['metadata']['name']}"] = body
        return {}

    def writes(self) -> list[str]:
        return [m for m, _, _ in self.calls if m != "GET"]


def no_wait(path: str) -> None:
    pass


def test_no_volume_yet_is_created_with_the_services_address() -> None:
    api = FakeApi()
    assert nv.reconcile(api, wanted("10.96.0.7"), no_wait) == "created"
    assert api.writes() == ["POST"]
    made = api.objects[PATH]
    assert made == wanted("10.96.0.7") and made["metadata"]["annotations"] == OWNER


def test_a_bound_volume_of_the_same_address_is_brought_up_to_date_and_keeps_its_claim() -> None:
    api = FakeApi({PATH: live("10.96.0.7", "Bound")})
    assert nv.reconcile(api, wanted("10.96.0.7"), no_wait) == "updated"
    assert api.writes() == ["PUT"]
    put = api.objects[PATH]
    assert put["metadata"]["resourceVersion"] == "7", "the update is conditional on what was read"
    assert put["metadata"]["labels"] == {"helm.sh/chart": "nfs-0.2.0", "team": "data",
                                         "app.kubernetes.io/managed-by": "Helm"}
    assert put["metadata"]["annotations"] == {"pv.kubernetes.io/bound-by-controller": "yes", **OWNER}
    assert put["spec"]["claimRef"]["uid"] == "old-uid", "the claim that holds it stays bound"
    assert put["spec"]["mountOptions"] == ["nfsvers=4.1", "nosuid", "nodev"]
    assert put["spec"]["volumeMode"] == "Filesystem" and "status" not in put


def test_a_released_volume_of_the_same_address_is_freed_for_the_claim() -> None:
    api = FakeApi({PATH: live("10.96.0.7", "Released")})
    assert nv.reconcile(api, wanted("10.96.0.7"), no_wait) == "updated"
    assert api.objects[PATH]["spec"]["claimRef"] == {"namespace": "qhub", "name": "qhub-shared"}


def test_a_left_behind_volume_of_an_old_address_is_created_again() -> None:
    api = FakeApi({PATH: live("10.96.0.99", "Released")})
    waited = []
    done = nv.reconcile(api, wanted("10.96.0.7"), waited.append)
    assert done.startswith("created again") and "10.96.0.99" in done
    assert api.writes() == ["DELETE", "POST"] and waited == [PATH]
    assert api.objects[PATH] == wanted("10.96.0.7")


def test_a_claimed_volume_of_an_old_address_is_left_alone_with_the_way_out() -> None:
    api = FakeApi({PATH: live("10.96.0.99", "Bound")})
    with pytest.raises(nv.Stop) as stop:
        nv.reconcile(api, wanted("10.96.0.7"), no_wait)
    assert api.writes() == []
    message = str(stop.value)
    assert "10.96.0.99" in message and "10.96.0.7" in message and "qhub/qhub-shared" in message
    assert "delete the claim" in message


def test_a_volume_of_another_release_is_refused() -> None:
    api = FakeApi({PATH: live("10.96.0.7", "Bound", **{"meta.helm.sh/release-name": "other"})})
    with pytest.raises(nv.Stop, match="another release.*release-name=other"):
        nv.reconcile(api, wanted("10.96.0.7"), no_wait)
    assert api.writes() == []


def test_failures_are_retried_until_the_deadline_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nv.time, "sleep", lambda s: None)
    api = FakeApi(fail=[nv.ApiError(403, "forbidden"), OSError("connection refused")])
    assert nv.retry("making it", lambda: nv.reconcile(api, wanted("10.96.0.7"), no_wait),
                    deadline=nv.time.monotonic() + 60) == "created"
    with pytest.raises(nv.Stop, match="making it: HTTP 403: forbidden"):
        nv.retry("making it", lambda: FakeApi(fail=[nv.ApiError(403, "forbidden")]).request("GET", PATH),
                 deadline=0.0)


def test_a_stop_is_not_retried() -> None:
    calls = []

    def stop() -> None:
        calls.append(1)
        raise nv.Stop("no")

    with pytest.raises(nv.Stop):
        nv.retry("x", stop, deadline=nv.time.monotonic() + 60)
    assert calls == [1]


def test_the_address_is_ipv4_first(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::7", 2049, 0, 0)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.96.0.7", 2049))]
    monkeypatch.setattr(nv.socket, "getaddrinfo", lambda host, port, type: answers)
    assert nv.resolve("qhub-nfs.qhub.svc") == "10.96.0.7"
    monkeypatch.setattr(nv.socket, "getaddrinfo", lambda host, port, type: answers[:1])
    assert nv.resolve("qhub-nfs.qhub.svc") == "fd00::7"


def run_main(monkeypatch: pytest.MonkeyPatch, api: FakeApi, volumes: Any = None) -> int:
    monkeypatch.setenv("QHUB_NFS_SERVICE", "qhub-nfs.qhub.svc")
    monkeypatch.setenv("QHUB_NFS_PV", json.dumps(wanted() if volumes is None else volumes))
    monkeypatch.setenv("QHUB_NFS_TIMEOUT", "5")
    monkeypatch.setattr(nv, "resolve", lambda host: "10.96.0.7")
    monkeypatch.setattr(nv.Api, "in_cluster", classmethod(lambda cls: api))
    return int(nv.main())


def test_main_makes_the_volume_and_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    assert run_main(monkeypatch, api) == 0
    assert api.objects[PATH]["spec"]["nfs"] == {"server": "10.96.0.7", "path": "/"}
    out = capsys.readouterr().out
    assert "has the address 10.96.0.7" in out and f"PersistentVolume {NAME} created: nfs 10.96.0.7:/" in out


def test_main_makes_each_volume_of_a_list(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The chart hands a list: the release's shared volume and the Dask clusters' one, each with the address."""
    second = wanted()
    second["metadata"]["name"] = "qhub-dask-" + NAME
    second["spec"]["claimRef"] = {"namespace": "qhub-dask", "name": "qhub-shared"}
    api = FakeApi()
    assert run_main(monkeypatch, api, [wanted(), second]) == 0
    made = api.objects[f"/api/v1/persistentvolumes/qhub-dask-{NAME}"]
    assert made["spec"]["nfs"] == {"server": "10.96.0.7", "path": "/"} == api.objects[PATH]["spec"]["nfs"]
    assert made["spec"]["claimRef"]["namespace"] == "qhub-dask"
    out = capsys.readouterr().out
    assert f"PersistentVolume {NAME} created" in out and f"PersistentVolume qhub-dask-{NAME} created" in out


def test_main_ends_with_the_reason(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi({PATH: live("10.96.0.99", "Bound")})
    assert run_main(monkeypatch, api) == 1
    err = capsys.readouterr().err
    assert err.startswith("nfs-volume: PersistentVolume") and "Traceback" not in err


def test_program_uses_the_standard_library_only() -> None:
    """It runs in the NFS server's image, whose Python has nothing but Debian's standard library."""
    text = PROGRAM.read_text()
    imports = {line.split()[1].split(".")[0] for line in text.splitlines() if line.startswith(("import ", "from "))}
    assert imports and imports <= set(sys.stdlib_module_names) | {"__future__"}, imports


# --- the program end to end against an HTTPS stand-in for the API server --------------------------------------
class FakeApiServer(ThreadingHTTPServer):
    """PersistentVolumes in a dict, behind TLS and a bearer token, the way the API server answers."""

    def __init__(self, cert: Path, key: Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), FakeApiHandler)
        self.token, self.volumes, self.seen = token, {}, []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)


class FakeApiHandler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self) -> None:
        self.server.seen.append((self.command, self.path))
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self.answer(401, {"kind": "Status", "message": "Unauthorized"})
        name = self.path.rsplit("/", 1)[-1]
        if self.command == "GET":
            pv = self.server.volumes.get(name)
            return self.answer(200, pv) if pv else self.answer(404, {"kind": "Status", "message": "not found"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["metadata"]["name"] in self.server.volumes:
            message = f"persistentvolumes \"{body['metadata']['name']}\" already exists"
            return self.answer(409, {"kind": "Status", "message": message})
        self.server.volumes[body["metadata"]["name"]] = body
        return self.answer(201, body)

    do_GET = do_POST = handle_any


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, the certificate being its own CA (as ca.crt for the program)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "ca.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """The stand-in API server, and the pod's view of it: KUBERNETES_SERVICE_HOST/PORT and a ServiceAccount folder
    with the token and the CA."""
    cert, key = self_signed(tmp_path)
    (tmp_path / "token").write_text("sa-token\n")
    server = FakeApiServer(cert, key, "sa-token")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(nv, "ACCOUNT", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.server_address[1]))
    yield server
    server.shutdown()
    server.server_close()


def test_the_program_makes_the_volume_through_the_api(api_server: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QHUB_NFS_SERVICE", "qhub-nfs.qhub.svc")
    monkeypatch.setenv("QHUB_NFS_PV", json.dumps(wanted()))
    monkeypatch.setattr(nv, "resolve", lambda host: "10.96.0.7")
    assert nv.main() == 0, capsys.readouterr().err
    assert api_server.seen == [("GET", PATH), ("POST", "/api/v1/persistentvolumes")]
    assert api_server.volumes[NAME] == wanted("10.96.0.7")


def test_the_apis_refusal_is_named(api_server: FakeApiServer) -> None:
    api = nv.Api.in_cluster()
    assert api.request("GET", PATH) is None, "404 is no volume"
    api.request("POST", "/api/v1/persistentvolumes", wanted("10.96.0.7"))
    with pytest.raises(nv.ApiError, match=f'HTTP 409: persistentvolumes "{NAME}" already exists'):
        api.request("POST", "/api/v1/persistentvolumes", wanted("10.96.0.7"))
    api.token = "wrong"
    with pytest.raises(nv.ApiError, match="HTTP 401: Unauthorized"):
        api.request("GET", PATH)


def test_a_volume_the_api_server_calls_invalid_is_not_retried() -> None:
    api = FakeApi(fail=[nv.ApiError(422, "spec.capacity: Required value")])
    with pytest.raises(nv.Stop, match="refuses the volume the chart describes: HTTP 422: spec.capacity"):
        nv.retry("making it", lambda: nv.reconcile(api, wanted("10.96.0.7"), no_wait),
                 deadline=nv.time.monotonic() + 60)
    assert len(api.calls) == 1


@pytest.mark.parametrize("pv", [None, "not json", json.dumps({"spec": {}})])
def test_an_incomplete_environment_is_named(pv: str | None, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QHUB_NFS_SERVICE", "qhub-nfs.qhub.svc")
    if pv is None:
        monkeypatch.delenv("QHUB_NFS_PV", raising=False)
    else:
        monkeypatch.setenv("QHUB_NFS_PV", pv)
    assert nv.main() == 1
    err = capsys.readouterr().err
    assert "the Job's environment is incomplete" in err and "QHUB_NFS_PV" in err and "Traceback" not in err


def test_no_token_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nv, "ACCOUNT", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(nv.Stop, match="no ServiceAccount token or CA.*automountServiceAccountToken"):
        nv.Api.in_cluster()
