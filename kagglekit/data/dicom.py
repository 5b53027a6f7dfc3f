"""Read DICOM images at full bit depth and cache them as lossless PNGs.

X-rays and CTs carry 10-16 bits per pixel; squashing them to 8 bits before the model's own normalisation
throws away contrast the model could use. And in a dataset of 30k files a raw decoder traceback says
nothing about which file is broken or what to install, so every failure here becomes a `DicomReadError`
naming the file and giving a one-line reason.

Grey levels: the header's representable range (BitsStored, PixelRepresentation, then the Modality LUT or
RescaleSlope/RescaleIntercept applied to its two ends) is mapped linearly onto 0..65535, the same mapping
for every pixel of the file, never a per-image min/max stretch. A 12-bit image is multiplied by the
constant 65535/4095 (~16.004), an 8-bit one by 257, a 16-bit one is kept as is: every stored level stays
distinct (only data with more than 16 bits stored loses levels), and white is always 65535.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, as_pixel_options, get_decoder
from rich.progress import track

from kagglekit.errors import DicomReadError

Frames = Literal["first", "all"]

CACHE_VERSION = 1
"""Bump when the conversion changes, so that existing caches are rebuilt rather than silently reused."""

_GREY_MAX = 65535
_FRAMES_KEY = "kagglekit-frames"  # PNG text chunk: how many frames are stacked vertically in the image


def read_dicom(path: Path, frames: Frames = "first", window: bool = False) -> np.ndarray:
    """Decode a DICOM file to an array a model can use, keeping the full bit depth.

    Monochrome images come back as uint16, (H, W), or (F, H, W) for all frames of a multi-frame file, with
    high values bright (MONOCHROME1 is inverted); see the module docstring for the fixed grey mapping.
    `window=True` applies the file's VOI LUT or window centre/width instead and stretches that window over
    0..65535. Colour images (RGB, YBR_*, PALETTE COLOR) come back as uint8 RGB, (H, W, 3) or (F, H, W, 3).
    Any failure raises `DicomReadError`.
    """
    if frames not in ("first", "all"):
        raise ValueError(f"frames must be 'first' or 'all', not {frames!r}")
    path = Path(path)
    try:
        return _read(path, frames, window)
    except DicomReadError:
        raise
    except Exception as exc:  # pydicom, its plugins and numpy raise many types; callers get one
        raise DicomReadError(path, _one_line(exc)) from exc


def dicom_uid(path: Path) -> str:
    """Return the SOPInstanceUID, reading the header only: Kaggle DICOM competitions key rows by it."""
    try:
        ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception as exc:  # see read_dicom
        raise DicomReadError(path, _one_line(exc)) from exc
    if not ds.get("SOPInstanceUID"):
        raise DicomReadError(path, "no SOPInstanceUID in the header")
    return str(ds.SOPInstanceUID)


def _read(path: Path, frames: Frames, window: bool) -> np.ndarray:
    ds = dcmread(path, force=True)
    if "PixelData" not in ds:
        kind = ds.SOPClassUID.name if ds.get("SOPClassUID") else "not an image, or not a DICOM file"
        raise DicomReadError(path, f"no pixel data ({kind})")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise DicomReadError(path, "the file meta has no Transfer Syntax UID")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomReadError(path, f"{syntax.name}: transfer syntax not supported by pydicom") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies)
        raise DicomReadError(path, f"{syntax.name}: no decoder installed (pip install one of: {needs})")
    try:
        # Only the first frame is decoded when that is all we need. `props` describes the array *after*
        # decoding: pydicom (and the JPEG / JPEG 2000 decoders) already turn YBR_* into RGB, so its
        # photometric interpretation is the one to act on, not the header's (no double conversion).
        arr, props = decoder.as_array(ds, index=0 if frames == "first" else None, **as_pixel_options(ds))
    except Exception as exc:  # see read_dicom
        raise DicomReadError(path, f"{syntax.name}: cannot decode the pixel data ({_one_line(exc)})") from exc

    photometric = props["photometric_interpretation"]
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        return _grey(arr, ds, inverted=photometric == "MONOCHROME1", window=window)
    if photometric == "RGB":
        return _top_byte(arr, ds.BitsStored)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)[..., :3]  # drop the alpha LUT when there is one
        return _top_byte(rgb, 8 * rgb.dtype.itemsize)
    raise DicomReadError(path, f"photometric interpretation {photometric!r} is not supported")


def _grey(arr: np.ndarray, ds: Dataset, inverted: bool, window: bool) -> np.ndarray:
    """Modality LUT, optional VOI, then the fixed linear map of the header's output range onto uint16."""
    values = apply_modality_lut(arr, ds)
    low, high = _modality_range(ds)
    if window:
        values = apply_voi_lut(values, ds)
        if ds.get("VOILUTSequence"):  # a VOI LUT outputs 0..2**depth-1; windowing keeps low..high
            low, high = 0.0, 2.0 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1
    grey = _rescale(values, low, high)
    # MONOCHROME1: low values display white. We invert here, after the LUTs, relative to their output
    # range (which now spans exactly 0..65535), as the DICOM display pipeline does: inverting before the
    # LUTs would be wrong for a VOI window, and for a plain rescale this equals (2**BitsStored - 1) - x
    # on the stored values.
    return _GREY_MAX - grey if inverted else grey


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """The values the Modality LUT can output for this header (the convention of pydicom's windowing)."""
    if ds.get("ModalityLUTSequence"):  # PS3.3 C.11.1.1.1: unsigned, LUTDescriptor[2] bits
        return 0.0, 2.0 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    bits = ds.BitsStored
    signed = ds.PixelRepresentation == 1
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], float)
    ends = apply_modality_lut(stored, ds)  # a negative slope swaps the ends
    return float(ends.min()), float(ends.max())


def _rescale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..65535; values outside the header's range (bad headers) are clipped."""
    scale = _GREY_MAX / (high - low) if high > low else 0.0
    scaled = (np.clip(values.astype(np.float64), low, high) - low) * scale
    return np.rint(scaled).astype(np.uint16)


def _top_byte(rgb: np.ndarray, bits: int) -> np.ndarray:
    """Colour models expect 8 bits per channel: keep the most significant 8 of `bits` (e.g. 16-bit palettes)."""
    return (rgb >> max(bits - 8, 0)).astype(np.uint8)


def _one_line(exc: BaseException) -> str:
    """Squash a (possibly multi-line, plugin-by-plugin) library message into one short line."""
    lines = (line.strip() for line in str(exc).splitlines())
    text = "; ".join(line for line in lines if line).replace(":;", ":") or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class CacheReport:
    """What `cache_dicoms` did: which sources have a cached PNG, which were reused, and which failed why."""

    images: dict[Path, Path] = field(default_factory=dict)
    failures: dict[Path, str] = field(default_factory=dict)
    reused: set[Path] = field(default_factory=set)

    def summary(self) -> str:
        """Counts, then one line per failing file, so a broken file is named rather than lost in a log."""
        converted = len(self.images) - len(self.reused)
        head = f"{len(self.images)} cached ({converted} converted, {len(self.reused)} reused), "
        head += f"{len(self.failures)} failed"
        return "\n".join([head, *(f"  {src}: {why}" for src, why in sorted(self.failures.items()))])


class _Outcome(NamedTuple):
    source: Path
    png: Path | None
    reason: str | None
    reused: bool


def cache_dicoms(
    paths: Sequence[Path],
    cache_dir: Path,
    max_size: int = 512,
    frames: Frames = "first",
    workers: int | None = None,
) -> CacheReport:
    """Convert DICOMs once to lossless PNGs (16-bit grey or 8-bit RGB) so training epochs skip decoding.

    Each PNG is named by a hash of the file's bytes and the settings, so an unchanged file is reused, and a
    changed file or changed settings are converted again. Images are shrunk so the longer side is at most
    `max_size` (aspect kept), resampled in float so no grey levels are lost. `workers` processes run in
    parallel (default min(cpu count, 8); 0 or 1 runs in this process). Failures are reported, not raised.
    """
    if frames not in ("first", "all"):
        raise ValueError(f"frames must be 'first' or 'all', not {frames!r}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(p) for p in paths]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    job = partial(_cache_one, cache_dir=cache_dir, max_size=max_size, frames=frames)
    report = CacheReport()
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(ProcessPoolExecutor(max_workers=workers)).map if workers > 1 else map
        for outcome in track(run(job, sources), total=len(sources), description="Caching DICOMs"):
            if outcome.png is None:
                report.failures[outcome.source] = str(outcome.reason)
                continue
            report.images[outcome.source] = outcome.png
            if outcome.reused:
                report.reused.add(outcome.source)
    return report


def load_cached(png: Path) -> np.ndarray:
    """Read a PNG written by `cache_dicoms`: uint16 grey or uint8 RGB, frames restored as the first axis."""
    with Image.open(png) as img:
        arr = np.asarray(img)
        n_frames = int(img.info.get(_FRAMES_KEY, 1))
    return arr.reshape(n_frames, -1, *arr.shape[1:]) if n_frames > 1 else arr


def _cache_one(source: Path, cache_dir: Path, max_size: int, frames: Frames) -> _Outcome:
    try:
        png = cache_dir / f"{_cache_key(source, max_size, frames)}.png"
    except OSError as exc:
        return _Outcome(source, None, f"cannot read the file ({exc.strerror})", False)
    if png.exists():
        return _Outcome(source, png, None, True)
    try:
        arr = read_dicom(source, frames)
    except DicomReadError as exc:
        return _Outcome(source, None, exc.reason, False)
    _write_png(_shrink(arr, max_size), png)
    return _Outcome(source, png, None, False)


def _cache_key(source: Path, max_size: int, frames: Frames) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{max_size}|{frames}|".encode())
    with source.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def _shrink(arr: np.ndarray, max_size: int) -> np.ndarray:
    """Return the frames as (F, h, w[, 3]), each resized so its longer side is at most `max_size`."""
    colour = arr.dtype == np.uint8
    stack = arr.reshape(-1, *arr.shape[-3:]) if colour else arr.reshape(-1, *arr.shape[-2:])
    height, width = stack.shape[1:3]
    scale = max_size / max(height, width)
    if scale >= 1:
        return stack
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([_resize(frame, size) for frame in stack])


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.dtype == np.uint8:
        return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))
    # float32 holds every uint16 exactly, so interpolation keeps (and between pixels adds) grey levels.
    resized = np.asarray(Image.fromarray(frame.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    return np.clip(np.rint(resized), 0, _GREY_MAX).astype(np.uint16)


def _write_png(stack: np.ndarray, png: Path) -> None:
    """Write frames stacked vertically, atomically (temp file + os.replace): never a truncated cache entry."""
    info = PngInfo()
    info.add_text(_FRAMES_KEY, str(len(stack)))
    fd, tmp = tempfile.mkstemp(dir=png.parent, prefix=f".{png.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            image = Image.fromarray(stack.reshape(-1, *stack.shape[2:]))  # uint16 -> mode "I;16", lossless
            image.save(f, format="PNG", pnginfo=info)
        os.replace(tmp, png)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
