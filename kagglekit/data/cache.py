"""One image cache for photos and DICOMs: every file decoded once, verified, shrunk to what the recipe needs.

Decoding is the slow part of feeding a model on few cores: a 480x640 JPEG decoded on every epoch and TTA pass to
feed a 224 px model, a DICOM decompressed again and again. Here each file is decoded once (JPEGs at the smallest
DCT scale that serves), turned into the array the model takes (`kagglekit.data.pixels`: RGB uint8, or grey uint16
at full depth for one-channel competitions), shrunk so it still covers the largest size asked for (aspect kept,
never enlarged), and saved as `<key>.<tag>.npy`. The key hashes the file's bytes and the settings: an unchanged
file is reused without decoding, a changed file or changed settings make a new entry. The tag names the settings
(`CacheSpec.of_entry` reads them back), so whoever holds an entry knows how to make the same from a new file.

A file that cannot be decoded becomes a one-line reason, found before any training starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from kagglekit._io import atomic_write
from kagglekit._output import track
from kagglekit.data.pixels import Decoded, Size, mosaic, shrink, to_channels
from kagglekit.errors import ImageReadError, one_line

CACHE_VERSION = 2
"""Bump when the conversion changes, so that existing entries are rebuilt rather than silently reused."""

Kind = Literal["photo", "dicom", "auto"]  # auto: DICOM by suffix (.dcm, .dicom) or its 'DICM' marker, else photo
Frames = Literal["first", "all"]
DICOM_SUFFIXES = {".dcm", ".dicom"}
_TAG = re.compile(r"\.(?:(\d+)x(\d+)|full)(\.all)?\.npy$")


@dataclass(frozen=True)
class CacheSpec:
    """What an entry holds: the model's input (`channels`), shrunk to cover `cover` (height, width; None: full
    size); for multi-frame DICOMs the first frame or all frames tiled into one image (`pixels.mosaic`)."""

    cover: Size | None = None
    channels: int = 3
    frames: Frames = "first"

    @property
    def tag(self) -> str:
        size = "full" if self.cover is None else f"{self.cover[0]}x{self.cover[1]}"
        return size + (".all" if self.frames == "all" else "")

    def to_dict(self) -> dict:
        return {"cover": None if self.cover is None else list(self.cover), "channels": self.channels,
                "frames": self.frames}  # fmt: skip

    @classmethod
    def from_dict(cls, record: dict) -> CacheSpec:
        cover = record.get("cover")
        return cls(None if cover is None else (int(cover[0]), int(cover[1])), int(record["channels"]), record["frames"])

    @classmethod
    def of_entry(cls, path: Path | str) -> CacheSpec | None:
        """The settings an entry was made with (channels from its array), or None for any other file."""
        match = _TAG.search(Path(path).name)
        if match is None:
            return None
        cover = (int(match[1]), int(match[2])) if match[1] else None
        channels = 3 if _load_npy(path, mmap_mode="r").ndim == 3 else 1
        return cls(cover, channels, "all" if match[3] else "first")


@dataclass
class CacheReport:
    """What `cache_images` did: each source's entry, which were reused, which failed why, which were guessed at."""

    images: dict[Path, Path] = field(default_factory=dict)
    failures: dict[Path, str] = field(default_factory=dict)
    reused: set[Path] = field(default_factory=set)
    notes: dict[Path, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """For the run record: images decoded into the cache now, reused from it, failed, decoded with a note."""
        return {"cached": len(self.images) - len(self.reused), "reused": len(self.reused),
                "failed": len(self.failures), "noted": len(self.notes)}  # fmt: skip

    def summary(self) -> str:
        """Counts, then one line per failing file, so a broken file is named rather than lost in a log."""
        head = f"{len(self.images)} cached ({len(self.images) - len(self.reused)} converted, "
        head += f"{len(self.reused)} reused), {len(self.failures)} failed"
        return "\n".join([head, *(f"  {src}: {why}" for src, why in sorted(self.failures.items()))])


class _Outcome(NamedTuple):
    source: Path
    entry: Path | None
    reason: str | None
    reused: bool
    note: str | None


def cache_images(
    paths: Sequence[Path | str],
    cache_dir: Path,
    spec: CacheSpec = CacheSpec(),
    kind: Kind = "auto",
    workers: int | None = None,
) -> CacheReport:
    """Decode each file once into `cache_dir` (see the module docstring); unreadable files are reported, not raised.

    `workers` processes run in parallel (default: the cores available, at most 8; 0 or 1 runs in this process).
    A progress bar shows while it works.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(p) for p in paths]
    workers = min(len(os.sched_getaffinity(0)), 8) if workers is None else workers
    job = partial(_cache_one, cache_dir=cache_dir, spec=spec, kind=kind)
    report = CacheReport()
    with contextlib.ExitStack() as stack:
        parallel = workers > 1 and len(sources) > 1
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers)) if parallel else None
        run = partial(pool.map, chunksize=8) if pool else map
        for outcome in track(run(job, sources), total=len(sources), description="Caching images"):
            if outcome.entry is None:
                report.failures[outcome.source] = str(outcome.reason)
                continue
            report.images[outcome.source] = outcome.entry
            if outcome.reused:
                report.reused.add(outcome.source)
            if outcome.note:
                report.notes[outcome.source] = outcome.note
    return report


def load_cached(entry: Path) -> np.ndarray:
    """A cache entry's array: RGB uint8 (H, W, 3) or grey uint16 (H, W)."""
    return _load_npy(entry)


_NPY_HEADER_LOCK = threading.Lock()


def _load_npy(path: Path | str, mmap_mode: str | None = None) -> np.ndarray:
    """`np.load`, one thread at a time: it parses the header with `ast.literal_eval`, which on CPython 3.11 fails
    at random under threads ("AST constructor recursion depth mismatch", python/cpython#106905)."""
    with _NPY_HEADER_LOCK:
        return np.load(path, mmap_mode=mmap_mode)


def load_image(path: Path | str, channels: int = 3, kind: Kind = "auto", frames: Frames = "first") -> np.ndarray:
    """Any image as the model's input array: a cache entry as it is, any other file decoded at full size (and not
    cached). Raises `ImageReadError` (`DicomReadError` for DICOMs) naming the file."""
    if _TAG.search(Path(path).name):  # a cache entry
        return load_cached(Path(path))
    return decode(Path(path), CacheSpec(None, channels, frames), _is_dicom(Path(path), kind)).image


def decode(source: Path, spec: CacheSpec, dicom: bool) -> Decoded:
    """The model-ready image of one file under `spec`, shrunk to cover `spec.cover`; raises `ImageReadError`."""
    if dicom:
        from kagglekit.data.dicom import decode_dicom

        image, note = decode_dicom(source, spec.frames)
        if image.ndim == (4 if image.dtype == np.uint8 else 3):  # (frames, H, W[, 3])
            image = mosaic(image)
    else:
        from kagglekit.data.photos import read_photo

        try:
            image, note = read_photo(source, spec.channels, spec.cover)
        except Exception as exc:  # Pillow and its plugins raise many types (OSError, SyntaxError, ...)
            raise ImageReadError(source, f"not a readable image: {one_line(exc)}") from exc
    return Decoded(shrink(to_channels(image, spec.channels), spec.cover), note)


def _is_dicom(path: Path, kind: Kind) -> bool:
    if kind != "auto":
        return kind == "dicom"
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with path.open("rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def _cache_one(source: Path, cache_dir: Path, spec: CacheSpec, kind: Kind) -> _Outcome:
    if _TAG.search(source.name) and source.is_file():  # already an entry (e.g. a table `prepare_images` made)
        return _Outcome(source, source, None, True, None)
    try:
        dicom = _is_dicom(source, kind)
        entry = cache_dir / f"{_key(source, spec, dicom)}.{spec.tag}.npy"
    except OSError as exc:
        return _Outcome(source, None, f"cannot read the file ({exc.strerror or exc})", False, None)
    note_file = entry.with_suffix(".note")
    if entry.exists():
        return _Outcome(source, entry, None, True, note_file.read_text() if note_file.exists() else None)
    try:
        with warnings.catch_warnings():  # per-file library warnings (odd EXIF, malformed headers): the image is fine
            warnings.simplefilter("ignore")
            image, note = decode(source, spec, dicom)
    except ImageReadError as exc:
        return _Outcome(source, None, exc.reason, False, None)
    if note:
        atomic_write(note_file, lambda tmp: tmp.write_text(note))
    atomic_write(entry, lambda tmp: _save(tmp, image))
    return _Outcome(source, entry, None, False, note)


def _save(path: Path, image: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save would add .npy to a path
        np.save(f, np.ascontiguousarray(image))


def _key(source: Path, spec: CacheSpec, dicom: bool) -> str:
    settings = f"v{CACHE_VERSION}|{'dicom' if dicom else 'photo'}|{spec.channels}|{spec.frames}|{spec.tag}|"
    digest = hashlib.sha256(settings.encode())
    with source.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]
