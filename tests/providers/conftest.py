"""Fixtures for provider tests: the AWS API emulator (moto server) on loopback, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulators import Emulator, start_moto, stop


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_moto(tmp_path_factory.mktemp("moto"))
    yield emulator
    stop(emulator)


@pytest.fixture
def aws_env(moto: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """boto3's own settings pointed at the emulator: AWS_ENDPOINT_URL and a static key pair."""
    moto.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAQHUBTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "qhub-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return moto
