"""AWS API emulator (moto in server mode) on loopback for the provider tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)


def start_moto(tmp: Path, host: str = "127.0.0.1", **env: str) -> Emulator:
    """A moto server on `host` (loopback, or an address pods reach, e.g. the real node's bridge)."""
    port = _free_port(host)
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        pytest.fail("moto_server not found: pip install 'qhubctl[test]' (moto[server])", pytrace=False)
    log = open(tmp / f"moto-{port}.log", "wb")
    proc = subprocess.Popen([str(server), "-H", host, "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **env})
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
            return Emulator(url, proc)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start; see {log.name}", pytrace=False)
            time.sleep(0.2)


def stop(emulator: Emulator) -> None:
    emulator.process.terminate()
    try:
        emulator.process.wait(10)
    except subprocess.TimeoutExpired:
        emulator.process.kill()
