"""A real Jupyter client for tests on the real node: a user's hub token, a kernel in the user's own server, code run
in it over the kernel's websocket (the Jupyter messaging protocol, as JupyterLab speaks it)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket


def xsrf(session: requests.Session, path: str = "/hub") -> str:
    """The `_xsrf` cookie the hub set for `path`: JupyterHub wants it echoed in X-XSRFToken on cookie-authenticated
    API calls."""
    return next(c.value for c in session.cookies if c.name == "_xsrf" and (c.path or "/").startswith(path))


def user_token(session: requests.Session, url: str, user: str, note: str = "node test", expires_in: int = 3600,
               scopes: list[str] | None = None) -> str:
    """A token for `user`, created through the hub's REST API with the user's own login session (what the hub's
    token page does); `scopes` narrows it (default: the user's own access, as the page grants)."""
    body: dict[str, Any] = {"note": note, "expires_in": expires_in, **({"scopes": scopes} if scopes else {})}
    answer = session.post(f"{url}hub/api/users/{user}/tokens", json=body,
                          headers={"X-XSRFToken": xsrf(session), "Referer": f"{url}hub/token"}, timeout=30)
    assert answer.status_code in (200, 201), f"token request answered {answer.status_code}: {answer.text[:300]}"
    return str(answer.json()["token"])


class KernelError(AssertionError):
    """Code run in the kernel raised: carries the kernel's own traceback."""


@dataclass
class Kernel:
    """A kernel in `user`'s running server, reached through the hub's proxy with the user's token."""

    url: str  # the platform's base URL, ending in "/"
    user: str
    token: str
    spec: str = "python3"  # the kernel spec's name, as /api/kernelspecs lists it
    kernel_id: str = ""
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _ws: websocket.WebSocket | None = None

    @property
    def _api(self) -> str:
        return f"{self.url}user/{self.user}/api"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start(self) -> Kernel:
        answer = requests.post(f"{self._api}/kernels", json={"name": self.spec}, headers=self._headers, timeout=60)
        assert answer.status_code == 201, f"kernel start answered {answer.status_code}: {answer.text[:300]}"
        self.kernel_id = answer.json()["id"]
        ws_url = self._api.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._ws = websocket.create_connection(f"{ws_url}/kernels/{self.kernel_id}/channels"
                                               f"?session_id={self.session_id}", header=self._headers, timeout=30)
        return self

    def run(self, code: str, timeout: float = 300) -> str:
        """Run `code`; return what it printed. A KernelError carries the traceback if it raised."""
        assert self._ws is not None, "start() the kernel first"
        msg_id = uuid.uuid4().hex
        self._ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.user,
                       "session": self.session_id, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        out: list[str] = []
        error: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        while True:
            self._ws.settimeout(max(1.0, deadline - time.monotonic()))
            try:
                msg = json.loads(self._ws.recv())
            except websocket.WebSocketTimeoutException:
                raise AssertionError(f"the kernel did not finish within {timeout:.0f}s; printed so far:\n"
                                     + "".join(out)) from None
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = content
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error:
            raise KernelError(f"{error['ename']}: {error['evalue']}\n" + "\n".join(error["traceback"])
                              + "\nprinted:\n" + "".join(out))
        return "".join(out)

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self.kernel_id:
            requests.delete(f"{self._api}/kernels/{self.kernel_id}", headers=self._headers, timeout=30)
            self.kernel_id = ""
