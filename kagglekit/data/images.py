"""Getting a competition's images into the model: every file verified and decoded once into the image cache.

`prepare_images` sends the training and test images of an item table through `kagglekit.data.cache` (photos and
DICOMs alike), points the table at the cache entries, and turns each unreadable file into a reason before any
training starts: an unreadable training image is skipped (and listed with the skipped rows), an unreadable test
image is returned for a fallback prediction (the submission still needs its id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kagglekit.competition import Competition
from kagglekit.data.cache import CacheSpec, cache_images
from kagglekit.data.items import Items
from kagglekit.data.pixels import Size
from kagglekit.errors import DataError
from kagglekit.recipe import Recipe

log = logging.getLogger(__name__)

DEFAULT_COVER = (512, 512)
"""What the cache keeps when no recipe says: every image shrunk only until a 512 x 512 model could still use it."""


@dataclass
class PreparedItems:
    """Items whose `path` points at cache entries (`source`: the original file), what could not be decoded, and what
    the cache did."""

    items: Items
    undecodable_test: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "path", "reason"]))
    cache: dict[str, int] = field(default_factory=dict)  # images cached now, reused, failed, decoded with a note


def recipe_cover(recipe: Recipe) -> Size:
    """The smallest size the cache must keep to serve every member: the largest height and width of any member's
    stages (training and TTA use the same sizes). Entries keep their aspect ratio, so a `crop` member's random
    crops keep the room along the longer side; zoomed crops (`min_scale`) are cut from the resized image, as
    before caching, so they need nothing more."""
    sizes = [stage.size for member in recipe.members for stage in member.stage_list]
    return max(h for h, _ in sizes), max(w for _, w in sizes)


def cache_spec(competition: Competition, cover: Size | None) -> CacheSpec:
    """The cache settings of a competition's images at `cover`."""
    return CacheSpec(cover, input_channels(competition), competition.dicom_frames)


def prepare_images(
    competition: Competition,
    items: Items,
    cache_dir: Path,
    cover: Size | None = DEFAULT_COVER,
    workers: int | None = None,
) -> PreparedItems:
    """Decode every training and test image into the cache at `cover` (see `recipe_cover`) and point the table at it.

    An undecodable training file is skipped and reported (like a missing one). An undecodable test file cannot
    be skipped, so it is returned in `undecodable_test` for a fallback prediction. Raises `DataError` when no
    training image can be decoded.
    """
    sources = [Path(p) for p in pd.concat([items.train["path"], items.test["path"]])]
    report = cache_images(sources, cache_dir, cache_spec(competition, cover), competition.images, workers)
    log.info("Image cache: %s (%s)", report.summary().splitlines()[0], cache_dir)
    for source, note in list(report.notes.items())[:3]:
        log.info("%s: %s", source, note)
    if len(report.notes) > 3:
        log.info("... and %d more images decoded with a note like these", len(report.notes) - 3)

    def cached(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        paths = frame["path"].map(lambda p: report.images.get(Path(p)))
        failed = frame[paths.isna()].assign(reason=lambda f: f["path"].map(lambda p: report.failures.get(Path(p), "")))
        readable = frame[paths.notna()]  # `source` from these rows: a column of `frame` would bring back every row
        readable = readable.assign(source=readable["path"], path=paths[paths.notna()].map(str))
        return readable.reset_index(drop=True), failed

    train, failed_train = cached(items.train)
    test, failed_test = cached(items.test)
    if len(failed_train):
        first = failed_train.iloc[0]
        log.warning("Skipping %d unreadable training image(s), e.g. %s: %s (listed in skipped_items.csv)",
                    len(failed_train), first["path"], first["reason"])  # fmt: skip
    skipped = pd.concat([items.skipped, failed_train.assign(line=pd.NA)], ignore_index=True)
    if len(train) == 0 and len(items.train):  # a test-only table (prediction) has no training rows
        raise DataError(f"None of the {len(items.train)} training images could be decoded: {report.summary()}")
    prepared = Items(items.data_dir, train, test, items.sample_submission, skipped)
    return PreparedItems(prepared, failed_test[["id", "path", "reason"]].reset_index(drop=True), report.counts())


def input_channels(competition: Competition) -> int:
    """1 for DICOM competitions (grey at full depth), else 3 (RGB)."""
    return 1 if competition.images == "dicom" else 3
