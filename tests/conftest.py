"""Shared fixtures: a tiny paddy sample written once per session, and a cache folder no test shares with a user."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from kagglekit import get_competition
from kagglekit.samples import SampleData, write_sample

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Session-wide, so that it is set before the module- and session-scoped fixtures that run the pipeline (a
    function-scoped one came after them, and they filled the user's own cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAGGLEKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


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


@pytest.fixture(scope="session")
def colours_sample(tmp_path_factory):
    """64 training and 16 test images of the colours test plug-in, 4 of the training rows labelled wrong."""
    from colours import colours, plant_wrong_labels

    sample = write_sample(colours(), tmp_path_factory.mktemp("colours-sample"), seed=1, n_train=64, n_test=16)
    return sample, plant_wrong_labels(sample.data_dir, 4)


@pytest.fixture(scope="session")
def colours_run(tmp_path_factory, colours_sample):
    """One finished run on the colours sample (see colours.RECIPE), shared by the report, guard and review tests."""
    from colours import RECIPE, colours

    from kagglekit.pipeline.job import run

    folder = tmp_path_factory.mktemp("colours-run")
    (folder / "recipe.toml").write_text(RECIPE)
    sample, _ = colours_sample
    return run(colours(), folder / "recipe.toml", data=sample.data_dir, answers=sample.answers,
               runs_dir=folder / "runs", submissions_dir=folder / "subs")  # fmt: skip
