"""The images a person looks at in the report and the review: the original files as a viewer shows them (upright,
in colour, a DICOM stretched over its own range), not the cache entries the loaders read, which are shrunk to the
model's size (32 px for the sample recipes). A prepared item table keeps each original file in its `source`
column; a cache entry stands in for a file that is gone (or a table without `source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from kagglekit.competition import Competition
from kagglekit.data.cache import CacheSpec, decode, load_cached
from kagglekit.data.images import cache_spec
from kagglekit.report.html import THUMBNAIL, thumbnail

GREY_RANGE = (0.5, 99.5)  # percentiles of a grey image stretched to 0..255 (a viewer's auto-window)


def _file(row: pd.Series) -> Path:
    """The row's original image file where it is still there, else the image its `path` names."""
    source = row.get("source")
    if isinstance(source, str) and source and Path(source).is_file():
        return Path(source)
    return Path(row["path"])


def viewable(image: np.ndarray) -> Image.Image:
    """An RGB picture of a model-input array: RGB uint8 as it is; grey (16-bit DICOM values) with its own
    `GREY_RANGE` percentiles stretched to 0..255, so a dark radiograph is not shown black."""
    if image.ndim == 3 and image.dtype == np.uint8:
        return Image.fromarray(image)
    values = image.astype(np.float32)
    low, high = np.percentile(values, GREY_RANGE)
    grey = np.uint8(np.clip((values - low) / max(high - low, 1e-6), 0, 1) * 255)
    return Image.fromarray(grey if grey.ndim == 2 else grey[..., 0]).convert("RGB")


def picture(path: Path, competition: Competition, size: int = THUMBNAIL) -> np.ndarray:
    """The image of `path` as the cache converts it (EXIF orientation applied, DICOM decoded and its frames tiled
    as the competition says) but kept large enough to cover `size` x `size`; a cache entry as it is. Raises
    `ImageReadError` (`DicomReadError`) naming an unreadable file."""
    if CacheSpec.of_entry(path) is not None:
        return load_cached(path)
    return decode(path, cache_spec(competition, (size, size)), competition.images == "dicom").image


def thumbnails(items: pd.DataFrame, ids: Sequence[str], competition: Competition, size: int = THUMBNAIL) -> list[str]:
    """A JPEG `data:` URI of each of `ids`' images (rows of the item table `items`), longest side `size` px."""
    rows = items.set_index("id").loc[list(ids)]
    return [thumbnail(viewable(picture(_file(row), competition, size)), size) for _, row in rows.iterrows()]


def stored_size(path: Path, competition: Competition) -> tuple[int, int]:
    """(width, height) of an image file from its header alone: Pillow's size for photos (as stored, before any
    EXIF rotation), Columns x Rows for DICOMs; a cache entry's array shape."""
    if CacheSpec.of_entry(path) is not None:
        height, width = np.load(path, mmap_mode="r").shape[:2]
        return int(width), int(height)
    if competition.images == "dicom":
        from pydicom import dcmread

        header = dcmread(path, force=True, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        return int(header.Columns), int(header.Rows)
    with Image.open(path) as opened:
        return opened.size


def image_sizes(items: pd.DataFrame, competition: Competition, n: int) -> pd.DataFrame:
    """`width, height, count` of a random sample of `n` rows' original files (headers only), commonest first."""
    rows = items.sample(min(n, len(items)), random_state=0)
    sizes = [stored_size(_file(row), competition) for _, row in rows.iterrows()]
    frame = pd.DataFrame(sizes, columns=["width", "height"])
    return frame.value_counts().rename("count").reset_index().sort_values("count", ascending=False)
