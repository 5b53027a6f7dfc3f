"""Read DICOM images at full bit depth (the shared image cache, `kagglekit.data.cache`, keeps them).

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

from pathlib import Path
from typing import Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, as_pixel_options, get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from kagglekit.data.pixels import Decoded
from kagglekit.errors import DicomReadError, one_line

Frames = Literal["first", "all"]

_GREY_MAX = 65535


def read_dicom(path: Path, frames: Frames = "first", window: bool = False) -> np.ndarray:
    """Decode a DICOM file to an array a model can use, keeping the full bit depth.

    Monochrome images come back as uint16, (H, W), or (F, H, W) for all frames of a multi-frame file, with
    high values bright (MONOCHROME1 is inverted); see the module docstring for the fixed grey mapping.
    `window=True` applies the file's VOI LUT or window centre/width instead and stretches that window over
    0..65535. Colour images (RGB, YBR_*, PALETTE COLOR) come back as uint8 RGB, (H, W, 3) or (F, H, W, 3).
    Any failure raises `DicomReadError`.
    """
    return decode_dicom(path, frames, window).image


def decode_dicom(path: Path, frames: Frames = "first", window: bool = False) -> Decoded:
    """`read_dicom`, with a note when the file had to be guessed at: a file without a file meta header (no
    preamble, no Transfer Syntax UID) holding uncompressed pixels is read in the encoding its elements use,
    implicit VR little endian unless they say otherwise (what pydicom assumes with `force=True`)."""
    if frames not in ("first", "all"):
        raise ValueError(f"frames must be 'first' or 'all', not {frames!r}")
    path = Path(path)
    try:
        return _read(path, frames, window)
    except DicomReadError:
        raise
    except Exception as exc:  # pydicom, its plugins and numpy raise many types; callers get one
        raise DicomReadError(path, one_line(exc)) from exc


def dicom_uid(path: Path) -> str:
    """Return the SOPInstanceUID, reading the header only: Kaggle DICOM competitions key rows by it."""
    try:
        ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception as exc:  # see read_dicom
        raise DicomReadError(path, one_line(exc)) from exc
    if not ds.get("SOPInstanceUID"):
        raise DicomReadError(path, "no SOPInstanceUID in the header")
    return str(ds.SOPInstanceUID)


def _read(path: Path, frames: Frames, window: bool) -> Decoded:
    ds = dcmread(path, force=True)
    if "PixelData" not in ds:
        kind = ds.SOPClassUID.name if ds.get("SOPClassUID") else "not an image, or not a DICOM file"
        raise DicomReadError(path, f"no pixel data ({kind})")
    syntax, note = ds.file_meta.get("TransferSyntaxUID"), None
    if not syntax:
        syntax, note = _assumed_syntax(path, ds)
        ds.file_meta.TransferSyntaxUID = syntax
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
        raise DicomReadError(path, f"{syntax.name}: cannot decode the pixel data ({one_line(exc)})") from exc

    photometric = props["photometric_interpretation"]
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        return Decoded(_grey(arr, ds, inverted=photometric == "MONOCHROME1", window=window), note)
    if photometric == "RGB":
        return Decoded(_top_byte(arr, ds.BitsStored), note)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)[..., :3]  # drop the alpha LUT when there is one
        return Decoded(_top_byte(rgb, 8 * rgb.dtype.itemsize), note)
    raise DicomReadError(path, f"photometric interpretation {photometric!r} is not supported")


def _assumed_syntax(path: Path, ds: Dataset) -> tuple[str, str]:
    """The transfer syntax of a file whose meta header names none: the encoding pydicom read its elements in.

    Only uncompressed pixels can be read that way; compressed ones need the syntax to pick a codec.
    """
    if ds["PixelData"].is_undefined_length:
        raise DicomReadError(path, "compressed pixel data, but no Transfer Syntax UID says how it is compressed")
    implicit, little = getattr(ds, "original_encoding", (ds.is_implicit_VR, ds.is_little_endian))
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return syntax, f"no Transfer Syntax UID in the file meta: read as {syntax.name}"


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
