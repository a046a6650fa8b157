"""Pushing an image with the OCI distribution API (the registry HTTP API v2), standard library only.

- Auth: anonymous first; on 401 the `WWW-Authenticate` challenge decides: Basic sends the credentials, Bearer gets
  a token from the realm (with the credentials, if any) for `repository:<name>:pull,push`.
- Credentials: given explicitly, else $QHUB_REGISTRY_USERNAME/$QHUB_REGISTRY_PASSWORD, else the registry's entry
  in the Docker client config ($DOCKER_CONFIG/config.json or ~/.docker/config.json, `auth` field only).
- Blobs the registry already has (HEAD) are skipped; the others are uploaded in one PUT when small, in PATCH
  chunks when large; a failed upload starts a new upload session.
- Connection errors, 429 and 5xx are retried with exponential backoff.
- Plain HTTP is used for loopback registries (127.0.0.0/8, localhost, [::1]) or when the registry is given with
  `http://`; everything else is HTTPS. Credentials (Basic, or a bearer token) are never sent over plain HTTP to
  a host that is not loopback: such a push fails naming the registry instead.
- Upload locations the registry returns are followed only on the registry's own scheme and host (a relative one
  is resolved against it); any other target fails the push before a byte is sent there.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from qhubctl.errors import QHubError, UserError
from qhubctl.images.oci import MEDIA_MANIFEST, Image

CHUNK_SIZE = 8 << 20
MONOLITHIC_MAX = 16 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class RegistryError(QHubError):
    """The registry refused or failed a request; `status` is the HTTP status, if there was an answer."""

    def __init__(self, message: str, *, hint: str = "", status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # host[:port]
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "[::1]") or name.startswith("127.")


def may_carry_credentials(url: urllib.parse.SplitResult) -> bool:
    """Credentials go over HTTPS, or over plain HTTP to this machine only (nobody on the network sees them)."""
    return url.scheme == "https" or (url.scheme == "http" and _is_loopback(url.netloc))


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit, so host and host:443 compare equal."""
    try:
        port = url.port
    except ValueError:
        port = -1  # a malformed port matches nothing
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, (url.hostname or "").lower(), port if port is not None else default


def parse_target(registry: str, tag: str) -> Target:
    """`registry` is host[:port][/namespace] (optionally with http:// or https://); `tag` is name[:tag]."""
    scheme = ""
    if "://" in registry:
        scheme, registry = registry.split("://", 1)
        if scheme not in ("http", "https"):
            raise UserError(f"registry {registry!r}: scheme must be http or https")
    registry = registry.strip("/")
    host, _, namespace = registry.partition("/")
    if not host:
        raise UserError("empty registry address")
    scheme = scheme or ("http" if _is_loopback(host) else "https")
    name, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    repository = f"{namespace}/{name}" if namespace else name
    if not _NAME_RE.match(repository):
        raise UserError(f"{repository!r} is not a valid repository name (lower case, digits, . _ - and /)")
    if not _TAG_RE.match(version):
        raise UserError(f"{version!r} is not a valid tag")
    return Target(scheme, host, repository, version)


def docker_config_credentials(host: str) -> tuple[str, str] | None:
    config_dir = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    path = config_dir / "config.json"
    if not path.is_file():
        return None
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split `Bearer realm="...",service="..."` into ("bearer", {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    params.update({k.lower(): v for k, v in re.findall(r'(\w+)=([^",\s]+)', rest) if k.lower() not in params})
    return scheme.lower(), params


@dataclass
class PushReport:
    target: Target
    digest: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    requests: int = 0
    retries: int = 0


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


class RegistryClient:
    def __init__(
        self,
        target: Target,
        *,
        username: str | None = None,
        password: str | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 120.0,
        chunk_size: int = CHUNK_SIZE,
        monolithic_max: int = MONOLITHIC_MAX,
    ) -> None:
        self.target = target
        if username is None and os.environ.get("QHUB_REGISTRY_USERNAME"):
            username = os.environ["QHUB_REGISTRY_USERNAME"]
            password = os.environ.get("QHUB_REGISTRY_PASSWORD", "")
        if username is None:
            creds = docker_config_credentials(target.host)
            if creds:
                username, password = creds
        self.username, self.password = username, password
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.chunk_size, self.monolithic_max = chunk_size, monolithic_max
        self._auth: str | None = None
        self.requests = 0
        self.retried = 0

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> urllib.parse.SplitResult:
        if path_or_url.startswith(("http://", "https://")):
            return urllib.parse.urlsplit(path_or_url)
        return urllib.parse.urlsplit(f"{self.target.scheme}://{self.target.host}{path_or_url}")

    def _connection(self, url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        if url.scheme == "https":
            return http.client.HTTPSConnection(url.netloc, timeout=self.timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(url.netloc, timeout=self.timeout)

    def _send(self, method: str, url: urllib.parse.SplitResult, headers: dict[str, str],
              body: Callable[[], bytes | BinaryIO] | None) -> _Response:
        conn = self._connection(url)
        try:
            path = url.path + (f"?{url.query}" if url.query else "")
            conn.request(method, path, body=body() if body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.requests += 1
            return _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def request(self, method: str, path_or_url: str, *, headers: dict[str, str] | None = None,
                body: Callable[[], bytes | BinaryIO] | None = None, ok: tuple[int, ...] = (200,)) -> _Response:
        """One API call with auth and retries. `body` is a factory so a retry can send it again."""
        url = self._url(path_or_url)
        attempt = 0
        authed = False
        while True:
            hdrs = dict(headers or {})
            if self._auth and self._same_host(url):
                self._check_credentials_channel(url)
                hdrs["Authorization"] = self._auth
            try:
                resp = self._send(method, url, hdrs, body)
            except (OSError, http.client.HTTPException) as exc:
                if attempt >= self.retries:
                    raise RegistryError(f"{method} {url.geturl()} failed after {attempt + 1} tries: {exc}") from None
                attempt += 1
                self.retried += 1
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 8.0))
                continue
            if resp.status == 401 and not authed and self._same_host(url):
                authed = True
                self._authenticate(resp.headers.get("www-authenticate", ""))
                continue
            if resp.status in _RETRY_STATUS and attempt < self.retries:
                attempt += 1
                self.retried += 1
                wait = resp.headers.get("retry-after", "")
                delay = float(wait) if wait.isdigit() else self.backoff * 2 ** (attempt - 1)
                time.sleep(min(delay, 8.0))
                continue
            if resp.status not in ok:
                raise RegistryError(
                    f"{method} {url.geturl()}: HTTP {resp.status} {self._error_text(resp)}",
                    hint="check the registry address, the credentials and that the account may push there",
                    status=resp.status,
                )
            return resp

    def _same_host(self, url: urllib.parse.SplitResult) -> bool:
        return _origin(url) == _origin(self._url("/"))

    def _check_credentials_channel(self, url: urllib.parse.SplitResult) -> None:
        if not may_carry_credentials(url):
            raise RegistryError(
                f"refusing to send registry credentials to {url.scheme}://{url.netloc} over plain HTTP: anyone on "
                "the network between here and there could read them",
                hint=f"give the registry as https://{url.netloc} (or push to a registry on this machine's loopback)",
            )

    @staticmethod
    def _error_text(resp: _Response) -> str:
        try:
            errors = json.loads(resp.body).get("errors") or []
            return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except ValueError:
            return resp.body[:200].decode(errors="replace")

    def _authenticate(self, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        basic = None
        if self.username is not None:
            basic = "Basic " + base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        if scheme == "basic":
            if basic is not None:
                self._check_credentials_channel(self._url("/"))
            if basic is None:
                raise RegistryError(
                    f"{self.target.host} asks for a user name and password",
                    hint="set QHUB_REGISTRY_USERNAME and QHUB_REGISTRY_PASSWORD, or `docker login` to it",
                )
            self._auth = basic
        elif scheme == "bearer":
            realm = params.get("realm")
            if not realm:
                raise RegistryError(f"{self.target.host}: bearer challenge without a realm: {challenge!r}")
            query = {"scope": f"repository:{self.target.repository}:pull,push"}
            if params.get("service"):
                query["service"] = params["service"]
            url = urllib.parse.urlsplit(realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query))
            if url.scheme not in ("http", "https") or not url.netloc:
                raise RegistryError(f"{self.target.host}: bearer realm {realm!r} is not an http(s) URL")
            if basic:
                self._check_credentials_channel(url)
            headers = {"Authorization": basic} if basic else {}
            resp = self._send("GET", url, headers, None)
            if resp.status != 200:
                raise RegistryError(f"token service {realm} answered HTTP {resp.status}",
                                    hint="check the registry credentials")
            data = json.loads(resp.body)
            token = data.get("token") or data.get("access_token")
            if not token:
                raise RegistryError(f"token service {realm} returned no token")
            self._auth = f"Bearer {token}"
        else:
            raise RegistryError(f"{self.target.host}: unsupported auth challenge {challenge!r}")

    # -- API --------------------------------------------------------------------------------------------------

    def ping(self) -> None:
        self.request("GET", "/v2/")

    def has_blob(self, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{self.target.repository}/blobs/{digest}", ok=(200, 404))
        return resp.status == 200

    def _start_upload(self) -> str:
        resp = self.request("POST", f"/v2/{self.target.repository}/blobs/uploads/", ok=(202,),
                            headers={"Content-Length": "0"})
        location = resp.headers.get("location")
        if not location:
            raise RegistryError("registry started an upload without a Location")
        return self._upload_location(location)

    def _upload_location(self, location: str) -> str:
        """An upload Location as an absolute URL on the registry's own scheme and host; anything else is refused.
        A relative Location is resolved against the registry."""
        base = f"{self.target.scheme}://{self.target.host}/"
        url = urllib.parse.urlsplit(urllib.parse.urljoin(base, location))
        if not self._same_host(url):
            raise RegistryError(
                f"{self.target.host} sent an upload Location on {url.scheme}://{url.netloc}, not on "
                f"{self.target.scheme}://{self.target.host}; refusing to send the image (and credentials) there",
                hint="check the registry's public URL setting (a proxy in front of it may rewrite the scheme or host)",
            )
        return url.geturl()

    def _with_digest(self, location: str, digest: str) -> str:
        url = self._url(location)
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True) + [("digest", digest)]
        return urllib.parse.urlunsplit((url.scheme, url.netloc, url.path, urllib.parse.urlencode(query), ""))

    def upload_blob(self, path: Path, digest: str, size: int) -> None:
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                if size <= self.monolithic_max:
                    self._upload_monolithic(path, digest, size)
                else:
                    self._upload_chunked(path, digest, size)
                return
            except RegistryError as exc:
                if exc.status in (400, 401, 403, 405):  # refused, not broken: another session fares no better
                    raise
                last = exc  # a broken session (lost, or the digest did not match): start a new one
                self.retried += 1
        raise RegistryError(f"uploading {digest} failed: {last}")

    def _upload_monolithic(self, path: Path, digest: str, size: int) -> None:
        location = self._start_upload()
        self.request(
            "PUT", self._with_digest(location, digest), ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=lambda: path.read_bytes(),
        )

    def _upload_chunked(self, path: Path, digest: str, size: int) -> None:
        location = self._start_upload()
        offset = 0
        with open(path, "rb") as fh:
            while offset < size:
                fh.seek(offset)
                chunk = fh.read(self.chunk_size)
                end = offset + len(chunk) - 1
                resp = self.request(
                    "PATCH", location, ok=(202,),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(chunk)),
                        "Content-Range": f"{offset}-{end}",
                    },
                    body=lambda c=chunk: c,
                )
                location = self._upload_location(resp.headers.get("location") or location)
                offset = end + 1
        self.request("PUT", self._with_digest(location, digest), ok=(201,), headers={"Content-Length": "0"})

    def put_manifest(self, reference: str, data: bytes, media_type: str = MEDIA_MANIFEST) -> str:
        resp = self.request(
            "PUT", f"/v2/{self.target.repository}/manifests/{reference}", ok=(200, 201),
            headers={"Content-Type": media_type, "Content-Length": str(len(data))}, body=lambda: data,
        )
        return resp.headers.get("docker-content-digest", "")

    def manifest_digest(self, reference: str) -> str | None:
        resp = self.request("HEAD", f"/v2/{self.target.repository}/manifests/{reference}", ok=(200, 404),
                            headers={"Accept": MEDIA_MANIFEST})
        return resp.headers.get("docker-content-digest") if resp.status == 200 else None


def push(image: Image, target: Target, *, client: RegistryClient | None = None,
         log: Callable[[str], None] = lambda msg: None) -> PushReport:
    """Upload what the registry lacks, then the manifest under the tag."""
    client = client or RegistryClient(target)
    report = PushReport(target, image.manifest_digest)
    for digest, size in image.blobs():
        if client.has_blob(digest):
            report.skipped.append(digest)
            continue
        log(f"uploading {digest[:19]} ({size} bytes)")
        client.upload_blob(image.store.path(digest), digest, size)
        report.uploaded.append(digest)
        report.bytes_uploaded += size
    returned = client.put_manifest(target.tag, image.manifest)
    if returned and returned != image.manifest_digest:
        raise RegistryError(f"registry stored the manifest as {returned}, expected {image.manifest_digest}")
    report.requests, report.retries = client.requests, client.retried
    return report
