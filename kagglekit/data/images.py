"""Getting images into the model: photos as they are, DICOMs through a full-depth 16-bit PNG cache.

DICOM decoding is slow and some files fail; decoding once into a cache keyed by file content makes every
epoch and TTA pass read a small PNG, and turns each failure into a per-file reason before training starts.
Grey images reach the model as one float channel with all 16 bits intact (never squashed through 8 bits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from kagglekit.competition import Competition
from kagglekit.data.items import Items
from kagglekit.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 512


@dataclass
class PreparedItems:
    """Items whose `path` points at something the data loaders can open, plus what could not be decoded."""

    items: Items
    undecodable_test: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "path", "reason"]))


def prepare_images(
    competition: Competition,
    items: Items,
    cache_dir: Path,
    max_size: int = DEFAULT_MAX_SIZE,
    workers: int | None = None,
) -> PreparedItems:
    """Photos pass through; DICOMs are cached as PNG and the table points at the cache.

    An undecodable training file is skipped and reported (like a missing one). An undecodable test file
    cannot be skipped — the submission needs its id — so it is returned in `undecodable_test` for a
    fallback prediction.
    """
    if competition.images == "photo":
        return PreparedItems(items)
    from kagglekit.data.dicom import cache_dicoms

    sources = [Path(p) for p in pd.concat([items.train["path"], items.test["path"]])]
    report = cache_dicoms(sources, cache_dir, max_size=max_size, frames=competition.dicom_frames, workers=workers)
    log.info(
        "DICOM cache: %d converted or reused, %d undecodable (%s)", len(report.images), len(report.failures), cache_dir
    )

    def cached(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        paths = frame["path"].map(lambda p: report.images.get(Path(p)))
        failed = frame[paths.isna()].assign(reason=lambda f: f["path"].map(lambda p: report.failures.get(Path(p), "")))
        return frame[paths.notna()].assign(path=paths[paths.notna()].map(str)).reset_index(drop=True), failed

    train, failed_train = cached(items.train)
    test, failed_test = cached(items.test)
    if len(failed_train):
        log.warning(
            "Skipping %d undecodable training DICOM(s), e.g. %s", len(failed_train), failed_train["reason"].iloc[0]
        )
    skipped = pd.concat([items.skipped, failed_train.assign(line=pd.NA)], ignore_index=True)
    if len(train) == 0 and len(items.train):  # a test-only table (prediction) has no training rows
        raise DataError(f"None of the {len(items.train)} training DICOMs could be decoded: {report.summary()}")
    prepared = Items(items.data_dir, train, test, items.sample_submission, skipped)
    return PreparedItems(prepared, failed_test[["id", "path", "reason"]].reset_index(drop=True))


def open_grey16(path: str | Path) -> Image.Image:
    """A cached PNG as a float ('F') image scaled to 0..255, so fastai's /255 yields 0..1 at full 16-bit depth."""
    from kagglekit.data.dicom import load_cached

    array = load_cached(Path(path)).astype(np.float32)
    if array.ndim == 3:  # a colour DICOM in a grey competition: its luminance, on the same 0..255 scale
        return Image.fromarray(array @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return Image.fromarray(array * np.float32(255 / 65535))


def input_channels(competition: Competition) -> int:
    return 1 if competition.images == "dicom" else 3
