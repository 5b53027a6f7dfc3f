"""The test images a pack predicts, prepared as `run` prepares them: the same item table (`load_test_items`), the
same image preparation (`prepare_images`: DICOMs decoded into the cache with the run's settings), and every image
that cannot be read set aside for the training prior instead of failing the prediction."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from PIL import Image

from kagglekit.data.images import prepare_images
from kagglekit.data.items import Items, load_test_items
from kagglekit.defaults import cache_root
from kagglekit.pipeline.data import Data
from kagglekit.predict.pack import InferencePack

log = logging.getLogger(__name__)

UNDECODABLE_COLUMNS = ["id", "path", "reason"]


def _unreadable_photo(path: str) -> str | None:
    """Why Pillow cannot decode a photo (a truncated, empty or foreign file), or None. JPEGs decode at a reduced
    scale (`draft`), which still reads every byte of the file."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _set_aside_unreadable(test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The photos that decode, and those that do not (id, path, reason)."""
    reasons = test["path"].map(_unreadable_photo)
    failed = test[reasons.notna()].assign(reason=reasons[reasons.notna()])[UNDECODABLE_COLUMNS]
    return test[reasons.isna()].reset_index(drop=True), failed.reset_index(drop=True)


def prepare_test(
    pack: InferencePack, test: pd.DataFrame, sample: pd.DataFrame, data_dir: Path, cache_dir: Path | None = None
) -> Data:
    """`Data` holding only test rows (`id`, `path`), prepared as the pack's run prepared its test set, with the pack's
    classes and training class shares (the prior for images that cannot be read, listed in `undecodable_test`)."""
    competition = pack.spec()
    columns = ["id", "path", *(task.column for task in competition.tasks.values())]
    empty = pd.DataFrame(columns=columns)
    items = Items(Path(data_dir), empty, test, sample, pd.DataFrame(columns=[*columns, "reason", "line"]))
    prepared = prepare_images(
        competition, items, Path(cache_dir or cache_root() / "images"), max_size=int(pack.dicom["max_size"])
    )
    readable, unreadable = prepared.items.test, prepared.undecodable_test
    if competition.images == "photo":
        readable, unreadable = _set_aside_unreadable(readable)
    prepared_items = Items(items.data_dir, empty, readable, sample, items.skipped)
    return Data(competition, prepared_items, pack.vocab, unreadable, shares=pack.shares)


def prepare_submission_test(pack: InferencePack, data_dir: Path, cache_dir: Path | None = None) -> Data:
    """The competition's test set in `data_dir` (every id of its sample submission), prepared for `pack`."""
    test, sample = load_test_items(pack.spec(), data_dir)
    log.info("%d test images listed in %s", len(test), pack.spec().sample_submission)
    return prepare_test(pack, test, sample, data_dir, cache_dir)
