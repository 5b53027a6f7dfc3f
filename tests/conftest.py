"""Shared fixtures: a tiny paddy sample written once per session, and a cache folder no test shares with a user."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagglekit import get_competition
from kagglekit.samples import SampleData, write_sample

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def paddy():
    return get_competition("paddy")


@pytest.fixture(scope="session")
def paddy_sample(tmp_path_factory, paddy) -> SampleData:
    """About 90 training and 24 test images in the real Paddy Doctor layout."""
    return write_sample(paddy, tmp_path_factory.mktemp("paddy-sample"), seed=1, n_train=80, n_test=24)
