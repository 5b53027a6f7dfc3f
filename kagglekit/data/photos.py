"""Photos as a model should see them: EXIF orientation applied, every Pillow mode converted without clipping, and
JPEGs decoded at a reduced DCT scale when only a smaller image is needed.

Pillow's own `convert("RGB")` clips 16-bit grey at 255 (a white image) and ignores orientation tags (a phone
photo stored sideways is learnt sideways). Here, for each mode Pillow opens:

- RGB, L, 1, YCbCr, LAB, HSV: Pillow's conversion; 16-bit-per-channel RGB PNGs are already 8-bit RGB in Pillow.
- CMYK: through the file's ICC profile to sRGB when it has one, else Pillow's conversion.
- Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour): composited over white, as a viewer shows it.
- 16-bit grey (I;16, I;16B, ...): kept at 16 bits for one-channel models, else 0..65535 -> 0..255 (x / 257).
- 32-bit integer (I): read as 16-bit data when every value lies in 0..65535, else stretched from the image's own
  minimum to its maximum (and noted).
- float (F): 0..1 when every value lies there, else stretched from its own minimum to its maximum (and noted).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps

from kagglekit.data.pixels import GREY_MAX, Decoded, Size, to_channels, top_byte

WHITE = (255, 255, 255)
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def read_photo(path, channels: int = 3, cover: Size | None = None) -> Decoded:
    """Decode an image file to RGB uint8 (H, W, 3) or, for `channels=1`, grey uint16 (H, W), upright.

    `cover` (height, width) lets a JPEG decode at the smallest DCT scale (1/2, 1/4, 1/8) still at least that
    large; the result is then larger than or equal to it, not resized. Raises whatever Pillow raises for an
    unreadable file (the cache turns it into a reason).
    """
    with Image.open(path) as image:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if cover is not None and image.format == "JPEG":
            _draft(image, cover[::-1] if orientation in _ROTATED else cover)
        image.load()
        upright = ImageOps.exif_transpose(image)
    if upright.mode in ("I", "F") or upright.mode.startswith("I;16"):
        grey, note = _grey16(upright)
        return Decoded(grey if channels == 1 else np.repeat(top_byte(grey)[..., None], 3, axis=2), note)
    if channels == 1 and upright.mode == "L" and "transparency" not in upright.info:
        return Decoded(np.asarray(upright).astype(np.uint16) * 257)  # exact, no trip through luma
    return Decoded(to_channels(_rgb(upright), channels))


def _draft(image: Image.Image, cover: Size) -> None:
    """Ask the JPEG decoder for the smallest DCT scale whose output still covers `cover` (file orientation)."""
    scale = max(cover[0] / image.height, cover[1] / image.width)
    if scale < 1:
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _rgb(image: Image.Image) -> np.ndarray:
    if image.mode == "CMYK" and image.info.get("icc_profile"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: Pillow's plain conversion below
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"))


def _grey16(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """16-bit grey from an I;16*, I or F image, by the rules in the module docstring."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        return values.astype(np.uint16), None
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if image.mode == "I" and low >= 0 and high <= GREY_MAX:
        return values.astype(np.uint16), None
    if image.mode == "F" and low >= 0 and high <= 1:
        return np.rint(values * GREY_MAX).astype(np.uint16), None
    scale = GREY_MAX / (high - low) if high > low else 0.0
    note = f"mode {image.mode} values {low:g}..{high:g} have no known range: stretched to full scale"
    return np.rint((values - low) * scale).astype(np.uint16), note
