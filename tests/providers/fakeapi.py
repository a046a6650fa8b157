"""A loopback HTTP server for contract tests: a handler function answers each request, and every request that
breaks the API's published contract is answered 400 and recorded in `violations`, so the test fails on it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class Violation(Exception):
    """The request does not fit the contract."""


Reply = tuple[int, Any]


@dataclass
class FakeAPI:
    handle: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                request = Request(self.command, split.path, parse_qs(split.query), body, dict(self.headers))
                api.requests.append(request)
                try:
                    status, payload = api.handle(request)
                except Violation as exc:
                    api.violations.append(f"{self.command} {split.path}: {exc}")
                    status, payload = 400, {"error": {"code": 400, "message": f"contract violation: {exc}"}}
                raw_text = isinstance(payload, str)  # a plain-text reply (e.g. a kubeconfig in YAML)
                data = b"" if payload is None else payload.encode() if raw_text else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/yaml" if raw_text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
