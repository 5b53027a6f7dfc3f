"""Shared fixtures: a tiny paddy sample written once per session, and a cache folder no test shares with a user."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from kagglekit import get_competition
from kagglekit.samples import SampleData, write_sample

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _root_log_handlers():
    """The CLI installs its log handler on the root logger, on the stream of a test runner that closes after the
    test: later tests would log into a closed file."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection beyond this machine fails the test (Kaggle tests: a guard behind the proxy settings)."""
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):  # type: ignore[index]
            raise AssertionError(f"a test tried to reach {address}")
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def paddy():
    return get_competition("paddy")


@pytest.fixture(scope="session")
def paddy_sample(tmp_path_factory, paddy) -> SampleData:
    """About 90 training and 24 test images in the real Paddy Doctor layout."""
    return write_sample(paddy, tmp_path_factory.mktemp("paddy-sample"), seed=1, n_train=80, n_test=24)
