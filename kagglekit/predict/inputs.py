"""The test images a pack predicts, prepared as `run` prepares them: the same item table (`load_test_items`), the
same image cache with the run's settings (`prepare_images` at the pack's cover, DICOM frames and channels), so every
member sees the very arrays the run's TTA saw, and every image that cannot be read set aside for the training prior
instead of failing the prediction."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kagglekit.data.images import prepare_images
from kagglekit.data.items import Items, load_test_items
from kagglekit.defaults import cache_root
from kagglekit.pipeline.data import Data
from kagglekit.predict.pack import InferencePack

log = logging.getLogger(__name__)


def prepare_test(
    pack: InferencePack, test: pd.DataFrame, sample: pd.DataFrame, data_dir: Path, cache_dir: Path | None = None
) -> Data:
    """`Data` holding only test rows (`id`, `path` to its cache entry, `source`), prepared as the pack's run prepared
    its test set, with the pack's classes and training class shares (the prior for images that cannot be read,
    listed in `undecodable_test`). `cache_dir` defaults to the user's image cache."""
    competition = pack.spec()
    columns = ["id", "path", *(task.column for task in competition.tasks.values())]
    empty = pd.DataFrame(columns=columns)
    items = Items(Path(data_dir), empty, test, sample, pd.DataFrame(columns=[*columns, "reason", "line"]))
    cache_dir = Path(cache_dir or cache_root() / "images")
    prepared = prepare_images(competition, items, cache_dir, cover=pack.cache.cover)
    return Data(competition, prepared.items, pack.vocab, prepared.undecodable_test, prepared.cache, shares=pack.shares)


def prepare_submission_test(pack: InferencePack, data_dir: Path, cache_dir: Path | None = None) -> Data:
    """The competition's test set in `data_dir` (every id of its sample submission), prepared for `pack`."""
    test, sample = load_test_items(pack.spec(), data_dir)
    log.info("%d test images listed in %s", len(test), pack.spec().sample_submission)
    return prepare_test(pack, test, sample, data_dir, cache_dir)
